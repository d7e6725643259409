"""prepare: resolve the dataset and the paradigm into a manifest, the class list and the candidate sets."""

import contextlib
from pathlib import Path

import typer

from pipeline.config.params import load_params
from pipeline.core import paths
from pipeline.core.artifacts import atomic_path, write_json, write_table
from pipeline.datasets.paradigms import class_sheet, prepare
from stages._cli import stage

app = typer.Typer(add_completion=False)


@app.command()
def main(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    with stage("prepare"):
        params = load_params(params_file)
        manifest, class_names, candidates = prepare(params.dataset, params.paradigm, params.paradigm_options,
                                                    params.seed, params.protocol)
        sheet = class_sheet(manifest, class_names, params.evaluate.sheet_classes, params.evaluate.sheet_images)
        # Every output goes to a temporary file first and all are renamed together at the end, so a
        # failure anywhere leaves the last run's four files as they were, never a mix of two runs.
        with contextlib.ExitStack() as outputs:
            manifest_tmp, candidates_tmp, classes_tmp, sheet_tmp = (
                outputs.enter_context(atomic_path(path))
                for path in (paths.MANIFEST, paths.CANDIDATE_SETS, paths.CLASSES, paths.TRAIN_SHEET))
            # No paradigm in the manifest's metadata: switching between paradigms that label nothing (UL,
            # candidates) leaves its bytes, so the image stages downstream are not re-run.
            write_table(manifest_tmp, manifest, metadata={"dataset": params.dataset.name})
            write_table(candidates_tmp, candidates, metadata={"paradigm": params.paradigm})
            write_json(classes_tmp, class_names)
            sheet.save(sheet_tmp, format="PNG")


if __name__ == "__main__":
    app()
