"""Loading a text-to-image generator: `tiny-random`, the demo world's generator, a local diffusers
folder or a hub id, with the `adapt` stage's LoRA when there is one; and what identifies its weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from diffusers import AutoPipelineForText2Image, DiffusionPipeline

from pipeline.core.artifacts import file_digest
from pipeline.core.errors import PipelineError
from pipeline.demo.generator import MARKER as DEMO_MARKER
from pipeline.demo.generator import DemoPipeline
from pipeline.diffusion.lora import load_adapter
from pipeline.tiny import build_tiny_diffusion

TINY_RANDOM = "tiny-random"


def _looks_local(model: str) -> bool:
    return model.startswith((".", "/", "~")) or Path(model).expanduser().exists()



def load_generator(model: str, device: torch.device, dtype: torch.dtype,
                   adapter: Path | None = None, adapter_scale: float = 1.0) -> DiffusionPipeline:
    """Load a text-to-image pipeline: `tiny-random`, the demo world's generator folder, a local
    diffusers folder, or a hub id; with `adapter`, the LoRA weights the `adapt` stage saved there,
    applied at `adapter_scale`."""
    fix = ("set generate.model to a local diffusers directory (one with model_index.json), go online once so "
           f"the hub id is cached, or use generate.model: {TINY_RANDOM} for a smoke run")
    if model == TINY_RANDOM:
        pipe = build_tiny_diffusion(seed=0)
        if dtype != torch.float32:  # it is built in float32; casting to the same dtype only logs a warning
            pipe = pipe.to(dtype=dtype)
    elif _looks_local(model) and not Path(model).expanduser().exists():
        raise PipelineError(f"generate.model={model!r} does not exist; {fix}")
    elif (Path(model).expanduser() / DEMO_MARKER).exists():
        pipe = DemoPipeline.from_dir(Path(model).expanduser(), device)
    else:
        source = str(Path(model).expanduser()) if _looks_local(model) else model
        try:
            pipe = AutoPipelineForText2Image.from_pretrained(source, dtype=dtype)
        except Exception as error:  # unreachable hub, unknown id, incomplete folder: all need the same fix
            reason = str(error).rstrip(".")
            raise PipelineError(f"could not load generate.model={model!r}: {reason}. To fix: {fix}") from None
    pipe = pipe.to(device)
    if adapter is not None:
        load_adapter(pipe, adapter, adapter_scale)
    pipe.set_progress_bar_config(disable=True)
    return pipe



def model_fingerprint(model: str) -> str:
    """What identifies the generator's weights: for a local folder the SHA-256 of its files' names and
    bytes (a retrained model under the same path must not reuse old images), else the name itself
    (a hub id or `tiny-random`, built from a fixed seed in code)."""
    folder = Path(model).expanduser()
    if not (_looks_local(model) and folder.is_dir()):
        return model
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        file_digest(path, digest)
    return f"{model}@sha256:{digest.hexdigest()}"
