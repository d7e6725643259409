"""The training split as the methods see it: features, what the paradigm lets them know, and the
synthetic images and prototypes AiR adds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from pipeline.core.candidates import Candidates


@dataclass
class Pool:
    """Training-split features with what each method may know about them."""

    features: np.ndarray          # [N, d] L2-normalised real training images
    true_labels: np.ndarray       # [N] for analysis only (pseudo-label accuracy), never for training
    labeled: np.ndarray           # [N] bool: the paradigm lets training use the true label
    allowed_classes: np.ndarray   # classes pseudo-labels may take
    n_classes: int                # all classes: prompts are trained and tested over every one
    synthetic_features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    synthetic_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    prototypes: Optional[np.ndarray] = None
    candidate_sets: Optional[np.ndarray] = None       # [N, C] bool: the candidates paradigm's label sets
    zero_shot_weights: Optional[np.ndarray] = None    # [C, d] the handcrafted prompts' class weights
    images: Optional[np.ndarray] = None               # [N] rows of the pixel store (image-space training)
    synthetic_images: Optional[np.ndarray] = None     # [M] the same for the synthetic images
    frozen_features: Optional[np.ndarray] = None      # the frozen tower's `features`, once a round re-encoded them
    synthetic_rows: Optional[np.ndarray] = None       # [M] their rows in the synthetic store (AiR's kept images)

    def images_of(self, rows: np.ndarray) -> Optional[np.ndarray]:
        return None if self.images is None else self.images[rows]

    @property
    def unlabeled(self) -> np.ndarray:
        return np.flatnonzero(~self.labeled)

    def to_pool_coordinates(self, chosen: Candidates) -> Candidates:
        """Map a rule's answer over (unlabeled rows, allowed classes) to pool rows and all classes."""
        weights = np.zeros((len(chosen), self.n_classes), dtype=np.float32)
        weights[:, self.allowed_classes] = chosen.weights
        return Candidates(self.unlabeled[chosen.rows], self.allowed_classes[chosen.labels], weights,
                          chosen.confidence)
