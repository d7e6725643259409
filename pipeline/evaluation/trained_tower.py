"""Test logits through a trained image side (visual prompts, adapter or fine-tuned tower): each
ensemble member's own image encoder, rebuilt on the frozen model it was trained on."""

from __future__ import annotations

import torch

from pipeline.clip.models import load_clip
from pipeline.clip.pixels import PixelSpec
from pipeline.config.params import Params
from pipeline.core import paths
from pipeline.core.candidates import LOGIT_SCALE
from pipeline.core.errors import PipelineError
from pipeline.runtime.devices import resolve_device
from pipeline.training.learners import build_visual, encode_store
from pipeline.workspace import split_images


def trained_tower_logits(params: Params, member_weights, tensors: dict, config: dict, metadata: dict):
    """Mean over ensemble members of `100 · f_m(x) W_mᵀ`, each member's test features from its own
    trained image side (prompts, adapter or fine-tuned tower) on the frozen model it was trained on."""
    if (metadata["arch"], metadata["pretrained"]) != (params.clip.arch, params.clip.pretrained):
        raise PipelineError(f"{paths.VISUAL} was trained on {metadata['arch']} ({metadata['pretrained']}), but "
                            f"params.yaml names {params.clip.arch} ({params.clip.pretrained}); run train again")
    device = resolve_device(params.clip.device, "clip.device")
    clip = load_clip(metadata["arch"], metadata["pretrained"], device)
    spec = PixelSpec.from_preprocess(clip.preprocess)
    store = split_images("test", spec)
    logits = 0.0
    for member, weights in enumerate(member_weights):
        visual = build_visual(clip, config)
        prefix = f"member{member}."
        visual.load_trainable({name.removeprefix(prefix): torch.from_numpy(value) for name, value in tensors.items()
                               if name.startswith(prefix)})
        logits = logits + LOGIT_SCALE * encode_store(visual.to(device), spec, store, device) @ weights.T
    return logits / len(member_weights)
