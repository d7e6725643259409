"""Dataset sources, one per module: `demo` (the procedural world, rendered in memory), `folder` (your
own image folders), the papers' benchmarks (`flowers102`, `dtd`, `eurosat`, `fgvc_aircraft`,
`resisc45`, `cub`: their on-disk layouts read directly, shared parts in `benchmark`) and the other
`torchvision` datasets; `paradigms` turns a source's images into the manifest the stages read, and
`images` opens any manifest row as an 8-bit RGB image.
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
    """The images of the source `dataset.name` names, renamed by `dataset.class_names_file` if given
    (sources are imported here: they import `Dataset`)."""
    import importlib

    from pipeline.datasets import benchmark, demo, folder, torchvision
    from pipeline.datasets.images import check_decodable
    from pipeline.params import BENCHMARKS

    if params.name == "demo":
        return benchmark.renamed(demo.demo_dataset(params.demo), params.class_names_file)
    if params.name == "folder":
        return folder.folder_dataset(params)
    if params.name in BENCHMARKS:
        if params.download:
            benchmark.download(params.name, params.root)
        dataset = importlib.import_module(f"pipeline.datasets.{params.name}").load(params)
        check_decodable(dataset.frame["path"].tolist())  # a truncated file is named here, not mid-training
        return benchmark.renamed(dataset, params.class_names_file)
    return benchmark.renamed(torchvision.torchvision_dataset(params), params.class_names_file)
