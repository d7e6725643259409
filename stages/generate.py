"""generate: synthetic class images from a diffusers text-to-image model (with the `adapt` stage's LoRA
when there is one), resumable, in Parquet shards."""

from pathlib import Path

import typer

from pipeline.config.params import load_params
from pipeline.core import paths
from pipeline.core.artifacts import read_json
from pipeline.core.errors import PipelineError
from pipeline.core.inputs import reads_synthetic_images
from pipeline.diffusion.generate import generate_synthetic
from pipeline.diffusion.synthetic import contact_sheet
from stages._cli import stage

app = typer.Typer(add_completion=False)


@app.command()
def main(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    with stage("generate", all_gpus=True) as log:
        params = load_params(params_file)
        class_names = read_json(paths.CLASSES)
        if not paths.ADAPTER_INFO.exists():
            raise PipelineError(f"{paths.ADAPTER_INFO} is missing: run the adapt stage first "
                                "(dvc repro adapt, or python -m stages.adapt; it is quick with adapt.enabled: false)")
        adapter = paths.ADAPTER if read_json(paths.ADAPTER_INFO)["enabled"] else None
        reads = reads_synthetic_images()
        if not reads:
            log.info("method %s reads no synthetic images: generating none", params.method)
        generate_synthetic(params.synthetic_plan(reads), class_names, params.generate.seed, paths.SYNTHETIC,
                           adapter=adapter, compute=params.compute)
        contact_sheet(paths.SYNTHETIC, paths.SYNTHETIC_SHEET, params.evaluate.sheet_classes,
                      params.evaluate.sheet_images)


if __name__ == "__main__":
    app()
