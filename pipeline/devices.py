"""Device and dtype resolution with errors that say what to change."""

from __future__ import annotations

import torch

from pipeline.errors import PipelineError


def resolve_device(name: str, key: str = "device") -> torch.device:
    """`auto` picks CUDA when present; asking for CUDA without it is an error, not a silent fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PipelineError(f"{key}={name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PipelineError(
            f"{key}={name!r} but CUDA is not available on this machine; set {key}: cpu (or auto)"
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise PipelineError(f"{key}={name!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise PipelineError(f"{key}={name!r} but Apple's MPS backend is not available on this machine; "
                            f"set {key}: cpu (or auto)")
    if device.type not in ("cpu", "cuda", "mps"):
        raise PipelineError(f"{key}={name!r}: the pipeline runs on cpu, cuda or mps; set {key}: auto")
    return device


DEVICE_KEYS = ("adapt.device", "generate.device", "clip.device", "train.device")


def check_devices(params) -> None:
    """Resolve every device key of `params` now, so a missing GPU fails before minutes of earlier stages."""
    for key in DEVICE_KEYS:
        section, field = key.split(".")
        resolve_device(getattr(getattr(params, section), field), key)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """Half precision is a GPU setting; on CPU it is slow or unsupported, so fall back to float32."""
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]
    return torch.float32 if device.type == "cpu" else dtype
