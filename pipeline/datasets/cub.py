"""CUB-200-2011 as CPL uses it: the official train/test split (5,994 / 5,794 images), class names
from classes.txt ("001.Black_footed_Albatross" -> "black footed albatross"). Layout:
`CUB_200_2011/{images/, images.txt, image_class_labels.txt, train_test_split.txt, classes.txt}`.
Each image's class id must name the class whose folder holds it, so a reordered classes.txt is
refused, never a silent relabelling."""

from __future__ import annotations

from pathlib import Path

from pipeline.config.params import DatasetParams
from pipeline.core.errors import PipelineError
from pipeline.datasets.benchmark import frame, locate, missing_files
from pipeline.datasets.source import Dataset

LAYOUT = ("  <root>/CUB_200_2011/images/001.Black_footed_Albatross/*.jpg ...\n"
          "  <root>/CUB_200_2011/{images,image_class_labels,train_test_split,classes}.txt")
REUNPACK = "re-unpack the CUB_200_2011 archive"


def _table(path: Path) -> dict[int, str]:
    """`<id> <value>` per line, by id."""
    if not path.is_file():
        raise PipelineError(f"cub: {path} is missing; unpack the complete CUB_200_2011 archive")
    rows: dict[int, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        key, _, value = line.strip().partition(" ")
        if not key:
            continue
        if not key.isdigit() or not value.strip():
            raise PipelineError(f"cub: {path}:{number} reads {line.strip()!r}, not '<id> <value>'; {REUNPACK}")
        if int(key) in rows:
            raise PipelineError(f"cub: {path}:{number} repeats id {key}; {REUNPACK}")
        rows[int(key)] = value.strip()
    return rows


def load(params: DatasetParams) -> Dataset:
    base = locate(params.root, ("CUB_200_2011",), "classes.txt", "cub", LAYOUT)
    classes = _table(base / "classes.txt")
    if sorted(classes) != list(range(1, len(classes) + 1)):
        gap = min(set(range(1, len(classes) + 1)) - set(classes))
        raise PipelineError(f"cub: {base / 'classes.txt'} numbers its {len(classes)} classes without class {gap}; "
                            f"ids must run 1..{len(classes)}, {REUNPACK}")
    tables = {name: _table(base / f"{name}.txt") for name in ("images", "image_class_labels", "train_test_split")}
    images, labels, training = tables.values()
    order = sorted(images)
    for name, table in tables.items():
        unlisted = [i for i in order if i not in table]
        if unlisted:
            raise PipelineError(f"cub: {base / f'{name}.txt'} has no line for image {unlisted[0]} of images.txt "
                                f"({len(unlisted)} such); {REUNPACK}")
    for i in order:
        label = labels[i]
        if not label.isdigit() or int(label) not in classes:
            raise PipelineError(f"cub: {base / 'image_class_labels.txt'} gives image {i} class {label!r}, but "
                                f"classes.txt names classes 1..{len(classes)}; {REUNPACK}")
        folder = images[i].split("/", 1)[0]
        if folder != classes[int(label)]:
            raise PipelineError(f"cub: image {i} is in folder {folder!r} (images.txt) but class {label} "
                                f"(image_class_labels.txt) is {classes[int(label)]!r} in {base / 'classes.txt'}; "
                                f"the files disagree, {REUNPACK}")
    paths = [str(Path(base, "images", images[i])) for i in order]
    splits = ["train" if training[i] == "1" else "test" for i in order]
    ids = [f"{s}/{images[i]}" for s, i in zip(splits, order)]
    missing_files(paths, "cub")
    names = [classes[k].split(".", 1)[-1].replace("_", " ").lower() for k in sorted(classes)]
    return Dataset(frame(paths, ids, splits, [int(labels[i]) - 1 for i in order]), names)
