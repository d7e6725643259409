"""AiR's auxiliary image-image classifier: one prototype per class from synthetic image features.

`p_aux(c | x) = softmax(τ · cos(f(x), proto_c))`. A prototype is the mean synthetic feature of the
class, or (`knn`) the mean of the k synthetic features nearest to that mean, which drops the
generator's off-class outliers. Classes without synthetic images get a zero prototype and therefore
a uniform share of the auxiliary vote rather than a made-up direction.
"""

from __future__ import annotations

import numpy as np

from pipeline.pseudolabels import softmax


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.where(norms > 0, vectors / np.maximum(norms, 1e-12), 0.0).astype(np.float32)


def class_prototypes(features: np.ndarray, labels: np.ndarray, n_classes: int, mode: str = "mean",
                     knn: int = 8) -> np.ndarray:
    """L2-normalised prototypes [n_classes, d]; rows of classes with no features are zero."""
    prototypes = np.zeros((n_classes, features.shape[1]), dtype=np.float32)
    for c in range(n_classes):
        members = features[labels == c]
        if len(members) == 0:
            continue
        centre = _normalise(members.mean(axis=0))
        if mode == "knn" and len(members) > knn:
            nearest = np.argsort(-(members @ centre), kind="stable")[:knn]
            centre = _normalise(members[nearest].mean(axis=0))
        elif mode not in ("mean", "knn"):
            raise ValueError(f"unknown prototype mode {mode!r}; use mean or knn")
        prototypes[c] = centre
    return prototypes


def auxiliary_posterior(image_features: np.ndarray, prototypes: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(τ · cos(f(x), proto_c)) over the given prototype rows."""
    return softmax(temperature * (image_features @ prototypes.T))
