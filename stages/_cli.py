"""What every stage shares: logging a person can read, and bad input as a message, not a traceback."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Iterator

from pipeline.errors import PipelineError


@contextlib.contextmanager
def stage(name: str) -> Iterator[logging.Logger]:
    # Our loggers speak at INFO; libraries (open_clip logs every load step to the root logger) at WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for ours in ("pipeline", "stage"):
        logging.getLogger(ours).setLevel(logging.INFO)
    log = logging.getLogger(f"stage.{name}")
    started = time.perf_counter()
    try:
        yield log
    except PipelineError as error:
        print(f"error in stage {name}: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    log.info("done in %.1f s", time.perf_counter() - started)
