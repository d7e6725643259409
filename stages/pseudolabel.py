"""pseudolabel: the method's first-round pseudo-labels (or candidate sets) over the unlabeled images."""

from pathlib import Path

import typer

from pipeline.config.params import load_params
from pipeline.methods.catalog import build_method
from pipeline.pseudolabel.store import write_pseudo_labels
from pipeline.workspace import load_workspace, training_pool
from stages._cli import stage

app = typer.Typer(add_completion=False)


@app.command()
def main(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    with stage("pseudolabel") as log:
        params = load_params(params_file)
        method = build_method(params)
        workspace = load_workspace()
        pool = training_pool(workspace, params.paradigm, with_prototypes=method.needs_prototypes,
                             with_candidate_sets=method.needs_candidate_sets)
        pseudo = method.pseudo_label(pool, workspace.zero_shot_weights)
        pool_ids = workspace.manifest.loc[workspace.split("train"), "id"].to_numpy()
        summary = write_pseudo_labels(pool_ids, pseudo, pool.true_labels, method.name, int(len(pool.unlabeled)))
        log.info("%s: %d of %d unlabeled images pseudo-labelled, %.1f%% right, true class in the set %.1f%%, "
                 "%.2f classes per set (analysis only)", method.name, summary["n_pseudo_labels"],
                 summary["n_unlabeled"], 100 * summary["pseudo_label_accuracy"],
                 100 * summary["candidate_coverage"], summary["mean_candidate_set_size"])


if __name__ == "__main__":
    app()
