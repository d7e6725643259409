"""The `check` stage's record of what the experiment reads outside the repository (`data/inputs/`).

`check` asks the method (`Method.reads_synthetic_images`) and writes the generator's fingerprint, or
UNUSED_GENERATOR for a method that reads no synthetic images; `adapt`, `generate` and
`features synthetic` read that answer here instead of importing every method.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core import paths
from pipeline.core.artifacts import read_json
from pipeline.core.errors import PipelineError

UNUSED_GENERATOR = {"unused": True}


def reads_synthetic_images(generator_input: Path = paths.GENERATOR_INPUT) -> bool:
    """Whether this experiment's method reads synthetic images, as `check` recorded it."""
    if not Path(generator_input).is_file():
        raise PipelineError(f"{generator_input} not found; run the check stage first (dvc repro, or python -m stages.check)")
    return read_json(generator_input) != UNUSED_GENERATOR
