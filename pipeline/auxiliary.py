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
"""

from __future__ import annotations

import numpy as np

from pipeline.pseudolabels import softmax

SCORES = ("prototype", "mean_similarity")


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


def auxiliary_posterior(image_features: np.ndarray, prototypes: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(τ · f(x) @ rowsᵀ) over the given class rows."""
    return softmax(temperature * (image_features @ prototypes.T))
