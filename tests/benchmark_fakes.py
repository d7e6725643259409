"""Tiny fake copies of the papers' benchmark archives, laid out as the originals unpack (no downloads),
shared by the reader tests and the reader fault tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.datasets.benchmark import shipped_class_names, shipped_folders

CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]


def jpg(path: Path, value: int = 100) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (value, 50, 50)).save(path)
    return str(path)


def fake_flowers(root: Path) -> Path:
    """306 images, image i labelled i mod 102 (1-based in the file); 102 train, 102 val, 102 test."""
    from scipy.io import savemat

    base = root / "flowers-102"
    labels = np.array([(i - 1) % 102 + 1 for i in range(1, 307)])
    for i in range(1, 307):
        jpg(base / "jpg" / f"image_{i:05d}.jpg")
    savemat(base / "imagelabels.mat", {"labels": labels[None]})
    savemat(base / "setid.mat", {"trnid": np.arange(1, 103)[None], "valid": np.arange(103, 205)[None],
                                 "tstid": np.arange(205, 307)[None]})
    return base


def fake_dtd(root: Path) -> Path:
    """One train, val and test image per class in partition 1, and a fourth image no list names."""
    folders = shipped_class_names("dtd")
    base = root / "dtd" / "dtd"
    (base / "labels").mkdir(parents=True)
    for part, index in (("train", 1), ("val", 2), ("test", 3), ("train", 4)):
        lines = [f"{c}/{c}_{index:04d}.jpg" for c in folders]
        for line in lines:
            jpg(base / "images" / line)
        if index < 4:
            (base / "labels" / f"{part}1.txt").write_text("\n".join(lines) + "\n")
    return base


def fake_fgvc(root: Path) -> Path:
    """One trainval and one test image per variant; variants.txt in ASCII order, as the archive has it."""
    variants = sorted(shipped_folders("fgvc_aircraft", "variants"))
    base = root / "fgvc-aircraft-2013b" / "data"
    base.mkdir(parents=True)
    (base / "variants.txt").write_text("\n".join(variants) + "\n")
    for part, offset in (("trainval", 1000000), ("test", 2000000)):
        lines = [f"{offset + i} {v}" for i, v in enumerate(variants)]
        for line in lines:
            jpg(base / "images" / f"{line.split()[0]}.jpg")
        (base / f"images_variant_{part}.txt").write_text("\n".join(lines) + "\n")
    return base


def fake_cub(root: Path) -> Path:
    """Nine birds of three albatross classes (bird n in class (n - 1) mod 3), the first six for training."""
    base = root / "CUB_200_2011"
    images, labels, split = [], [], []
    for number in range(1, 10):
        folder = CUB_CLASSES[(number - 1) % 3]
        jpg(base / "images" / folder / f"bird_{number}.jpg")
        images.append(f"{number} {folder}/bird_{number}.jpg")
        labels.append(f"{number} {(number - 1) % 3 + 1}")
        split.append(f"{number} {int(number <= 6)}")
    for file, lines in (("classes", [f"{i + 1} {c}" for i, c in enumerate(CUB_CLASSES)]), ("images", images),
                        ("image_class_labels", labels), ("train_test_split", split)):
        (base / f"{file}.txt").write_text("\n".join(lines) + "\n")
    return base


def fake_class_folders(root: Path, name: str, inner: tuple[str, ...], per_class: int) -> Path:
    """EuroSAT / RESISC45: `per_class` images in each of the benchmark's class folders under root/inner."""
    base = root.joinpath(*inner)
    for folder in shipped_folders(name):
        for i in range(per_class):
            jpg(base / folder / f"{folder}_{i + 1}.jpg", 10 * i)
    return base
