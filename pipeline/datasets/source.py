"""What a dataset source returns: the images of both splits, before a paradigm is applied."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Dataset:
    """Images of both splits before a paradigm is applied: `frame` has id, path, image, split, label."""

    frame: pd.DataFrame
    class_names: list[str]


def pretty_class_name(raw: str) -> str:
    """Folder and torchvision names become prompt-ready words: 'annual_crop' -> 'annual crop'."""
    return raw.replace("_", " ").replace("-", " ").strip()
