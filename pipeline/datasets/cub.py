"""CUB-200-2011 as CPL uses it: the official train/test split (5,994 / 5,794 images), class names
from classes.txt ("001.Black_footed_Albatross" -> "black footed albatross"). Layout:
`CUB_200_2011/{images/, images.txt, image_class_labels.txt, train_test_split.txt, classes.txt}`."""

from __future__ import annotations

from pathlib import Path

from pipeline.datasets import Dataset
from pipeline.datasets.benchmark import frame, locate, missing_files
from pipeline.errors import PipelineError
from pipeline.params import DatasetParams

LAYOUT = ("  <root>/CUB_200_2011/images/001.Black_footed_Albatross/*.jpg ...\n"
          "  <root>/CUB_200_2011/{images,image_class_labels,train_test_split,classes}.txt")


def _table(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise PipelineError(f"cub: {path} is missing; unpack the complete CUB_200_2011 archive")
    return dict(line.split(" ", 1) for line in path.read_text().splitlines() if line.strip())


def load(params: DatasetParams) -> Dataset:
    base = locate(params.root, ("CUB_200_2011",), "classes.txt", "cub", LAYOUT)
    classes = _table(base / "classes.txt")
    images, labels, training = (_table(base / f"{name}.txt")
                                for name in ("images", "image_class_labels", "train_test_split"))
    order = sorted(images, key=int)
    paths = [str(Path(base, "images", images[i])) for i in order]
    splits = ["train" if training[i].strip() == "1" else "test" for i in order]
    ids = [f"{s}/{images[i]}" for s, i in zip(splits, order)]
    missing_files(paths, "cub")
    names = [classes[k].split(".", 1)[-1].replace("_", " ").lower() for k in sorted(classes, key=int)]
    return Dataset(frame(paths, ids, splits, [int(labels[i]) - 1 for i in order]), names)
