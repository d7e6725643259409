"""The one candidate-set type every method trains on, and the one loss over it.

A method's pseudo-labels are a set of candidate classes per selected image, carried as a weight
matrix over all classes: a single label is a one-hot row, CPL's candidate set a binary row, CPL's
first round a soft row (the posterior restricted to the set). One loss covers all of them,
`-log Σ_c w_c softmax(z)_c`: cross-entropy for a one-hot row, CPL's candidate loss (CC) for a
binary row. The partial-label losses of method pll (`pipeline.training.losses`) read the same type.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

LOGIT_SCALE = 100.0  # CLIP's fixed logit scale, s = 100 · f tᵀ: every posterior and loss here is on it


@dataclass(frozen=True)
class Candidates:
    """Selected images (rows into the pool), their assigned class and their candidate weights."""

    rows: np.ndarray        # [n] indices into the training pool
    labels: np.ndarray      # [n] global class the image was assigned to (its pool / pseudo-label)
    weights: np.ndarray     # [n, C] non-negative; > 0 marks a candidate; every row has one
    confidence: np.ndarray  # [n] posterior of the assigned class

    @classmethod
    def single(cls, rows: np.ndarray, labels: np.ndarray, n_classes: int, confidence: np.ndarray) -> "Candidates":
        """One label per image: one-hot weights."""
        rows, labels = np.asarray(rows, dtype=np.int64), np.asarray(labels, dtype=np.int64)
        weights = np.zeros((len(rows), n_classes), dtype=np.float32)
        weights[np.arange(len(rows)), labels] = 1.0
        return cls(rows, labels, weights, np.asarray(confidence, dtype=np.float32))

    @classmethod
    def empty(cls, n_classes: int) -> "Candidates":
        return cls.single(np.zeros(0, np.int64), np.zeros(0, np.int64), n_classes, np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def mask(self) -> np.ndarray:
        return self.weights > 0

    def sets(self) -> list[list[int]]:
        """Each row's candidate classes, ascending."""
        return [np.flatnonzero(row).tolist() for row in self.mask]

    def set_weights(self) -> list[list[float]]:
        return [row[row > 0].astype(float).tolist() for row in self.weights]

    def accuracy(self, true_labels: np.ndarray) -> float:
        """Share of selected images whose assigned class is the true one (analysis only)."""
        return float((true_labels[self.rows] == self.labels).mean()) if len(self) else float("nan")

    def coverage(self, true_labels: np.ndarray) -> float:
        """Share of selected images whose candidate set holds the true class (analysis only)."""
        if not len(self):
            return float("nan")
        return float(self.mask[np.arange(len(self)), true_labels[self.rows]].mean())

    def mean_set_size(self) -> float:
        return float(self.mask.sum(axis=1).mean()) if len(self) else float("nan")


def candidate_loss(logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean of `-log Σ_c w_c softmax(logits)_c` over the batch.

    Computed as `-logsumexp(log_softmax(logits) + log w)`: no candidate probability underflows, and a
    one-hot row reduces to `-log_softmax(logits)_y`, the very operations of `F.cross_entropy` (same
    value and gradient, bit for bit), so single-label methods train exactly as with cross-entropy.
    """
    log_weights = torch.log(weights.clamp_min(0)).to(logits.dtype)  # log 0 = -inf drops non-candidates
    return -torch.logsumexp(F.log_softmax(logits, dim=1) + log_weights, dim=1).mean()
