"""evaluate: test accuracy (or TRZSL's seen / unseen / harmonic mean), per-class accuracy, confusion."""

import json
from pathlib import Path

import torch
import typer

from pipeline.core import paths
from pipeline.core.artifacts import atomic_path, load_tensors, read_json, write_json
from pipeline.evaluation.metrics import confusion_rows, per_class_accuracy, predict, split_metrics
from pipeline.core.candidates import LOGIT_SCALE
from pipeline.runtime.devices import resolve_device
from pipeline.core.errors import PipelineError
from pipeline.training.learners import build_visual, encode_store
from pipeline.clip.models import load_clip
from pipeline.config.params import load_params
from pipeline.clip.pixels import PixelSpec
from pipeline.workspace import load_workspace, split_images
from stages._cli import stage

app = typer.Typer(add_completion=False)


def _write_csv(path: Path, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def trained_tower_logits(params, member_weights, tensors: dict, metadata: dict):
    """Mean over ensemble members of `100 · f_m(x) W_mᵀ`, each member's test features from its own
    trained image side (prompts, adapter or fine-tuned tower) on the frozen model it was trained on."""
    if (metadata["arch"], metadata["pretrained"]) != (params.clip.arch, params.clip.pretrained):
        raise PipelineError(f"{paths.VISUAL} was trained on {metadata['arch']} ({metadata['pretrained']}), but "
                            f"params.yaml names {params.clip.arch} ({params.clip.pretrained}); run train again")
    device = resolve_device(params.clip.device, "clip.device")
    clip = load_clip(metadata["arch"], metadata["pretrained"], device)
    spec = PixelSpec.from_preprocess(clip.preprocess)
    store = split_images("test", spec)
    config = json.loads(metadata["config"])
    logits = 0.0
    for member, weights in enumerate(member_weights):
        visual = build_visual(clip, config)
        prefix = f"member{member}."
        visual.load_trainable({name.removeprefix(prefix): torch.from_numpy(value) for name, value in tensors.items()
                               if name.startswith(prefix)})
        logits = logits + LOGIT_SCALE * encode_store(visual.to(device), spec, store, device) @ weights.T
    return logits / len(member_weights)


@app.command()
def main(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    with stage("evaluate") as log:
        params = load_params(params_file)
        workspace = load_workspace()
        test = workspace.split("test")
        true = workspace.manifest.loc[test, "label"].to_numpy()
        prompt = load_tensors(paths.PROMPT)[0]
        if paths.VISUAL.exists():  # the image side trained: the test images go through it again
            logits = trained_tower_logits(params, prompt["member_class_weights"], *load_tensors(paths.VISUAL))
            predicted = logits.argmax(axis=1)
        else:
            predicted = predict(workspace.real[test], prompt["class_weights"])
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
