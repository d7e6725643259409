"""What `train` writes (`data/train/`) and `evaluate` reads back: the class weights and contexts
(`prompt.safetensors`), the trained image side when there is one (`visual.safetensors`), and the rounds'
record (`rounds.json`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from pipeline.config.protocols import RECIPE_KEYS
from pipeline.core import paths
from pipeline.core.artifacts import load_tensors, read_json, save_tensors, write_json
from pipeline.pseudolabel.store import pseudo_label_summary

if TYPE_CHECKING:
    from pipeline.config.params import Params
    from pipeline.core.pool import Pool
    from pipeline.methods.base import Method
    from pipeline.training.loop import EnsembleResult


def save_training_outputs(ensemble: EnsembleResult, method: Method, params: Params, pool: Pool, image_space: bool) -> None:
    """The ensemble's prompt tensors, its image side (or none: evaluate then reads the cached test
    features), and the record of every member's rounds."""
    tensors = {"class_weights": ensemble.class_weights}
    if method.trains:
        contexts = [m.context for m in ensemble.members]
        text = [c.get("ctx", c.get("text.ctx")) for c in contexts]
        if text[0] is not None:
            tensors["ctx"] = np.stack([t.numpy() for t in text])
        tensors["member_class_weights"] = np.stack([m.class_weights for m in ensemble.members])
    if image_space and ensemble.members[0].visual_config is not None:
        save_tensors(paths.VISUAL, {f"member{m}.{name.removeprefix('visual.')}": value.numpy()
                                    for m, context in enumerate(contexts) for name, value in context.items()
                                    if name.startswith("visual.")},
                     {"arch": params.clip.arch, "pretrained": params.clip.pretrained,
                      "members": str(len(contexts)), "config": json.dumps(ensemble.members[0].visual_config)})
    else:
        paths.VISUAL.unlink(missing_ok=True)
    save_tensors(paths.PROMPT, tensors, {"method": method.name, "arch": params.clip.arch,
                                         "pretrained": params.clip.pretrained,
                                         "ensemble": str(len(ensemble.members))})
    first = ensemble.members[0]  # the pseudo-labels reported are those of the first member
    write_json(paths.ROUNDS, {
        "method": method.name,
        "protocol": params.protocol,
        "recipe": {key: getattr(params.train, key) for key in RECIPE_KEYS},  # after the protocol's defaults
        "templates": params.clip.templates,
        "image_side": ensemble.members[0].visual_config,  # how the last round's image side was built; null: frozen
        "ensemble": len(ensemble.members),
        **pseudo_label_summary(first.pseudo, pool.true_labels),
        "members": [[vars(r) for r in member.rounds] for member in ensemble.members],
    })


def load_prompt() -> dict[str, np.ndarray]:
    return load_tensors(paths.PROMPT)[0]


def load_visual() -> tuple[dict[str, np.ndarray], dict, dict[str, str]] | None:
    """The trained image side: per-member tensors, the side's build config and the metadata naming the
    model it was trained on; None when the image tower stayed frozen."""
    if not paths.VISUAL.exists():
        return None
    tensors, metadata = load_tensors(paths.VISUAL)
    return tensors, json.loads(metadata["config"]), metadata


def read_rounds() -> dict:
    return read_json(paths.ROUNDS)
