"""Device and dtype resolution with errors that say what to change, and the CPU threads a stage may use."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
from pathlib import Path
from typing import Iterator

import torch

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)


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


class CoreShare:
    """Torch threads for one stage process: the machine's cores split evenly among the pipeline's
    stages running at once on it (queued experiments included), so `dvc queue start -j N` does not
    oversubscribe the cores (N processes × all cores each made every stage ~5× slower on 2 cores).

    Each running stage holds an `flock` on a file in `<project>/.cache/running/`; the count of held
    locks is the number of stages sharing the cores. `rebalance()` recounts, and long loops call it at
    natural boundaries (an epoch, a shard), so the first of two runs gives cores back when the second
    starts. A user's `OMP_NUM_THREADS` or `PIPELINE_THREADS` overrides the rule."""

    def __init__(self, registry: Path):
        self.registry = registry
        self.fixed = os.environ.get("PIPELINE_THREADS") or os.environ.get("OMP_NUM_THREADS")
        self.cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.handle = None
        self.path: Path | None = None

    def __enter__(self) -> "CoreShare":
        self.registry.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"{os.getpid()}-", suffix=".lock", dir=self.registry)
        self.handle, self.path = os.fdopen(fd, "w"), Path(name)
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        self.rebalance()
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            self.path.unlink(missing_ok=True)
            self.handle.close()
            self.handle = None

    def running(self) -> int:
        """Stages holding a lock now (this one included); files of dead processes are removed."""
        count = 0
        for path in self.registry.glob("*.lock"):
            try:
                with open(path) as other:
                    fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
                path.unlink(missing_ok=True)  # nobody holds it: its process is gone
            except BlockingIOError:
                count += 1
            except FileNotFoundError:
                pass
        return max(1, count)

    def threads(self) -> int:
        if self.fixed:
            return max(1, int(self.fixed))
        return max(1, self.cores // self.running())

    def rebalance(self) -> None:
        wanted = self.threads()
        if wanted != torch.get_num_threads():
            log.info("torch threads: %d (%d cores shared by the running stages)", wanted, self.cores)
            torch.set_num_threads(wanted)


_SHARE: CoreShare | None = None


@contextlib.contextmanager
def share_cores(registry: Path) -> Iterator[CoreShare]:
    """Hold a share of the cores while a stage runs (see CoreShare)."""
    global _SHARE
    with CoreShare(registry) as share:
        _SHARE = share
        try:
            yield share
        finally:
            _SHARE = None


def rebalance_threads() -> None:
    """Called by long loops between units of work; a no-op outside a stage (library use, tests)."""
    if _SHARE is not None:
        _SHARE.rebalance()
