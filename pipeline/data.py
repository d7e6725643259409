"""Datasets and paradigms: resolve a source into a manifest of train/test images and a class list.

Sources: `folder` (root/<class>/* or root/{train,test}/<class>/*), torchvision datasets (paths read
from the dataset object, or PNG bytes when it keeps images in memory) and `demo`, the procedural
world of `pipeline.demo.world`, rendered in memory for tests and the default run. The paradigm
(UL, SSL, TRZSL) then decides which training labels the methods may use.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pipeline.errors import PipelineError
from pipeline.demo import world as demo_world
from pipeline.params import DatasetParams, ParadigmParams, WorldParams
from pipeline.plots import class_grid

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
MANIFEST_COLUMNS = ["id", "path", "image", "split", "label", "labeled", "seen"]


@dataclass(frozen=True)
class Dataset:
    """Images of both splits before a paradigm is applied: `frame` has id, path, image, split, label."""

    frame: pd.DataFrame
    class_names: list[str]


def pretty_class_name(raw: str) -> str:
    """Folder and torchvision names become prompt-ready words: 'annual_crop' -> 'annual crop'."""
    return raw.replace("_", " ").replace("-", " ").strip()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def open_image(path: str | None, data: bytes | None) -> Image.Image:
    """Open a manifest row's image as RGB, from its path or its bytes."""
    source = io.BytesIO(data) if data is not None else path
    with Image.open(source) as image:
        return image.convert("RGB")


# --- demo: the procedural world --------------------------------------------------------------------

def demo_dataset(world: WorldParams) -> Dataset:
    """Render both splits in memory as PNG bytes: no image files are written."""
    rows = []
    for split, count in (("train", world.images_per_class), ("test", world.test_images_per_class)):
        for label in range(len(demo_world.class_names())):
            for index in range(count):
                image = demo_world.render(label, demo_world.image_rng(world.seed, label, index, split), world)
                rows.append({"id": f"{split}-{label:03d}-{index:05d}", "path": None,
                             "image": png_bytes(image), "split": split, "label": label})
    return Dataset(pd.DataFrame(rows), demo_world.class_names())


# --- folder ----------------------------------------------------------------------------------------

def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_class_map(path: str, folders: list[str]) -> list[str]:
    file = Path(path)
    if not file.exists():
        raise PipelineError(f"dataset.class_names_file={path!r} does not exist; fix the path or remove the key")
    try:
        mapping = json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise PipelineError(f"{path} is not JSON ({error}); it must map folder names to class names") from None
    if not isinstance(mapping, dict):
        raise PipelineError(f"{path} must be a JSON object mapping folder names to class names")
    missing = [f for f in folders if f not in mapping]
    extra = [k for k in mapping if k not in folders]
    if missing or extra:
        raise PipelineError(
            f"{path} does not match the class folders: "
            + (f"no name for folders {missing[:5]}" if missing else "")
            + ("; " if missing and extra else "")
            + (f"names for folders that do not exist {extra[:5]}" if extra else "")
            + "; make its keys exactly the class folder names"
        )
    return [str(mapping[f]) for f in folders]


def folder_dataset(params: DatasetParams) -> Dataset:
    root = Path(params.root)
    if not root.is_dir():
        raise PipelineError(f"dataset.root={params.root!r} is not a folder; point it at root/<class>/*.jpg")
    split_roots = {"train": root / "train", "test": root / "test"}
    presplit = all(p.is_dir() for p in split_roots.values())
    if presplit:
        folders = {split: _class_folders(path) for split, path in split_roots.items()}
        if folders["train"] != folders["test"]:
            only_train = sorted(set(folders["train"]) - set(folders["test"]))
            only_test = sorted(set(folders["test"]) - set(folders["train"]))
            raise PipelineError(
                f"class folders differ between {split_roots['train']} and {split_roots['test']}: "
                f"only in train {only_train[:5]}, only in test {only_test[:5]}; "
                "give both splits the same class folders"
            )
        class_folders = folders["train"]
    else:
        class_folders = _class_folders(root)
    if not class_folders:
        raise PipelineError(f"{root} has no class folders; expected root/<class>/*.jpg or root/train|test/<class>/")

    rows = []
    rng = np.random.default_rng(params.split_seed)
    for label, folder in enumerate(class_folders):
        per_split = {s: _image_files(p / folder) for s, p in split_roots.items()} if presplit else None
        if per_split is None:
            files = _image_files(root / folder)
            if len(files) < 2:
                raise PipelineError(f"class folder {root / folder} holds {len(files)} image(s); each class needs at least 2")
            order = rng.permutation(len(files))
            n_test = max(1, int(round(params.test_fraction * len(files))))
            test_set = set(order[:n_test].tolist())
            per_split = {"train": [f for i, f in enumerate(files) if i not in test_set],
                         "test": [f for i, f in enumerate(files) if i in test_set]}
        for split, files in per_split.items():
            if not files:
                raise PipelineError(f"class folder {folder!r} has no {split} images under {root}")
            rows += [{"id": f"{split}/{folder}/{f.name}", "path": str(f.resolve()), "image": None,
                      "split": split, "label": label} for f in files]

    frame = pd.DataFrame(rows)
    _check_readable(frame)
    names = (_read_class_map(params.class_names_file, class_folders) if params.class_names_file
             else [pretty_class_name(f) for f in class_folders])
    return Dataset(frame, names)


def _check_readable(frame: pd.DataFrame) -> None:
    bad = []
    for path in frame["path"]:
        try:
            with Image.open(path) as image:
                image.verify()
        except Exception as error:  # PIL raises many kinds; all mean the same to the user
            bad.append(f"{path} ({type(error).__name__})")
    if bad:
        raise PipelineError(
            f"{len(bad)} image(s) cannot be read: " + "; ".join(bad[:5])
            + ("; ..." if len(bad) > 5 else "") + ". Remove or replace them, then run again."
        )


# --- torchvision -----------------------------------------------------------------------------------

# name -> (torchvision class, constructor kwargs for train, for test); None: no official split.
_TORCHVISION = {
    "flowers102": ("Flowers102", {"split": "train"}, {"split": "test"}),
    "dtd": ("DTD", {"split": "train"}, {"split": "test"}),
    "eurosat": ("EuroSAT", None, None),
    "fgvc_aircraft": ("FGVCAircraft", {"split": "trainval"}, {"split": "test"}),
    "food101": ("Food101", {"split": "train"}, {"split": "test"}),
    "oxford_pets": ("OxfordIIITPet", {"split": "trainval"}, {"split": "test"}),
    "caltech101": ("Caltech101", None, None),
    "sun397": ("SUN397", None, None),
    "stanford_cars": ("StanfordCars", {"split": "train"}, {"split": "test"}),
    "cifar10": ("CIFAR10", {"train": True}, {"train": False}),
    "cifar100": ("CIFAR100", {"train": True}, {"train": False}),
    "mnist": ("MNIST", {"train": True}, {"train": False}),
}


def _torchvision_items(dataset) -> tuple[list[str | None], list[bytes | None], list[int]]:
    """Paths when the dataset keeps files on disk (cheap), otherwise PNG bytes of every image."""
    if hasattr(dataset, "samples"):  # ImageFolder-style (EuroSAT)
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
        n_test = int(round(params.test_fraction * len(labels)))
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


def load_dataset(params: DatasetParams) -> Dataset:
    if params.name == "demo":
        return demo_dataset(params.demo)
    if params.name == "folder":
        return folder_dataset(params)
    return torchvision_dataset(params)


# --- paradigms -------------------------------------------------------------------------------------

def seen_classes(n_classes: int, options: ParadigmParams) -> np.ndarray:
    """TRZSL's seen classes: `rng(split_seed).choice(C, int(0.62 C))`, sorted."""
    rng = np.random.default_rng(options.split_seed)
    return np.sort(rng.choice(n_classes, int(options.seen_fraction * n_classes), replace=False))


def apply_paradigm(dataset: Dataset, paradigm: str, options: ParadigmParams, seed: int) -> pd.DataFrame:
    """Add `labeled` and `seen`: which training labels the methods may use, and which classes are seen."""
    frame = dataset.frame.copy()
    n_classes = len(dataset.class_names)
    train = (frame["split"] == "train").to_numpy()
    frame["labeled"] = False
    frame["seen"] = True
    if paradigm == "ssl":
        rng = np.random.default_rng(seed)
        labels = frame["label"].to_numpy()
        chosen = []
        for label in range(n_classes):
            candidates = np.flatnonzero(train & (labels == label))
            if len(candidates) <= options.n_label:
                raise PipelineError(
                    f"SSL needs more than paradigm_options.n_label={options.n_label} training images per class; "
                    f"class {dataset.class_names[label]!r} has {len(candidates)}. Lower n_label."
                )
            chosen += rng.choice(candidates, options.n_label, replace=False).tolist()
        frame.loc[frame.index[chosen], "labeled"] = True
    elif paradigm == "trzsl":
        seen = seen_classes(n_classes, options)
        if len(seen) in (0, n_classes):
            raise PipelineError(
                f"TRZSL with {n_classes} classes and seen_fraction={options.seen_fraction} leaves "
                "no seen or no unseen class; change paradigm_options.seen_fraction"
            )
        frame["seen"] = frame["label"].isin(seen)
        frame["labeled"] = train & frame["seen"].to_numpy()
    return frame[MANIFEST_COLUMNS]


def prepare(dataset_params: DatasetParams, paradigm: str, options: ParadigmParams, seed: int
            ) -> tuple[pd.DataFrame, list[str]]:
    dataset = load_dataset(dataset_params)
    manifest = apply_paradigm(dataset, paradigm, options, seed)
    counts = manifest.groupby("split").size().to_dict()
    log.info("%s: %d classes, %s images, %d labeled for training (%s)", dataset_params.name,
             len(dataset.class_names), counts, int(manifest["labeled"].sum()), paradigm.upper())
    return manifest, dataset.class_names


def class_sheet(manifest: pd.DataFrame, class_names: list[str], png_path, max_classes: int, per_class: int) -> None:
    """A PNG grid of the first training images of each class, to see the domain being adapted to."""
    train = manifest[manifest["split"] == "train"]
    rows = []
    for label, name in list(enumerate(class_names))[:max_classes]:
        members = train[train["label"] == label].head(per_class)
        rows.append((name, [open_image(path, data) for path, data in zip(members["path"], members["image"])]))
    class_grid(rows, png_path, "no training images")


def unlabeled_mask(manifest: pd.DataFrame) -> np.ndarray:
    """Training images whose labels the methods may not use: the pool pseudo-labels are drawn from."""
    return ((manifest["split"] == "train") & ~manifest["labeled"]).to_numpy()


def pseudo_label_classes(manifest: pd.DataFrame, n_classes: int, paradigm: str) -> np.ndarray:
    """Classes pseudo-labels may take: all, or in TRZSL only the unseen ones."""
    if paradigm != "trzsl":
        return np.arange(n_classes)
    seen = set(manifest.loc[manifest["seen"], "label"].unique().tolist())
    return np.array([c for c in range(n_classes) if c not in seen])
