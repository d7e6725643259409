"""torchvision sources: paths read from the dataset object, or PNG bytes when it keeps images in memory.

Imports are absolute, so this module does not shadow the real `torchvision` package.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Iterator
from urllib.error import URLError

import numpy as np
import pandas as pd

from pipeline.config.params import DatasetParams
from pipeline.core.errors import PipelineError
from pipeline.datasets.images import png_bytes
from pipeline.datasets.source import Dataset, pretty_class_name

# name -> (torchvision class, constructor kwargs for train, for test); None: no official split.
_TORCHVISION = {
    "food101": ("Food101", {"split": "train"}, {"split": "test"}),
    "oxford_pets": ("OxfordIIITPet", {"split": "trainval"}, {"split": "test"}),
    "caltech101": ("Caltech101", None, None),
    "sun397": ("SUN397", None, None),
    "stanford_cars": ("StanfordCars", {"split": "train"}, {"split": "test"}),
    "cifar10": ("CIFAR10", {"train": True}, {"train": False}),
    "cifar100": ("CIFAR100", {"train": True}, {"train": False}),
    "mnist": ("MNIST", {"train": True}, {"train": False}),
}


@contextlib.contextmanager
def cleaned_up_download(params: DatasetParams) -> Iterator[None]:
    """Run a `dataset.download: true` load; without a network, a one-line error instead of a URLError
    traceback, and the folders the attempt made (torchvision makes them before it fetches) are removed:
    only those, so a copy already under dataset.root is never touched."""
    root = Path(params.root).expanduser()
    top = None if root.exists() else root  # the highest folder of dataset.root the attempt would create
    while top is not None and not top.parent.exists():
        top = top.parent
    before = set(root.iterdir()) if root.is_dir() else set()
    try:
        yield
    except (URLError, ConnectionError, TimeoutError) as error:
        if top is not None:
            created = [top]
        else:
            created = sorted(set(root.iterdir()) - before) if root.is_dir() else []
        for path in created:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        reason = getattr(error, "reason", None) or error
        raise PipelineError(f"dataset.download: cannot download {params.name} ({reason}); no network? Download it "
                            f"yourself to {root} and set dataset.download: false") from None


def _torchvision_items(dataset) -> tuple[list[str | None], list[bytes | None], list[int]]:
    """Paths when the dataset keeps files on disk (cheap), otherwise PNG bytes of every image."""
    if hasattr(dataset, "samples"):  # ImageFolder-style
        return [str(p) for p, _ in dataset.samples], [None] * len(dataset), [int(y) for _, y in dataset.samples]
    files = getattr(dataset, "_image_files", None) or getattr(dataset, "_images", None)
    labels = getattr(dataset, "_labels", None)
    if files is not None and labels is not None and len(files) == len(labels) and isinstance(files[0], (str, Path)):
        return [str(p) for p in files], [None] * len(files), [int(y) for y in labels]
    paths, images, targets = [], [], []
    for image, target in dataset:
        paths.append(None)
        images.append(png_bytes(image.convert("RGB")))
        targets.append(int(target))
    return paths, images, targets


def torchvision_dataset(params: DatasetParams) -> Dataset:
    import torchvision.datasets as tvd

    class_name, train_kwargs, test_kwargs = _TORCHVISION[params.name]
    constructor = getattr(tvd, class_name)

    def build(kwargs: dict) -> object:
        try:
            return constructor(params.root, download=params.download, **kwargs)
        except (RuntimeError, FileNotFoundError) as error:
            raise PipelineError(
                f"torchvision {class_name} not found under dataset.root={params.root!r} ({error}). "
                "Point dataset.root at an existing copy, or set dataset.download: true once online."
            ) from None

    splits = {"train": build(train_kwargs), "test": build(test_kwargs)} if train_kwargs is not None else None
    if splits is None:
        whole = build({})
        paths, images, labels = _torchvision_items(whole)
        order = np.random.default_rng(params.split_seed).permutation(len(labels))
        n_test = int(round((params.test_fraction or 0.5) * len(labels)))
        split_of = np.empty(len(labels), dtype=object)
        split_of[order[:n_test]] = "test"
        split_of[order[n_test:]] = "train"
        frame = pd.DataFrame({"path": paths, "image": images, "split": split_of, "label": labels})
        raw_names = getattr(whole, "classes", None) or getattr(whole, "categories")
    else:
        parts = []
        for split, dataset in splits.items():
            paths, images, labels = _torchvision_items(dataset)
            parts.append(pd.DataFrame({"path": paths, "image": images, "split": split, "label": labels}))
        frame = pd.concat(parts, ignore_index=True)
        raw_names = splits["train"].classes
    frame.insert(0, "id", [f"{s}-{i:07d}" for i, s in enumerate(frame["split"])])
    return Dataset(frame, [pretty_class_name(str(n)) for n in raw_names])
