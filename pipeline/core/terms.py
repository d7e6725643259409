"""The loss-term type: what a method hands the training loop, one term of the prompt loss each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class LossTerm:
    """One term of the prompt loss: `scale · loss(100 · f gᵀ, weights)` over `features`, where `loss`
    names a partial-label loss (`pipeline.training.losses`; `cc` is the candidate loss, cross-entropy for
    one-hot weights). With a `teacher` posterior the term is prompt-aligned to it. The first term of a
    method's list sets the epoch (one pass over its rows)."""

    name: str
    features: np.ndarray   # [n, d]
    weights: np.ndarray    # [n, C] candidate weights (one-hot for a single label)
    scale: float
    loss: str = "cc"
    teacher: Optional[np.ndarray] = None  # [n, C] handcrafted-prompt posterior (prompt alignment)
    teacher_mix: float = 0.0              # share of the learnable prompt's posterior in the alignment target
    loss_options: Optional[dict] = None   # the losses' knobs, e.g. {"non_candidate_weight": λ} (LWS)
    images: Optional[np.ndarray] = None   # [n] rows of the pixel store, when the image tower trains
