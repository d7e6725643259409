"""Device and dtype resolution with errors that say what to change, and the CPU threads a stage may use."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import torch

from pipeline.core.errors import PipelineError

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


def fixed_threads() -> int | None:
    """The thread count a user fixed, or None. PIPELINE_THREADS is ours, so a bad value is an error;
    OMP_NUM_THREADS is set by other tools too and may be OpenMP's nesting list (`2,1`: 2 threads at the
    outer level), so its first entry counts and a value that is no count is ignored with a warning."""
    ours = os.environ.get("PIPELINE_THREADS", "").strip()
    if ours:
        count = _count(ours)
        if count is None:
            raise PipelineError(f"PIPELINE_THREADS={ours!r} is not a thread count; set it to a whole number "
                                "of 1 or more, or unset it to share the cores among the running stages")
        return count
    openmp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if openmp:
        count = _count(openmp.split(",")[0])
        if count is not None:
            return count
        log.warning("OMP_NUM_THREADS=%r is not a thread count (a whole number of 1 or more, or a list such as "
                    "2,1); ignored: the running stages share the cores", openmp)
    return None


def _count(text: str) -> int | None:
    try:
        count = int(text)
    except ValueError:
        return None
    return count if count >= 1 else None


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
        self.fixed = fixed_threads()
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
        return max(1, sum(_held(path) for path in self.registry.glob("*.lock")))

    def threads(self) -> int:
        if self.fixed:
            return self.fixed
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


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run a block with `count` torch threads, then give back the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def visible_gpus() -> list[str]:
    """The GPUs this process may use, found without starting CUDA (which would freeze
    CUDA_VISIBLE_DEVICES): the variable itself, else `nvidia-smi`; none on a machine without either."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip() and gpu.strip() != "-1"]
    try:
        found = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in found.stdout.splitlines() if line.strip()] if found.returncode == 0 else []


@contextlib.contextmanager
def gpu_lease(registry: Path, gpus: list[str] | None = None) -> Iterator[str | None]:
    """Give this stage process one of several visible GPUs: the one the fewest running stages hold
    (lowest index on ties), by setting CUDA_VISIBLE_DEVICES before CUDA starts. So `dvc queue start
    -j N` on an N-GPU machine runs each queued experiment's training on its own GPU. Holders are
    flocks on `<registry>/<gpu>.<pid>-*.lock`, released by the kernel when a process dies; with one
    GPU or none this does nothing. `PIPELINE_GPU_LEASE=0` turns it off (e.g. to pin GPUs yourself)."""
    gpus = visible_gpus() if gpus is None else gpus
    if len(gpus) <= 1 or os.environ.get("PIPELINE_GPU_LEASE") == "0":
        yield None
        return
    registry.mkdir(parents=True, exist_ok=True)
    with open(registry / ".pick", "a") as picking:
        fcntl.flock(picking, fcntl.LOCK_EX)  # two stages starting at once must not both count 0 holders
        held = {gpu: 0 for gpu in gpus}
        for path in registry.glob("*.lock"):
            gpu = path.name.split(".")[0]
            if gpu in held and _held(path):
                held[gpu] += 1
        chosen = min(gpus, key=lambda gpu: (held[gpu], gpus.index(gpu)))
        fd, name = tempfile.mkstemp(prefix=f"{chosen}.{os.getpid()}-", suffix=".lock", dir=registry)
        handle = os.fdopen(fd, "w")
        fcntl.flock(handle, fcntl.LOCK_EX)
    previous = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = chosen
    log.info("GPU %s of %s for this stage (%d other stage(s) on it)", chosen, ",".join(gpus), held[chosen])
    try:
        yield chosen
    finally:
        Path(name).unlink(missing_ok=True)
        handle.close()
        if previous is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = previous


def _held(path: Path) -> bool:
    """True while some process holds the flock on `path`; a dead holder's file is removed."""
    try:
        with open(path) as other:
            fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
        path.unlink(missing_ok=True)
        return False
    except BlockingIOError:
        return True
    except FileNotFoundError:
        return False


def rebalance_threads() -> None:
    """Called by long loops between units of work; a no-op outside a stage (library use, tests)."""
    if _SHARE is not None:
        _SHARE.rebalance()
