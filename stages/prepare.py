"""prepare: resolve the dataset and the paradigm into a manifest, the class list and the candidate sets."""

from pathlib import Path

import typer

from pipeline import paths
from pipeline.artifacts import write_json, write_table
from pipeline.datasets.paradigms import class_sheet, prepare
from pipeline.params import load_params
from stages._cli import stage

app = typer.Typer(add_completion=False)


@app.command()
def main(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    with stage("prepare"):
        params = load_params(params_file)
        manifest, class_names, candidates = prepare(params.dataset, params.paradigm, params.paradigm_options,
                                                    params.seed, params.protocol)
        # No paradigm in the manifest's metadata: switching between paradigms that label nothing (UL,
        # candidates) leaves its bytes, so the image stages downstream are not re-run.
        write_table(paths.MANIFEST, manifest, metadata={"dataset": params.dataset.name})
        write_table(paths.CANDIDATE_SETS, candidates, metadata={"paradigm": params.paradigm})
        write_json(paths.CLASSES, class_names)
        class_sheet(manifest, class_names, paths.TRAIN_SHEET, params.evaluate.sheet_classes, params.evaluate.sheet_images)


if __name__ == "__main__":
    app()
