"""Oxford Flowers-102 as the papers use it: pool = train + val (2,040 images), test = the official
test split (6,149), GRIP's class names. Layout (the archive, or torchvision's download):
`flowers-102/{jpg/image_00001.jpg, imagelabels.mat, setid.mat}`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.config.params import DatasetParams
from pipeline.core.errors import PipelineError
from pipeline.datasets.benchmark import SHOWN, frame, locate, missing_files, shipped_class_names
from pipeline.datasets.source import Dataset

LAYOUT = "  <root>/flowers-102/jpg/image_00001.jpg ...\n  <root>/flowers-102/imagelabels.mat\n  <root>/flowers-102/setid.mat"


def _read(path: Path, *keys: str) -> list[np.ndarray]:
    """The integer vectors `keys` of the MATLAB file `path`, or an error naming the file."""
    from scipy.io import loadmat

    if not path.is_file():
        raise PipelineError(f"flowers102: {path} is missing; unpack the complete archive (imagelabels.mat and "
                            "setid.mat next to jpg/)")
    try:
        contents = loadmat(path)
        return [contents[key].ravel().astype(int) for key in keys]
    except Exception as error:  # scipy fails in many ways on a non-MATLAB file (IndexError, v7.3's NotImplementedError)
        raise PipelineError(f"flowers102: cannot read {'/'.join(keys)} from {path} ({type(error).__name__}: "
                            f"{error}); re-unpack the archive") from None


def load(params: DatasetParams) -> Dataset:
    base = locate(params.root, ("flowers-102",), "setid.mat", "flowers102", LAYOUT)
    names = shipped_class_names("flowers102")
    labels = _read(base / "imagelabels.mat", "labels")[0] - 1   # 1-based in the file
    wrong = np.flatnonzero((labels < 0) | (labels >= len(names)))
    if len(wrong):
        raise PipelineError(f"flowers102: {base / 'imagelabels.mat'} gives labels outside 1..{len(names)}: "
                            + ", ".join(f"image {i + 1} label {labels[i] + 1}" for i in wrong[:SHOWN])
                            + f" ({len(wrong)} in all); re-unpack the archive")
    paths, ids, splits, targets = [], [], [], []
    parts = (("trnid", "train"), ("valid", "train"), ("tstid", "test"))
    for (key, split), image_ids in zip(parts, _read(base / "setid.mat", *(key for key, _ in parts))):
        for image_id in image_ids:
            if not 1 <= image_id <= len(labels):
                raise PipelineError(f"flowers102: {base / 'setid.mat'} {key} names image {image_id}, but "
                                    f"imagelabels.mat labels images 1..{len(labels)}; re-unpack the archive")
            name = f"image_{image_id:05d}.jpg"
            paths.append(str(Path(base, "jpg", name)))
            ids.append(f"{split}/{name}")
            splits.append(split)
            targets.append(int(labels[image_id - 1]))
    missing_files(paths, "flowers102")
    return Dataset(frame(paths, ids, splits, targets), names)
