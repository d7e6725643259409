"""Describable Textures (DTD) as the papers use it: partition 1, pool = train1 + val1 (3,760
images), test = test1 (1,880), 47 classes. Layout: `dtd/{images/<class>/*.jpg, labels/train1.txt,
val1.txt, test1.txt}` (torchvision downloads it to `<root>/dtd/dtd`)."""

from __future__ import annotations

from pathlib import Path

from pipeline.config.params import DatasetParams
from pipeline.core.errors import PipelineError
from pipeline.datasets.benchmark import differences, frame, locate, missing_files, shipped_class_names
from pipeline.datasets.source import Dataset

LAYOUT = "  <root>/dtd/images/banded/banded_0002.jpg ...\n  <root>/dtd/labels/{train1,val1,test1}.txt"
PARTITION = 1


def load(params: DatasetParams) -> Dataset:
    """Labels follow the class folders' names (DTD's names are its folders), never their position on disk."""
    base = locate(params.root, ("dtd", "dtd"), "labels", "dtd", LAYOUT)
    names = shipped_class_names("dtd")
    images = base / "images"
    folders = [p.name for p in images.iterdir() if p.is_dir()] if images.is_dir() else []
    if set(folders) != set(names):
        raise PipelineError(f"dtd: {images} does not hold DTD's {len(names)} class folders "
                            f"({differences(folders, names)}); restore the archive's folder names")
    label_of = {name: label for label, name in enumerate(names)}
    paths, ids, splits, labels = [], [], [], []
    for part, split in (("train", "train"), ("val", "train"), ("test", "test")):
        listing = base / "labels" / f"{part}{PARTITION}.txt"
        if not listing.is_file():
            raise PipelineError(f"dtd: {listing} is missing; unpack the complete archive (labels/{part}{PARTITION}.txt)")
        for line in listing.read_text().split():
            folder = line.split("/")[0]
            if folder not in label_of:
                raise PipelineError(f"dtd: {listing} names {line}, but {images / folder} is not a DTD class folder")
            paths.append(str(Path(base, "images", line)))
            ids.append(f"{split}/{line}")
            splits.append(split)
            labels.append(label_of[folder])
    missing_files(paths, "dtd")
    return Dataset(frame(paths, ids, splits, labels), names)
