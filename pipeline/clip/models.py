"""open_clip loading: `pretrained` is an open_clip tag, a local checkpoint file, or `random`.

`random` initialises the architecture from a fixed seed, so every stage that loads it gets the same
weights; it exists for tests and the offline default run, never for results.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import open_clip
import torch

from pipeline.core.errors import PipelineError

log = logging.getLogger(__name__)

MODEL_CONFIGS = Path(__file__).resolve().parent / "model_configs"
RANDOM_WEIGHTS = "random"
RANDOM_WEIGHTS_SEED = 0


@dataclass
class Clip:
    model: torch.nn.Module
    preprocess: Callable
    tokenizer: Callable
    arch: str
    pretrained: str


def register_model_configs() -> None:
    """Make the project's open_clip configs (tiny-clip, demo-clip) model names; idempotent."""
    if not {p.stem for p in MODEL_CONFIGS.glob("*.json")} <= set(open_clip.list_models()):
        open_clip.add_model_config(MODEL_CONFIGS)


def _looks_like_path(value: str) -> bool:
    return value.startswith((".", "/", "~")) or Path(value).suffix in {".pt", ".pth", ".bin", ".safetensors"}


def load_clip(arch: str, pretrained: str, device: torch.device) -> Clip:
    """Create an open_clip model in eval mode with frozen weights."""
    register_model_configs()
    if arch not in open_clip.list_models():
        raise PipelineError(
            f"clip.arch={arch!r} is not an open_clip model config; choose one of open_clip.list_models(), "
            "e.g. ViT-B-32, or tiny-clip for a smoke run"
        )
    if _looks_like_path(pretrained) and not Path(pretrained).expanduser().exists():
        raise PipelineError(f"clip.pretrained={pretrained!r} does not exist; fix the path or use an open_clip tag")
    weights = None if pretrained == RANDOM_WEIGHTS else str(Path(pretrained).expanduser()) if _looks_like_path(pretrained) else pretrained
    if weights is None:
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=weights, device=device)
    except Exception as error:  # unknown tag, unreachable hub, corrupt file: all need the same fix
        raise PipelineError(
            f"could not load open_clip {arch!r} with pretrained={pretrained!r}: {error}. "
            f"Known tags for {arch}: {open_clip.list_pretrained_tags_by_model(arch) or 'none'}. "
            "Offline, point clip.pretrained at a local checkpoint file."
        ) from None
    model.eval().requires_grad_(False)
    return Clip(model, preprocess, open_clip.get_tokenizer(arch), arch, pretrained)
