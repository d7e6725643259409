"""Posteriors and pseudo-label selection rules (UPL, balanced top-K, GRIP's growing K), AiR fusion.

All rules take a posterior matrix `probs` [N, C'] over the classes pseudo-labels may take (all
classes, or TRZSL's unseen ones) and return row indices, column indices and confidences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.prompts import LOGIT_SCALE

ITERATIVE_METHODS = ("ifpl", "grip")


@dataclass(frozen=True)
class Selection:
    rows: np.ndarray        # indices into the unlabeled pool
    labels: np.ndarray      # column indices into the posterior
    confidence: np.ndarray  # posterior of the chosen label


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def text_posterior(image_features: np.ndarray, class_weights: np.ndarray) -> np.ndarray:
    """CLIP's zero-shot posterior, softmax(100 · f tᵀ)."""
    return softmax(LOGIT_SCALE * image_features @ class_weights.T)


def fuse(p_text: np.ndarray, p_aux: np.ndarray, weight: float) -> np.ndarray:
    """AiR's fused posterior `(p_text + λ p_aux) / (1 + λ)`: still a distribution per row."""
    return (p_text + weight * p_aux) / (1.0 + weight)


def select_all(probs: np.ndarray) -> Selection:
    """Every image with its argmax class (what zero-shot CLIP would say)."""
    labels = probs.argmax(axis=1)
    rows = np.arange(len(probs))
    return Selection(rows, labels, probs[rows, labels])


def select_upl(probs: np.ndarray, k: int) -> Selection:
    """UPL: argmax class per image, then per predicted class the k most confident; no fallback."""
    labels = probs.argmax(axis=1)
    confidence = probs[np.arange(len(probs)), labels]
    keep = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        order = np.lexsort((members, -confidence[members]))  # confidence desc, index asc on ties
        keep.append(members[order[:k]])
    rows = np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=int)
    return Selection(rows, labels[rows], confidence[rows])


def select_balanced(probs: np.ndarray, k: int) -> Selection:
    """Balanced top-K with fallback: walk all (image, class) pairs by posterior, descending; take a
    pair when the image is still free and the class holds fewer than k. One label per image,
    deterministic (ties broken by image then class index)."""
    n, c = probs.shape
    flat = probs.reshape(-1)
    order = np.lexsort((np.arange(flat.size), -flat))
    taken = np.full(n, -1)
    room = np.full(c, k)
    budget = min(n, c * k)
    assigned = 0
    for pair in order:
        image, label = divmod(int(pair), c)
        if taken[image] < 0 and room[label] > 0:
            taken[image] = label
            room[label] -= 1
            assigned += 1
            if assigned == budget:
                break
    rows = np.flatnonzero(taken >= 0)
    return Selection(rows, taken[rows], probs[rows, taken[rows]])


def grip_k(round_index: int, n_unlabeled: int, n_classes: int, rounds: int) -> int:
    """GRIP's schedule: round t of R takes K_t = floor(t · (|U| / R) / C), capped at floor(|U| / C)."""
    return min(int(round_index * (n_unlabeled / rounds) / n_classes), n_unlabeled // n_classes)


def rule_for(method: str, air_selection: str) -> str:
    """The selection rule a method uses: its own for the baselines, the configured one for AiR."""
    return {"zeroshot": "all", "upl": "upl", "fpl": "balanced", "ifpl": "balanced", "grip": "grip"}.get(
        method, air_selection)


def n_rounds(method: str, air_selection: str, rounds: int) -> int:
    """IFPL and GRIP (and AiR with GRIP's schedule) re-label for `rounds` rounds; the rest once."""
    iterative = method in ITERATIVE_METHODS or (method == "air" and air_selection == "grip")
    return rounds if iterative else 1


def select(probs: np.ndarray, rule: str, k: int, round_index: int = 1, rounds: int = 1) -> Selection:
    """Apply a selection rule; `round_index` (1-based) matters only for GRIP's growing K."""
    if rule == "all":
        return select_all(probs)
    if rule == "upl":
        return select_upl(probs, k)
    if rule == "balanced":
        return select_balanced(probs, k)
    if rule == "grip":
        return select_balanced(probs, grip_k(round_index, len(probs), probs.shape[1], rounds))
    raise ValueError(f"unknown selection rule {rule!r}")
