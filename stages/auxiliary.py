"""auxiliary: AiR's class prototypes from synthetic image features, saved as safetensors."""

from pathlib import Path

import typer

from pipeline import paths
from pipeline.artifacts import save_tensors
from pipeline.auxiliary import class_prototypes
from pipeline.params import load_params
from pipeline.workspace import load_workspace
from stages._cli import stage

app = typer.Typer(add_completion=False)


@app.command()
def main(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    with stage("auxiliary") as log:
        params = load_params(params_file)
        workspace = load_workspace()
        prototypes = class_prototypes(workspace.synthetic, workspace.synthetic_labels, len(workspace.class_names),
                                      params.auxiliary.keep, params.auxiliary.score)
        empty = int((abs(prototypes).sum(axis=1) == 0).sum())
        if empty:
            log.warning("%d class(es) have no synthetic images: their auxiliary vote is uniform", empty)
        save_tensors(paths.PROTOTYPES, {"prototypes": prototypes},
                     {"score": params.auxiliary.score, "keep": str(params.auxiliary.keep)})


if __name__ == "__main__":
    app()
