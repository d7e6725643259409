"""The prepared manifest (`data/prepared/manifest.parquet`): one row per image of both splits, written
by `prepare`; what the later stages read from it without importing the dataset sources."""

from __future__ import annotations

import numpy as np
import pandas as pd

MANIFEST_COLUMNS = ["id", "path", "image", "split", "label", "labeled", "seen"]


def pseudo_label_classes(manifest: pd.DataFrame, n_classes: int, paradigm: str) -> np.ndarray:
    """Classes pseudo-labels may take: all, or in TRZSL only the unseen ones."""
    if paradigm != "trzsl":
        return np.arange(n_classes)
    seen = set(manifest.loc[manifest["seen"], "label"].unique().tolist())
    return np.array([c for c in range(n_classes) if c not in seen])
