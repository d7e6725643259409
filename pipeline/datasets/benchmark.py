"""What the named benchmarks (AiR's five and CPL's CUB) share: the papers' class names shipped with
the package, finding the on-disk layout under `dataset.root`, an error that says where the files go,
and `dataset.class_names_file` for any source.

Each benchmark reads its original archive layout (the one torchvision downloads into, too) directly,
so the unlabeled pool can be the papers' train+val split and no checksum of a metadata file stands
between a user's copy and the pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config.params import DatasetParams
from pipeline.core.errors import PipelineError
from pipeline.datasets.source import Dataset

CLASS_NAMES_DIR = Path(__file__).parent / "class_names"
SHOWN = 5


def shipped_class_names(name: str) -> list[str]:
    """The papers' class names of a benchmark, in label order (sources: class_names/README.md)."""
    return _lines(CLASS_NAMES_DIR / f"{name}.txt")


def shipped_folders(name: str, kind: str = "folders") -> list[str]:
    """Each class's on-disk key (its folder, or FGVC's variant string), in the order of
    `shipped_class_names(name)`."""
    return _lines(CLASS_NAMES_DIR / f"{name}_{kind}.txt")


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def locate(root: str, inner: tuple[str, ...], marker: str, dataset: str, layout: str) -> Path:
    """The folder holding `marker`: `root` itself or `root/<a run of inner...>`, shallowest first, so
    `root` may be above the archive's top folders (`inner`) or already inside any of them."""
    base = Path(root).expanduser()
    runs = dict.fromkeys(inner[start:start + length] for length in range(len(inner) + 1)
                         for start in range(len(inner) - length + 1))
    for run in runs:
        candidate = base.joinpath(*run)
        if (candidate / marker).exists():
            return candidate
    raise PipelineError(
        f"dataset.name={dataset!r}: no {marker} under dataset.root={root!r}. Expected the original layout:\n"
        f"{layout}\nPoint dataset.root at the folder that holds it"
        + (" (or set dataset.download: true once online)" if dataset in DOWNLOADABLE else "") + "."
    )


# Benchmarks torchvision can fetch into the very layout read here.
DOWNLOADABLE = {"flowers102": "Flowers102", "dtd": "DTD", "fgvc_aircraft": "FGVCAircraft", "eurosat": "EuroSAT"}


def download(dataset: str, root: str) -> None:
    """Let torchvision fetch the archive into `root` (when online)."""
    if dataset not in DOWNLOADABLE:
        raise PipelineError(f"dataset.name={dataset!r} cannot be downloaded here; put its files under dataset.root "
                            "as docs/protocols.md's 'The benchmarks' shows, and set dataset.download: false")
    import torchvision.datasets as tvd

    getattr(tvd, DOWNLOADABLE[dataset])(root, download=True)


def missing_files(paths: list[str], dataset: str) -> None:
    """Refuse a copy whose split lists name files that are not there."""
    absent = [p for p in paths if not Path(p).is_file()]
    if absent:
        raise PipelineError(
            f"dataset.name={dataset!r}: {len(absent)} image(s) named by the split lists are missing, e.g. "
            + ", ".join(absent[:SHOWN]) + ". Unpack the complete archive under dataset.root."
        )


def differences(found: list[str], expected: list[str]) -> str:
    """What sets `found` apart from `expected`, e.g. "unknown: ['zbanded']; missing: ['banded']"."""
    parts = (("unknown", sorted(set(found) - set(expected))), ("missing", sorted(set(expected) - set(found))),
             ("listed twice", sorted({f for f in found if found.count(f) > 1})))
    return "; ".join(f"{what}: {items[:SHOWN]}" for what, items in parts if items)


def frame(paths: list[str], ids: list[str], splits: list[str], labels: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"id": ids, "path": paths, "image": None, "split": splits,
                         "label": np.asarray(labels, dtype=np.int64)})


def random_split(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """'train' / 'test' per image, `test_fraction` of every class to test (for sources without an
    official split), reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    split = np.full(len(labels), "train", dtype=object)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        order = rng.permutation(members)
        split[order[:max(1, int(round(test_fraction * len(members))))]] = "test"
    return split


def renamed(dataset: Dataset, class_names_file: str | None, keys: list[str] | None = None) -> Dataset:
    """Apply `dataset.class_names_file`: a text file with one name per line in label order (GRIP's
    class_files format), or a JSON object from each class's key (its folder for folder-style sources,
    otherwise its default name) to the name to use."""
    folders = keys is not None
    keys = keys or dataset.class_names
    if class_names_file:
        names = _names_from_file(class_names_file, keys)
        source = class_names_file
    else:
        names = dataset.class_names
        source = "folder names (underscores and hyphens become spaces)" if folders else "the source's class names"
    _check_names(keys, names, "class folders" if folders else "classes", source)
    return Dataset(dataset.frame, names)


def _check_names(keys: list[str], names: list[str], what: str, source: str) -> None:
    """An empty name is no prompt, and two classes with one name are one class to CLIP (its tokenizer
    ignores case and spacing): both are refused for every source, whatever names it."""
    empty = [key for key, name in zip(keys, names) if not name.strip()]
    if empty:
        raise PipelineError(f"{what} {', '.join(repr(k) for k in empty[:SHOWN])} get an empty class name (names "
                            f"from {source}); rename them or give them names in dataset.class_names_file")
    by_name: dict[str, list[str]] = {}
    for key, name in zip(keys, names):
        by_name.setdefault(" ".join(name.lower().split()), []).append(key)
    clashes = [(name, group) for name, group in by_name.items() if len(group) > 1]
    if clashes:
        raise PipelineError(
            f"{what} share a class name: "
            + "; ".join(f"{' and '.join(repr(k) for k in group)} -> {name!r}" for name, group in clashes[:SHOWN])
            + f" (names from {source}, compared ignoring case and spacing). "
            + ("Merge or rename the folders, or give" if what == "class folders" else "Give")
            + " them distinct names in dataset.class_names_file"
        )


def _names_from_file(class_names_file: str, keys: list[str]) -> list[str]:
    path = Path(class_names_file).expanduser()
    if not path.is_file():
        raise PipelineError(f"dataset.class_names_file={class_names_file!r} does not exist; fix the path or "
                            "remove the key")
    if path.suffix.lower() == ".json":
        try:
            mapping = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise PipelineError(f"{path} is not JSON ({error}); it must map class keys to class names") from None
        if not isinstance(mapping, dict):
            raise PipelineError(f"{path} must be a JSON object mapping class keys to class names")
        missing = [k for k in keys if k not in mapping]
        extra = [k for k in mapping if k not in keys]
        if missing or extra:
            raise PipelineError(
                f"{path} does not match the classes: "
                + (f"no name for {missing[:SHOWN]}" if missing else "")
                + ("; " if missing and extra else "")
                + (f"names for keys that are no class {extra[:SHOWN]}" if extra else "")
                + f"; its keys must be exactly these {len(keys)}: {keys[:SHOWN]}..."
            )
        return [str(mapping[k]) for k in keys]
    names = _lines(path)
    if len(names) != len(keys):
        raise PipelineError(f"{path} has {len(names)} non-empty lines but the dataset has {len(keys)} classes; "
                            "give one class name per line, in label order")
    return names


def class_folder_dataset(base: Path, folders: list[str], names: list[str], params: DatasetParams,
                         default_test_fraction: float, dataset: str) -> Dataset:
    """One folder per class, split at random per class (EuroSAT, RESISC45)."""
    paths, labels = [], []
    for label, folder in enumerate(folders):
        files = sorted(p for p in (base / folder).glob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".tif"})
        if not files:
            raise PipelineError(f"{dataset}: class folder {base / folder} is missing or empty; "
                                f"every one of the {len(folders)} class folders must hold its images")
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    fraction = params.test_fraction if params.test_fraction is not None else default_test_fraction
    splits = random_split(np.asarray(labels), fraction, params.split_seed)
    ids = [f"{split}/{Path(p).parent.name}/{Path(p).name}" for p, split in zip(paths, splits)]
    return Dataset(frame(paths, ids, list(splits), labels), names)
