"""What every stage shares: logging a person can read, bad input as a message (not a traceback), and a
lock so one workspace never runs the same stage twice at once."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import sys
import time
from pathlib import Path
from typing import Iterator

from pipeline.core.errors import PipelineError
from pipeline.core.paths import shared_root
from pipeline.runtime.devices import gpu_lease, share_cores

LOCKS = Path(".cache/locks")       # per workspace: one copy of each stage
RUNNING = Path(".cache/running")   # per project (queued experiments included): who shares the cores
GPUS = Path(".cache/gpus")         # per project: which running stage holds which GPU


@contextlib.contextmanager
def _stage_lock(name: str) -> Iterator[None]:
    """An exclusive `flock` on `.cache/locks/<stage>.lock`, held while the stage runs. The kernel drops it
    when the process dies, so a killed run never leaves a stale lock; a second copy of the stage (e.g.
    a rerun while an orphan of a killed `dvc repro` still works) stops before it writes anything."""
    LOCKS.mkdir(parents=True, exist_ok=True)
    path = LOCKS / f"{name.replace(' ', '_')}.lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise PipelineError(f"stage {name} is already running in this workspace (pid {holder}); wait for it "
                                f"to finish or stop it (kill {holder}), then run again") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield


def _os_error_message(error: OSError) -> str | None:
    """Filesystem faults a user can fix (permissions, full or read-only disk) as one line; None for others."""
    where = f" {error.filename}" if error.filename else ""
    if isinstance(error, PermissionError) and error.filename and not _readable(error.filename):
        return f"cannot read{where}: {error.strerror}; make it readable (chmod u+r, and u+x for a folder)"
    if isinstance(error, PermissionError) or error.errno == errno.EROFS:
        return f"cannot write{where}: {error.strerror}; make the folder writable (or run from a writable copy)"
    if error.errno == errno.ENOSPC:
        return f"no space left on the device while writing{where}; free some space and run again"
    return None


def _readable(path: str | bytes | os.PathLike) -> bool:
    """Whether the refusal was a read (an existing file or folder we may not read or list): the error
    itself does not say whether reading or writing was refused."""
    if not os.path.exists(path):
        return True
    return os.access(path, os.R_OK | (os.X_OK if os.path.isdir(path) else 0))


@contextlib.contextmanager
def stage(name: str, all_gpus: bool = False) -> Iterator[logging.Logger]:
    """Run a stage: readable logs, one copy per workspace, a share of the cores, and (unless
    `all_gpus`: generate and features spread shards over every visible GPU) one GPU of several."""
    # Our loggers speak at INFO; libraries (open_clip logs every load step to the root logger) at WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for ours in ("pipeline", "stage"):
        logging.getLogger(ours).setLevel(logging.INFO)
    log = logging.getLogger(f"stage.{name}")
    started = time.perf_counter()
    try:
        gpus = contextlib.nullcontext() if all_gpus else gpu_lease(shared_root() / GPUS)
        with _stage_lock(name), share_cores(shared_root() / RUNNING), gpus:
            yield log
    except PipelineError as error:
        print(f"error in stage {name}: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as error:
        message = _os_error_message(error)
        if message is None:
            raise
        print(f"error in stage {name}: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    log.info("done in %.1f s", time.perf_counter() - started)
