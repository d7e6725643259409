"""Per-epoch training checkpoints, so a killed `train` resumes where it stopped.

A checkpoint belongs to one round of one ensemble member and is named by a digest of everything that
decides that round's trajectory (the code of the training modules, the recipe, the seed, the loss
terms' rows and targets), so a resumed round continues exactly the run that was interrupted and a
changed input never picks up a stale state. Tensors go to safetensors; the optimiser's and
scheduler's bookkeeping, the random generators' states and the loss history to its JSON metadata.
A finished round's last checkpoint lets a restarted stage skip the round; the stage clears its
checkpoints once its outputs are written.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch

from pipeline.core.artifacts import atomic_path

log = logging.getLogger(__name__)

# The code whose change changes a round's trajectory (so a checkpoint of other code is never resumed).
CODE = ("training/loop.py", "training/learners.py", "training/visual.py", "clip/pixels.py", "clip/prompts.py",
        "training/batching.py", "training/losses.py")  # under pipeline/


def digest(*parts) -> str:
    """sha256 over arrays (shape, dtype, bytes), strings and JSON-able values."""
    hasher = hashlib.sha256()
    for name in CODE:
        hasher.update((Path(__file__).parents[1] / name).read_bytes())
    for part in parts:
        if isinstance(part, np.ndarray):
            hasher.update(f"{part.shape}{part.dtype}".encode())
            hasher.update(np.ascontiguousarray(part).tobytes())
        elif part is None:
            hasher.update(b"<none>")
        else:
            hasher.update(json.dumps(part, sort_keys=True, default=str).encode())
    return hasher.hexdigest()[:20]


class Checkpoints:
    """A folder of round checkpoints; `every` epochs between saves."""

    def __init__(self, folder: str | Path, every: int = 1):
        self.folder, self.every = Path(folder), every
        self.written: set[Path] = set()

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.safetensors"

    def save(self, key: str, tensors: dict[str, torch.Tensor], state: dict) -> None:
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        with atomic_path(path) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
                      metadata={"state": json.dumps(state)})
        self.written.add(path)

    def load(self, key: str) -> tuple[dict[str, torch.Tensor], dict] | None:
        from safetensors import safe_open

        path = self.path(key)
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}
                state = json.loads(handle.metadata()["state"])
        except Exception as error:  # a torn or foreign file: start the round again rather than fail
            log.warning("ignoring unreadable checkpoint %s (%s); the round starts again", path, error)
            return None
        self.written.add(path)
        return tensors, state

    def clear(self) -> None:
        """Remove the checkpoints this run wrote or read (its outputs are safe by now)."""
        for path in self.written:
            path.unlink(missing_ok=True)
        self.written.clear()


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """The optimiser's state as flat tensors plus its JSON-able param groups."""
    state = optimizer.state_dict()
    tensors = {f"optimizer.{index}.{name}": value for index, values in state["state"].items()
               for name, value in values.items() if isinstance(value, torch.Tensor)}
    scalars = {f"{index}.{name}": value for index, values in state["state"].items()
               for name, value in values.items() if not isinstance(value, torch.Tensor)}
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], saved: dict) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            index, key = name.removeprefix("optimizer.").split(".", 1)
            state.setdefault(int(index), {})[key] = value
    for name, value in saved["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
