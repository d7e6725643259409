"""AiR's auxiliary image-image classifier: one row per class built from synthetic image features.

`p_aux(c | x) = softmax(τ · s_c(x))`, with a class score in one of two forms (`auxiliary.score`):
- `prototype`: `s_c(x) = cos(f(x), proto_c)`, the prototype being the renormalised mean of the
  class's kept synthetic features;
- `mean_similarity` (the paper's form): `s_c(x) = (1/K) Σ_k cos(f(x), f_k^c)`, the mean cosine to the
  K kept images. As features are unit vectors this is `f(x) · mean_k f_k^c`, so the stored row is the
  mean *without* renormalisation and both forms score with one matrix product.
Kept images (`auxiliary.keep`): the K synthetic features nearest (cosine) to the class's mean, which
drops the generator's off-class outliers (AiR generates M per class and keeps ~120); `null` keeps all.
Classes without synthetic images get a zero row and therefore a uniform share of the auxiliary vote
rather than a made-up direction.

Which synthetic images count (`synthetic_selection`): with `auxiliary.filter: fidelity`, only those
the frozen CLIP's zero-shot classifier assigns to their prompt class (a class left with fewer than
`MIN_KEPT` keeps its most text-probable ones), then `keep`'s K nearest; the same set builds the
classifier and feeds AiR's synthetic loss.

The temperature `auto` calibrates the two posteriors AiR fuses, without labels: τ is set so that
the auxiliary posterior's mean entropy over the pool equals the text posterior's at CLIP's own logit
scale. With a fixed τ the sharper posterior decides nearly every disagreement, whichever is right.
"""

from __future__ import annotations

import numpy as np

from pipeline.pseudolabel.rules import softmax, text_posterior

SCORES = ("prototype", "mean_similarity")
MIN_KEPT = 4        # the fidelity filter leaves every class at least this many images (its most text-probable)


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.where(norms > 0, vectors / np.maximum(norms, 1e-12), 0.0).astype(np.float32)


def kept_images(members: np.ndarray, keep: int | None) -> np.ndarray:
    """Indices of the `keep` members nearest to their normalised mean (all when keep is None)."""
    if keep is None or len(members) <= keep:
        return np.arange(len(members))
    centre = _normalise(members.mean(axis=0))
    return np.sort(np.argsort(-(members @ centre), kind="stable")[:keep])


def class_prototypes(features: np.ndarray, labels: np.ndarray, n_classes: int, keep: int | None = None,
                     score: str = "prototype") -> np.ndarray:
    """The classifier's rows [n_classes, d]: `f(x) @ rows.T` is each class's score."""
    if score not in SCORES:
        raise ValueError(f"unknown auxiliary score {score!r}; use one of {', '.join(SCORES)}")
    rows = np.zeros((n_classes, features.shape[1]), dtype=np.float32)
    for c in range(n_classes):
        members = features[labels == c]
        if len(members) == 0:
            continue
        mean = members[kept_images(members, keep)].mean(axis=0)
        rows[c] = _normalise(mean) if score == "prototype" else mean
    return rows


def faithful(features: np.ndarray, labels: np.ndarray, zero_shot_weights: np.ndarray) -> np.ndarray:
    """Per synthetic image: whether the frozen CLIP's zero-shot classifier assigns it to the class its
    prompt named (label-free)."""
    return (features @ zero_shot_weights.T).argmax(axis=1) == labels


def class_fidelity(features: np.ndarray, labels: np.ndarray, zero_shot_weights: np.ndarray
                   ) -> tuple[float, np.ndarray]:
    """The share of `faithful` synthetic images, overall and per class (NaN for a class without images)."""
    n_classes = len(zero_shot_weights)
    if len(labels) == 0:
        return float("nan"), np.full(n_classes, np.nan)
    right = faithful(features, labels, zero_shot_weights)
    counts = np.bincount(labels, minlength=n_classes)
    hits = np.bincount(labels, weights=right, minlength=n_classes)
    per_class = np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
    return float(right.mean()), per_class


def synthetic_selection(features: np.ndarray, labels: np.ndarray, zero_shot_weights: np.ndarray,
                        keep: int | None, fidelity_filter: bool) -> np.ndarray:
    """Boolean mask over the synthetic images: the fidelity filter (if on), then the K nearest to
    each class's mean among those left."""
    mask = np.zeros(len(labels), dtype=bool)
    if fidelity_filter and len(labels):
        probs = text_posterior(features, zero_shot_weights)
        right = faithful(features, labels, zero_shot_weights)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if fidelity_filter:
            floor = min(MIN_KEPT, len(members))
            kept = members[right[members]]
            members = np.sort(kept if len(kept) >= floor else
                              members[np.argsort(-probs[members, c], kind="stable")[:floor]])
        mask[members[kept_images(features[members], keep)]] = True
    return mask


def mean_entropy(probs: np.ndarray) -> float:
    """Mean row entropy (nats) of a posterior matrix."""
    return float(-(probs * np.log(np.clip(probs, 1e-30, None))).sum(axis=1).mean())


def matched_temperature(scores: np.ndarray, target_entropy: float) -> float:
    """The τ at which softmax(τ · scores) has the given mean row entropy (bisection in log τ; the
    entropy falls monotonically with τ)."""
    low, high = 1e-3, 1e5
    for _ in range(60):
        middle = float(np.sqrt(low * high))
        low, high = (middle, high) if mean_entropy(softmax(middle * scores)) > target_entropy else (low, middle)
    return float(np.sqrt(low * high))


def auxiliary_posterior(image_features: np.ndarray, prototypes: np.ndarray, temperature: float | str,
                        p_text: np.ndarray | None = None) -> np.ndarray:
    """softmax(τ · f(x) @ rowsᵀ) over the given class rows; τ = `auto` takes `matched_temperature`
    against `p_text`, the text posterior it will be fused with."""
    scores = image_features @ prototypes.T
    if temperature == "auto":
        if p_text is None:
            raise ValueError("auxiliary.temperature auto needs the text posterior to match")
        temperature = matched_temperature(scores, mean_entropy(p_text))
    return softmax(temperature * scores)
