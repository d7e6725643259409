"""Test-set metrics: top-1 accuracy (UL, SSL) or seen / unseen / harmonic mean (TRZSL)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.core.candidates import LOGIT_SCALE


def predict(features: np.ndarray, class_weights: np.ndarray) -> np.ndarray:
    return (LOGIT_SCALE * features @ class_weights.T).argmax(axis=1)


def harmonic_mean(a: float, b: float) -> float:
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def accuracy(true: np.ndarray, predicted: np.ndarray) -> float:
    return float((true == predicted).mean()) if len(true) else float("nan")


def split_metrics(true: np.ndarray, predicted: np.ndarray, paradigm: str, seen: np.ndarray) -> dict[str, float]:
    """`seen` marks test images of seen classes (TRZSL); predictions range over all classes."""
    if paradigm != "trzsl":
        return {"accuracy": accuracy(true, predicted)}
    seen_acc, unseen_acc = accuracy(true[seen], predicted[seen]), accuracy(true[~seen], predicted[~seen])
    return {"seen_accuracy": seen_acc, "unseen_accuracy": unseen_acc,
            "harmonic_mean": harmonic_mean(seen_acc, unseen_acc)}


def per_class_accuracy(true: np.ndarray, predicted: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    rows = []
    for c, name in enumerate(class_names):
        members = true == c
        rows.append({"class_index": c, "class_name": name, "n_test": int(members.sum()),
                     "accuracy": accuracy(true[members], predicted[members])})
    return pd.DataFrame(rows)


def confusion_rows(true: np.ndarray, predicted: np.ndarray, class_names: list[str], max_classes: int) -> pd.DataFrame:
    """One row per test image (actual, predicted), DVC's confusion-plot format. With more classes than
    `max_classes`, only images of the first `max_classes` classes are kept, so the plot stays legible."""
    keep = true < max_classes
    names = np.asarray(class_names, dtype=object)
    return pd.DataFrame({"actual": names[true[keep]], "predicted": names[predicted[keep]]})
