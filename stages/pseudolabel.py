"""pseudolabel: the method's first-round pseudo-labels over the unlabeled training images."""

from pathlib import Path

import typer

from pipeline import paths
from pipeline.artifacts import write_json, write_table
from pipeline.params import load_params
from pipeline.training import pseudo_label
from pipeline.workspace import load_workspace, pseudo_labels_frame, training_pool
from stages._cli import stage

app = typer.Typer(add_completion=False)


@app.command()
def main(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    with stage("pseudolabel") as log:
        params = load_params(params_file)
        workspace = load_workspace()
        pool = training_pool(workspace, params.paradigm, with_prototypes=params.method == "air")
        pseudo = pseudo_label(pool, workspace.zero_shot_weights, params)
        pool_ids = workspace.manifest.loc[workspace.split("train"), "id"].to_numpy()
        write_table(paths.PSEUDOLABELS, pseudo_labels_frame(pool_ids, pseudo), metadata={"method": params.method})
        summary = {"method": params.method, "n_unlabeled": int(len(pool.unlabeled)),
                   "n_pseudo_labels": int(len(pseudo.rows)),
                   "pseudo_label_accuracy": pseudo.accuracy(pool.true_labels)}
        write_json(paths.PSEUDOLABEL_SUMMARY, summary)
        log.info("%s: %d of %d unlabeled images pseudo-labelled, %.1f%% right (analysis only)", params.method,
                 summary["n_pseudo_labels"], summary["n_unlabeled"], 100 * summary["pseudo_label_accuracy"])


if __name__ == "__main__":
    app()
