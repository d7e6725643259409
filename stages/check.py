"""check: runs first on every `dvc repro`, in about a second. It validates the whole params file and every
device key before any stage starts, and writes the fingerprints of the inputs outside the repository
(`pipeline/check/fingerprint.py`) that `prepare`, `features`, `adapt` and `generate` depend on."""

from pathlib import Path

import typer

from pipeline.check.fingerprint import write_fingerprints
from pipeline.config.params import load_params
from pipeline.core import paths
from pipeline.methods.catalog import check_method
from pipeline.runtime.devices import check_devices
from stages._cli import stage

app = typer.Typer(add_completion=False)


@app.command()
def main(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    with stage("check") as log:
        params = check_method(load_params(params_file), str(params_file))
        check_devices(params)
        fingerprints = write_fingerprints(params, paths.INPUTS)
        listing = fingerprints["dataset"].get("listing")
        if listing:
            log.info("dataset %s: %d files, %.1f MB", params.dataset.root, listing["files"], listing["bytes"] / 1e6)


if __name__ == "__main__":
    app()
