"""Dataset sources, one per module: `demo` (the procedural world, rendered in memory), `folder` (your
own image folders) and `torchvision`; `paradigms` turns a source's images into the manifest the
stages read, and `images` opens any manifest row as an 8-bit RGB image.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from pipeline.params import DatasetParams


@dataclass(frozen=True)
class Dataset:
    """Images of both splits before a paradigm is applied: `frame` has id, path, image, split, label."""

    frame: pd.DataFrame
    class_names: list[str]


def pretty_class_name(raw: str) -> str:
    """Folder and torchvision names become prompt-ready words: 'annual_crop' -> 'annual crop'."""
    return raw.replace("_", " ").replace("-", " ").strip()


def load_dataset(params: DatasetParams) -> Dataset:
    """The images of the source `dataset.name` names (sources are imported here: they import `Dataset`)."""
    from pipeline.datasets import demo, folder, torchvision

    if params.name == "demo":
        return demo.demo_dataset(params.demo)
    if params.name == "folder":
        return folder.folder_dataset(params)
    return torchvision.torchvision_dataset(params)
