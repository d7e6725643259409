"""evaluate: test accuracy (or TRZSL's seen / unseen / harmonic mean), per-class accuracy, confusion."""

from pathlib import Path

import typer

from pipeline import paths
from pipeline.artifacts import atomic_path, load_tensors, read_json, write_json
from pipeline.evaluation import confusion_rows, per_class_accuracy, predict, split_metrics
from pipeline.params import load_params
from pipeline.workspace import load_workspace
from stages._cli import stage

app = typer.Typer(add_completion=False)


def _write_csv(path: Path, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


@app.command()
def main(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    with stage("evaluate") as log:
        params = load_params(params_file)
        workspace = load_workspace()
        test = workspace.split("test")
        true = workspace.manifest.loc[test, "label"].to_numpy()
        predicted = predict(workspace.real[test], load_tensors(paths.PROMPT)[0]["class_weights"])
        metrics = split_metrics(true, predicted, params.paradigm, workspace.manifest.loc[test, "seen"].to_numpy())
        trained = read_json(paths.ROUNDS)
        metrics.update({key: trained[key] for key in ("pseudo_label_accuracy", "n_pseudo_labels",
                                                      "candidate_coverage", "mean_candidate_set_size")})
        write_json(paths.METRICS, metrics)
        _write_csv(paths.PER_CLASS, per_class_accuracy(true, predicted, workspace.class_names))
        _write_csv(paths.CONFUSION, confusion_rows(true, predicted, workspace.class_names,
                                                   params.evaluate.confusion_max_classes))
        log.info("%s", ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))


if __name__ == "__main__":
    app()
