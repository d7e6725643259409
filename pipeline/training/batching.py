"""How a training step draws its rows from the loss terms, one rule per protocol (`pipeline.config.protocols`).

A plan yields, for every step of an epoch, `(term index, rows, scale)` per term; the step's loss is
`Σ scale · loss_term(rows)`, each term's loss a mean over its rows. The rules differ in how the
few labeled images meet the many pseudo-labeled ones, which changes what every example weighs:

- `project`: an epoch is one pass over the first term; every other term draws a batch of the same
  size with replacement, at the term's own scale (`train.labeled_weight`, AiR's β);
- `grip`: pseudo-labeled and labeled examples are one shuffled stream (an epoch is (|P| + |L|)/B
  steps, the last batch short); SSL scales the labeled mean by |L|/|P|, TRZSL the pseudo-labeled
  mean by |L|/|P| (GRIP's `balance_param`, on opposite terms as its code has it);
- `cpl`: an epoch is one pass over the pseudo-labels in full batches (drop_last); each step adds a
  labeled batch of `clamp(B · |L|/|P|, 8, 256)` from a sampler that reshuffles when it runs out.

Terms other than `pseudo` and `labeled` (AiR's synthetic images) draw as in `project` under every rule.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np

Step = list[tuple[int, np.ndarray, float]]


class Plan:
    """The project's rule; subclasses change how `pseudo` and `labeled` are drawn."""

    def __init__(self, names: list[str], sizes: list[int], scales: list[float], batch_size: int, paradigm: str):
        self.names, self.sizes, self.scales = names, sizes, scales
        self.batch_size, self.paradigm = batch_size, paradigm
        self.pseudo, self.labeled = self._index("pseudo"), self._index("labeled")
        self.mixed = self.pseudo is not None and self.labeled is not None

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.sizes[0] / self.batch_size)

    def epoch(self, rng: np.random.Generator) -> Iterator[Step]:
        order = rng.permutation(self.sizes[0])
        for step in range(self.steps_per_epoch):
            batch = order[step * self.batch_size:(step + 1) * self.batch_size]
            yield [(0, batch, self.scales[0])] + self._others(rng, len(batch), skip={0})

    def state(self) -> list[int]:
        """What carries over from one epoch to the next (a checkpoint keeps it)."""
        return []

    def load_state(self, state: list[int]) -> None:
        pass

    def _others(self, rng: np.random.Generator, count: int, skip: set[int]) -> Step:
        """Batches drawn with replacement for the terms the rule does not place itself."""
        return [(index, rng.integers(0, size, count), self.scales[index])
                for index, size in enumerate(self.sizes) if index not in skip]

    def _index(self, name: str) -> int | None:
        return self.names.index(name) if name in self.names else None


class GripPlan(Plan):
    @property
    def steps_per_epoch(self) -> int:
        if not self.mixed:
            return super().steps_per_epoch
        return math.ceil((self.sizes[self.pseudo] + self.sizes[self.labeled]) / self.batch_size)

    def balance(self) -> tuple[float, float]:
        """(labeled, pseudo) multipliers: SSL weighs labeled by |L|/|P|, TRZSL pseudo by |L|/|P|."""
        ratio = self.sizes[self.labeled] / self.sizes[self.pseudo]
        return (ratio, 1.0) if self.paradigm == "ssl" else (1.0, ratio)

    def epoch(self, rng):
        if not self.mixed:
            yield from super().epoch(rng)
            return
        n_pseudo = self.sizes[self.pseudo]
        labeled_factor, pseudo_factor = self.balance()
        order = rng.permutation(n_pseudo + self.sizes[self.labeled])
        for step in range(self.steps_per_epoch):
            batch = order[step * self.batch_size:(step + 1) * self.batch_size]
            parts = [(self.pseudo, batch[batch < n_pseudo], self.scales[self.pseudo] * pseudo_factor),
                     (self.labeled, batch[batch >= n_pseudo] - n_pseudo, self.scales[self.labeled] * labeled_factor)]
            yield [part for part in parts if len(part[1])] + self._others(rng, len(batch),
                                                                           skip={self.pseudo, self.labeled})


class CplPlan(Plan):
    def __init__(self, *args):
        super().__init__(*args)
        self._queue = np.zeros(0, dtype=np.int64)

    @property
    def steps_per_epoch(self) -> int:
        """Full batches only (a pool smaller than one batch still trains one short batch)."""
        return max(1, self.sizes[0] // self.batch_size)

    def state(self):
        return self._queue.tolist()

    def load_state(self, state):
        self._queue = np.asarray(state, dtype=np.int64)

    def labeled_batch(self) -> int:
        ratio = self.sizes[self.labeled] / self.sizes[self.pseudo]
        return int(min(256, max(8, self.batch_size * ratio)))

    def _take(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """The next rows of a reshuffled pass over the labeled images; a new pass when one runs out."""
        if not len(self._queue):
            self._queue = rng.permutation(self.sizes[self.labeled])
        rows, self._queue = self._queue[:count], self._queue[count:]
        return rows

    def epoch(self, rng):
        order = rng.permutation(self.sizes[0])
        for step in range(self.steps_per_epoch):
            batch = order[step * self.batch_size:(step + 1) * self.batch_size]
            parts = [(0, batch, self.scales[0])]
            if self.mixed and self.pseudo == 0:
                parts.append((self.labeled, self._take(rng, self.labeled_batch()), self.scales[self.labeled]))
                yield parts + self._others(rng, len(batch), skip={0, self.labeled})
            else:
                yield parts + self._others(rng, len(batch), skip={0})


PLANS: dict[str, type[Plan]] = {"project": Plan, "grip": GripPlan, "cpl": CplPlan}
