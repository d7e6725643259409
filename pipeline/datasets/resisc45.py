"""NWPU-RESISC45 (45 scene classes, 700 images each). Layout: `NWPU-RESISC45/<class>/<class>_001.jpg`.
ELEVATER's split lists are not public offline; its sizes (6,300 train+val, 25,200 test) are kept by
sending 80% of every class to test by default (`dataset.test_fraction`), drawn from `split_seed`."""

from __future__ import annotations

from pipeline.config.params import DatasetParams
from pipeline.datasets.benchmark import class_folder_dataset, locate, shipped_class_names, shipped_folders
from pipeline.datasets.source import Dataset

LAYOUT = "  <root>/NWPU-RESISC45/airplane/airplane_001.jpg ... (45 class folders)"
DEFAULT_TEST_FRACTION = 0.8


def load(params: DatasetParams) -> Dataset:
    folders = shipped_folders("resisc45")
    base = locate(params.root, ("NWPU-RESISC45",), folders[0], "resisc45", LAYOUT)
    return class_folder_dataset(base, folders, shipped_class_names("resisc45"), params, DEFAULT_TEST_FRACTION,
                                "resisc45")
