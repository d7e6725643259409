"""evaluate: test accuracy (or TRZSL's seen / unseen / harmonic mean), per-class accuracy, confusion."""

from pathlib import Path

import typer

from pipeline.config.params import load_params
from pipeline.core import paths
from pipeline.core.artifacts import write_csv, write_json
from pipeline.evaluation.metrics import confusion_rows, per_class_accuracy, predict, split_metrics
from pipeline.evaluation.trained_tower import trained_tower_logits
from pipeline.training.outputs import load_prompt, load_visual, read_rounds
from pipeline.workspace import load_workspace
from stages._cli import stage

app = typer.Typer(add_completion=False)


@app.command()
def main(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    with stage("evaluate") as log:
        params = load_params(params_file)
        workspace = load_workspace()
        test = workspace.split("test")
        true = workspace.manifest.loc[test, "label"].to_numpy()
        prompt, visual = load_prompt(), load_visual()
        if visual is not None:  # the image side trained: the test images go through it again
            predicted = trained_tower_logits(params, prompt["member_class_weights"], *visual).argmax(axis=1)
        else:
            predicted = predict(workspace.real[test], prompt["class_weights"])
        metrics = split_metrics(true, predicted, params.paradigm, workspace.manifest.loc[test, "seen"].to_numpy())
        trained = read_rounds()
        metrics.update({key: trained[key] for key in ("pseudo_label_accuracy", "n_pseudo_labels",
                                                      "candidate_coverage", "mean_candidate_set_size")})
        write_json(paths.METRICS, metrics)
        write_csv(paths.PER_CLASS, per_class_accuracy(true, predicted, workspace.class_names))
        write_csv(paths.CONFUSION, confusion_rows(true, predicted, workspace.class_names,
                                                   params.evaluate.confusion_max_classes))
        log.info("%s", ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))


if __name__ == "__main__":
    app()
