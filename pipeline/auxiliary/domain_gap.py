"""How far synthetic images are from the real target images, in the CLIP feature space.

AiR's auxiliary classifier can only beat the text classifier when its synthetic images look like the
target; these numbers say whether they do, without any label:
- `cosine_mean` / `cosine_median`: for each synthetic image, its mean cosine to the real training
  images (`f_s · mean_r f_r`); the mean of these is exactly the mean over all (synthetic, real) pairs.
- `frechet`: the Fréchet distance between Gaussians fitted to the two feature sets (FID's formula on
  CLIP features). `frechet_floor`, the distance between the real training and test images, is what two
  samples of the *same* domain score, a yardstick for the rest.
"""

from __future__ import annotations

import numpy as np

from pipeline.auxiliary.prototypes import auxiliary_posterior, class_fidelity
from pipeline.pseudolabel.rules import fuse, text_posterior


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """‖μa − μb‖² + Tr(Σa + Σb − 2 (Σa Σb)^½), in float64. Tr (Σa Σb)^½ is taken as Tr (Σa^½ Σb Σa^½)^½,
    which has the same eigenvalues and stays symmetric, so no complex square roots."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrt_psd(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def domain_gap(synthetic: np.ndarray, real_train: np.ndarray, real_test: np.ndarray) -> dict[str, float]:
    if len(synthetic) == 0:
        nan = float("nan")
        return {"cosine_mean": nan, "cosine_median": nan, "frechet": nan,
                "frechet_floor": frechet_distance(real_train, real_test)}
    per_image = synthetic @ real_train.mean(axis=0)
    return {"cosine_mean": float(per_image.mean()), "cosine_median": float(np.median(per_image)),
            "frechet": frechet_distance(synthetic, real_train),
            "frechet_floor": frechet_distance(real_train, real_test)}


def classifier_accuracies(features: np.ndarray, true_labels: np.ndarray, zero_shot_weights: np.ndarray,
                          prototypes: np.ndarray, temperature: float | str, fusion_lambda: float) -> dict[str, float]:
    """Analysis only: how often the text, auxiliary and fused (AiR, λ) classifiers name the true class,
    i.e. whether closing the gap made the synthetic images useful."""
    p_text = text_posterior(features, zero_shot_weights)
    p_aux = auxiliary_posterior(features, prototypes, temperature, p_text)
    return {name: float((p.argmax(axis=1) == true_labels).mean())
            for name, p in (("text", p_text), ("auxiliary", p_aux), ("fused", fuse(p_text, p_aux, fusion_lambda)))}


def fidelity_report(synthetic: np.ndarray, synthetic_labels: np.ndarray, weights: np.ndarray, class_names: list[str],
                    kept: np.ndarray, adapted: bool, prior_labels: np.ndarray,
                    prior_features: np.ndarray) -> tuple[dict, np.ndarray]:
    """The synthetic images' class fidelity (label-free: the share the frozen CLIP assigns to their
    prompt class), overall, of the images the auxiliary classifier kept, and of the unadapted sample
    `adapt` made (the synthetic images themselves when nothing was adapted); with the per-class shares."""
    overall, per_class = class_fidelity(synthetic, synthetic_labels, weights)
    kept_overall, _ = class_fidelity(synthetic[kept], synthetic_labels[kept], weights)
    unadapted, unadapted_per_class = (class_fidelity(prior_features, prior_labels, weights) if adapted
                                      else (overall, per_class))
    report = {"generator": "adapted" if adapted else "unadapted", "synthetic": overall,
              "kept": kept_overall, "unadapted": unadapted, "unadapted_images": len(prior_labels) if adapted else len(kept),
              "per_class": {name: {"synthetic": float(a), "unadapted": float(b)}
                            for name, a, b in zip(class_names, per_class, unadapted_per_class)}}
    return report, per_class
