"""EuroSAT (RGB) with the papers' descriptive class names ("annual crop land", "highway or road").
Layout: `2750/<ClassFolder>/*.jpg` (torchvision: `<root>/eurosat/2750`). The archive has no official
split and ELEVATER's lists are not public offline: each class is split by `dataset.test_fraction`
(default 0.5) from `dataset.split_seed`."""

from __future__ import annotations

from pipeline.config.params import DatasetParams
from pipeline.datasets.benchmark import class_folder_dataset, locate, shipped_class_names, shipped_folders
from pipeline.datasets.source import Dataset

LAYOUT = "  <root>/2750/AnnualCrop/AnnualCrop_1.jpg ... (10 class folders)"
DEFAULT_TEST_FRACTION = 0.5


def load(params: DatasetParams) -> Dataset:
    folders = shipped_folders("eurosat")
    base = locate(params.root, ("eurosat", "2750"), folders[0], "eurosat", LAYOUT)
    return class_folder_dataset(base, folders, shipped_class_names("eurosat"), params, DEFAULT_TEST_FRACTION,
                                "eurosat")
