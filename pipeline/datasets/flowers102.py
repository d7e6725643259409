"""Oxford Flowers-102 as the papers use it: pool = train + val (2,040 images), test = the official
test split (6,149), GRIP's class names. Layout (the archive, or torchvision's download):
`flowers-102/{jpg/image_00001.jpg, imagelabels.mat, setid.mat}`."""

from __future__ import annotations

from pathlib import Path

from pipeline.datasets import Dataset
from pipeline.datasets.benchmark import frame, locate, missing_files, shipped_class_names
from pipeline.errors import PipelineError
from pipeline.params import DatasetParams

LAYOUT = "  <root>/flowers-102/jpg/image_00001.jpg ...\n  <root>/flowers-102/imagelabels.mat\n  <root>/flowers-102/setid.mat"


def load(params: DatasetParams) -> Dataset:
    base = locate(params.root, ("flowers-102",), "setid.mat", "flowers102", LAYOUT)
    from scipy.io import loadmat

    try:
        labels = loadmat(base / "imagelabels.mat")["labels"].ravel().astype(int) - 1   # 1-based in the file
        sets = loadmat(base / "setid.mat")
    except (OSError, ValueError, KeyError) as error:
        raise PipelineError(f"{base}: cannot read imagelabels.mat / setid.mat ({error}); re-unpack the archive") from None
    paths, ids, splits, targets = [], [], [], []
    for key, split in (("trnid", "train"), ("valid", "train"), ("tstid", "test")):
        for image_id in sets[key].ravel().astype(int):
            name = f"image_{image_id:05d}.jpg"
            paths.append(str(Path(base, "jpg", name)))
            ids.append(f"{split}/{name}")
            splits.append(split)
            targets.append(int(labels[image_id - 1]))
    missing_files(paths, "flowers102")
    return Dataset(frame(paths, ids, splits, targets), shipped_class_names("flowers102"))
