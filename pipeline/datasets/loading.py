"""`load_dataset`: the images of the source `dataset.name` names (one module per source in this package)."""

from __future__ import annotations

from pipeline.config.params import BENCHMARKS, DatasetParams
from pipeline.datasets import benchmark, cub, demo, dtd, eurosat, fgvc_aircraft, flowers102, folder, resisc45, torchvision
from pipeline.datasets.images import check_decodable
from pipeline.datasets.source import Dataset

# The papers' benchmarks, read from their own archive layouts (`params.BENCHMARKS` names them for the schema).
BENCHMARK_SOURCES = {module.__name__.rpartition(".")[2]: module
                     for module in (cub, dtd, eurosat, fgvc_aircraft, flowers102, resisc45)}
assert set(BENCHMARK_SOURCES) == set(BENCHMARKS), "a benchmark source without its name in params.BENCHMARKS"


def load_dataset(params: DatasetParams) -> Dataset:
    """The images of the source `dataset.name` names, renamed by `dataset.class_names_file` if given."""
    if params.name == "demo":
        return benchmark.renamed(demo.demo_dataset(params.demo), params.class_names_file)
    if params.name == "folder":
        return folder.folder_dataset(params)
    if params.name in BENCHMARK_SOURCES:
        if params.download:
            benchmark.download(params.name, params.root)
        dataset = BENCHMARK_SOURCES[params.name].load(params)
        check_decodable(dataset.frame["path"].tolist())  # a truncated file is named here, not mid-training
        return benchmark.renamed(dataset, params.class_names_file)
    return benchmark.renamed(torchvision.torchvision_dataset(params), params.class_names_file)
