"""Posteriors and the pseudo-label selection rules the methods are built from.

Every rule takes a posterior matrix `probs` [N, C'] over the classes pseudo-labels may take (all
classes, or TRZSL's unseen ones) and returns `Candidates` in those coordinates: rows of `probs`,
columns of `probs`. The methods (`pipeline.methods`) decide which rule, which posterior and when.
"""

from __future__ import annotations

import heapq
from collections import deque

import numpy as np

from pipeline.candidates import LOGIT_SCALE, Candidates


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


def _single(probs: np.ndarray, rows: np.ndarray, labels: np.ndarray) -> Candidates:
    return Candidates.single(rows, labels, probs.shape[1], probs[rows, labels])


def select_all(probs: np.ndarray) -> Candidates:
    """Every image with its argmax class (what zero-shot CLIP would say)."""
    return _single(probs, np.arange(len(probs)), probs.argmax(axis=1))


def select_upl(probs: np.ndarray, k: int) -> Candidates:
    """UPL: argmax class per image, then per predicted class the k most confident; no fallback."""
    labels = probs.argmax(axis=1)
    confidence = probs[np.arange(len(probs)), labels]
    keep = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        order = np.lexsort((members, -confidence[members]))  # confidence desc, index asc on ties
        keep.append(members[order[:k]])
    rows = np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)
    return _single(probs, rows, labels[rows])


def select_balanced(probs: np.ndarray, k: int) -> Candidates:
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
        if assigned == budget:
            break
        image, label = divmod(int(pair), c)
        if taken[image] < 0 and room[label] > 0:
            taken[image] = label
            room[label] -= 1
            assigned += 1
    rows = np.flatnonzero(taken >= 0)
    return _single(probs, rows, taken[rows])


def grip_k(round_index: int, n_unlabeled: int, n_classes: int, rounds: int) -> int:
    """GRIP's schedule: round t of R takes K_t = floor(t · (|U| / R) / C), capped at floor(|U| / C)."""
    return min(int(round_index * (n_unlabeled / rounds) / n_classes), n_unlabeled // n_classes)


# --- CPL: candidate pseudo-labels (vanillaer/CPL-ICML2024, utils/clip_pseudolabels.py) -------------

def intra_instance_sets(probs: np.ndarray, alpha: float) -> np.ndarray:
    """Per image, classes in descending posterior until their cumulative sum first exceeds τ₁, the
    α-quantile over images of the top posterior. The top class is always in. Returns a bool mask."""
    tau = float(np.quantile(probs.max(axis=1), alpha))
    order = np.argsort(-probs, axis=1, kind="stable")
    sorted_probs = np.take_along_axis(probs, order, axis=1)
    before = np.cumsum(sorted_probs, axis=1) - sorted_probs   # mass of the classes ranked above
    keep_sorted = before <= tau
    keep_sorted[:, 0] = True
    mask = np.zeros_like(keep_sorted)
    np.put_along_axis(mask, order, keep_sorted, axis=1)
    return mask


def inter_instance_sets(probs: np.ndarray, beta: float) -> np.ndarray:
    """Per class c, the images whose p(c|x) reaches the β-quantile of column c. Returns a bool mask."""
    return probs >= np.quantile(probs, beta, axis=0, keepdims=True)


def assign_to_pools(probs: np.ndarray, mask: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """CPL's evicting per-class pools: each image asks its candidate classes in descending posterior;
    a class holds at most `caps[c]` images, keeping the most confident (p(c|x), then lower index), and
    an evicted image asks its next candidate. Returns the class of each image, -1 if it has none.

    Images ask in any order and end in the same pools (the image-proposing stable assignment), so
    the result equals the authors' batched recursion while being deterministic."""
    n = len(probs)
    preference = [np.flatnonzero(mask[i])[np.argsort(-probs[i, mask[i]], kind="stable")] for i in range(n)]
    asked = np.zeros(n, dtype=np.int64)
    pools: list[list[tuple[float, int]]] = [[] for _ in range(probs.shape[1])]  # min-heaps of (p, -image)
    waiting = deque(i for i in range(n) if len(preference[i]))
    while waiting:
        image = waiting.popleft()
        while asked[image] < len(preference[image]):
            label = int(preference[image][asked[image]])
            asked[image] += 1
            entry = (float(probs[image, label]), -image)
            pool = pools[label]
            if len(pool) < caps[label]:
                heapq.heappush(pool, entry)
                break
            if pool and entry > pool[0]:
                evicted = heapq.heapreplace(pool, entry)
                waiting.append(-evicted[1])
                break
    assigned = np.full(n, -1, dtype=np.int64)
    for label, pool in enumerate(pools):
        for _, negative in pool:
            assigned[-negative] = label
    return assigned


def cpl_pool_caps(k: int, previous_counts: np.ndarray | None, n_classes: int) -> np.ndarray:
    """Pool sizes for a round with target K: CPL grows every pool by K minus the fullest pool of the
    last round, so a class that filled only part of its pool grows from what it filled."""
    if previous_counts is None:
        return np.full(n_classes, k, dtype=np.int64)
    increment = max(0, k - int(previous_counts.max(initial=0)))
    return np.minimum(previous_counts + increment, k).astype(np.int64)


def select_cpl(probs: np.ndarray, alpha: float, beta: float, caps: np.ndarray, soft: bool) -> Candidates:
    """CPL: candidate sets = intra ∩ inter; images with an empty set are dropped; the rest fill the
    pools. `soft` weights a set by the posterior restricted to it (round 1), else by a binary mask."""
    mask = intra_instance_sets(probs, alpha) & inter_instance_sets(probs, beta)
    assigned = assign_to_pools(probs, mask, caps)
    rows = np.flatnonzero(assigned >= 0)
    labels = assigned[rows]
    weights = np.where(mask[rows], probs[rows] if soft else 1.0, 0.0).astype(np.float32)
    if soft:
        weights /= weights.sum(axis=1, keepdims=True)
    return Candidates(rows, labels, weights, probs[rows, labels].astype(np.float32))
