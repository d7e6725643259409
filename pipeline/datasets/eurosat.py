"""EuroSAT (RGB) with the papers' descriptive class names ("annual crop land", "highway or road").
Layout: `2750/<ClassFolder>/*.jpg` (torchvision: `<root>/eurosat/2750`). The archive has no official
split and ELEVATER's lists are not public offline: each class is split by `dataset.test_fraction`
(default 0.5) from `dataset.split_seed`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.datasets import Dataset
from pipeline.datasets.benchmark import frame, locate, random_split, shipped_class_names, shipped_folders
from pipeline.errors import PipelineError
from pipeline.params import DatasetParams

LAYOUT = "  <root>/2750/AnnualCrop/AnnualCrop_1.jpg ... (10 class folders)"
DEFAULT_TEST_FRACTION = 0.5


def load(params: DatasetParams) -> Dataset:
    folders = shipped_folders("eurosat")
    base = locate(params.root, ("eurosat", "2750"), folders[0], "eurosat", LAYOUT)
    return class_folder_dataset(base, folders, shipped_class_names("eurosat"), params, DEFAULT_TEST_FRACTION,
                                "eurosat")


def class_folder_dataset(base: Path, folders: list[str], names: list[str], params: DatasetParams,
                         default_test_fraction: float, dataset: str) -> Dataset:
    """One folder per class, split at random per class (EuroSAT, RESISC45)."""
    paths, labels = [], []
    for label, folder in enumerate(folders):
        files = sorted(p for p in (base / folder).glob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".tif"})
        if not files:
            raise PipelineError(f"{dataset}: class folder {base / folder} is missing or empty; "
                                f"every one of the {len(folders)} class folders must hold its images")
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    fraction = params.test_fraction if params.test_fraction is not None else default_test_fraction
    splits = random_split(np.asarray(labels), fraction, params.split_seed)
    ids = [f"{split}/{Path(p).parent.name}/{Path(p).name}" for p, split in zip(paths, splits)]
    return Dataset(frame(paths, ids, list(splits), labels), names)
