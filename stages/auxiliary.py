"""auxiliary: which synthetic images count (auxiliary.filter, auxiliary.keep) and AiR's class prototypes
from their features, saved as safetensors (the kept mask beside them: train's synthetic loss reads it)."""

from pathlib import Path

import typer

from pipeline.auxiliary.prototypes import class_prototypes, synthetic_selection
from pipeline.config.params import load_params
from pipeline.core import paths
from pipeline.core.artifacts import save_tensors
from pipeline.workspace import load_workspace
from stages._cli import stage

app = typer.Typer(add_completion=False)


@app.command()
def main(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    with stage("auxiliary") as log:
        params = load_params(params_file)
        workspace = load_workspace()
        settings = params.auxiliary
        kept = synthetic_selection(workspace.synthetic, workspace.synthetic_labels, workspace.zero_shot_weights,
                                   settings.keep, settings.filter == "fidelity")
        prototypes = class_prototypes(workspace.synthetic[kept], workspace.synthetic_labels[kept],
                                      len(workspace.class_names), None, settings.score)
        log.info("auxiliary classifier from %d of %d synthetic images (filter %s, keep %s)", int(kept.sum()),
                 len(kept), settings.filter, settings.keep)
        empty = int((abs(prototypes).sum(axis=1) == 0).sum())
        if empty:
            log.warning("%d class(es) have no synthetic images: their auxiliary vote is uniform", empty)
        save_tensors(paths.PROTOTYPES, {"prototypes": prototypes, "synthetic_kept": kept.astype("uint8")},
                     {"score": settings.score, "keep": str(settings.keep), "filter": settings.filter})


if __name__ == "__main__":
    app()
