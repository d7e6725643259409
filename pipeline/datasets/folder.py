"""The folder source: your own images, one folder per class.

Recognised layouts of `dataset.root` (split folder names are matched ignoring case; `training`,
`valid`/`validation` and `testing` count as train, val and test):

- `<class>/...`: no split folders; each class is split by `dataset.test_fraction` (`split_seed`);
- `train/<class>/...` + `test/<class>/...`: the given splits;
- `train/` + `val/`: the ImageFolder layout; val is the test split;
- `train/` + `val/` + `test/`: train and test as given; val is ignored (logged): no method here tunes
  on a validation split, and results are reported on test, as in the papers.

Any other mix of split-looking and other top-level folders is an error, never a silent 2-class task
"train" vs "val". Images may sit in nested subfolders of a class, symlinked ones included (a link
back to a folder above is an error naming it); ids are the split plus the path under the split root,
so repeated file names stay distinct. Hidden files and folders are ignored;
other files that are not images of a supported type are skipped with one log line. Every image is
decoded in full before the manifest is built, so a truncated file is named here, not mid-training.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config.params import DatasetParams
from pipeline.core.errors import PipelineError
from pipeline.datasets.benchmark import renamed
from pipeline.datasets.images import check_decodable
from pipeline.datasets.source import Dataset, pretty_class_name

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
SPLIT_ROLES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "test": "test", "testing": "test"}
RECOGNISED_LAYOUTS = "<class>/, train/ + test/, train/ + val/, or train/ + val/ + test/"
SHOWN = 5  # culprits named in one message


def folder_dataset(params: DatasetParams) -> Dataset:
    root = Path(params.root)
    if not root.is_dir():
        raise PipelineError(f"dataset.root={params.root!r} is not a folder; point it at root/<class>/*.jpg")
    split_roots = _split_roots(root)
    class_folders = _class_folders(root, split_roots)
    names = renamed(Dataset(pd.DataFrame(), [pretty_class_name(f) for f in class_folders]),
                    params.class_names_file, keys=class_folders).class_names

    skipped: list[Path] = []
    if split_roots:
        frame = _presplit_rows(split_roots, class_folders, skipped)
    else:
        frame = _random_split_rows(root, class_folders, params, skipped)
    if skipped:
        log.info("skipped %d file(s) under %s that are not %s images: %s", len(skipped), root,
                 "/".join(sorted(IMAGE_SUFFIXES)), _listing([p.relative_to(root).as_posix() for p in skipped]))
    _check_unique_ids(frame)
    check_decodable(frame["path"].tolist())
    return Dataset(frame, names)


def _split_roots(root: Path) -> dict[str, Path]:
    """{'train': ..., 'test': ...} for a recognised split layout, {} for plain class folders."""
    folders = _subfolders(root)
    roles: dict[str, list[str]] = {}
    for folder in folders:
        if folder.lower() in SPLIT_ROLES:
            roles.setdefault(SPLIT_ROLES[folder.lower()], []).append(folder)
    if not roles:
        return {}
    others = [f for f in folders if f.lower() not in SPLIT_ROLES]
    if others or "train" not in roles or len(roles) == 1 or any(len(names) > 1 for names in roles.values()):
        raise PipelineError(
            f"{root} has split folders, but its top-level folders {folders[:20]} are not a recognised layout "
            f"({RECOGNISED_LAYOUTS}); rename or move folders so the top level is one of these"
        )
    folder_of = {role: root / names[0] for role, names in roles.items()}
    if "val" in folder_of and "test" in folder_of:
        log.info("%s: using %s for training and %s for testing; %s is ignored (no method uses a validation split)",
                 root, folder_of["train"].name, folder_of["test"].name, folder_of["val"].name)
    elif "val" in folder_of:
        log.info("%s: no test folder, so %s is the test split", root, folder_of["val"].name)
    return {"train": folder_of["train"], "test": folder_of.get("test", folder_of.get("val"))}


def _subfolders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_folders(root: Path, split_roots: dict[str, Path]) -> list[str]:
    if not split_roots:
        folders = _subfolders(root)
    else:
        train, test = (_subfolders(split_roots[s]) for s in ("train", "test"))
        if train != test:
            raise PipelineError(
                f"class folders differ between {split_roots['train']} and {split_roots['test']}: "
                f"only in train {sorted(set(train) - set(test))[:SHOWN]}, "
                f"only in test {sorted(set(test) - set(train))[:SHOWN]}; give both splits the same class folders"
            )
        folders = train
    if not folders:
        raise PipelineError(f"{root} has no class folders; expected {RECOGNISED_LAYOUTS} with <class>/*.jpg inside")
    return folders


def _files(folder: Path, skipped: list[Path]) -> list[Path]:
    """Images under `folder`, nested ones included, sorted; other visible files go to `skipped`.
    Symlinked folders are followed, as `check` counts them; each pending folder carries the (device,
    inode) of the folders above it, so a link back up is named instead of walked until ELOOP."""
    images, others = [], []
    pending = [(folder, tuple(_folder_id(above) for above in (folder, *folder.absolute().parents)))]
    while pending:
        current, above = pending.pop()
        try:
            with os.scandir(current) as listing:
                entries = [entry for entry in listing if not entry.name.startswith(".")]
        except PermissionError:
            raise PipelineError(f"cannot read the dataset folder {current}: permission denied; make it readable "
                                f"(chmod -R u+rX {current}) or point dataset.root elsewhere") from None
        for entry in entries:
            path = current / entry.name
            if _is_folder(entry):
                here = _folder_id(path)
                if here in above:
                    raise _loop(path, f"links back to {os.path.realpath(path)}, a folder above it")
                pending.append((path, above + (here,)))
            elif entry.is_file():
                (images if path.suffix.lower() in IMAGE_SUFFIXES else others).append(path)
    skipped += sorted(others)
    return sorted(images)


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError as error:
        if error.errno == errno.ELOOP:  # a link to itself, or a chain of links that never ends
            raise _loop(Path(entry.path), "is a symbolic link that never resolves") from None
        raise


def _folder_id(folder: Path) -> tuple[int, int]:
    stat = folder.stat()
    return stat.st_dev, stat.st_ino


def _loop(path: Path, what: str) -> PipelineError:
    return PipelineError(f"dataset.root: {path} {what}, so the folder never ends; remove the link "
                         "or point it outside the dataset")


def _rows(files: list[Path], split: str, split_root: Path, label: int) -> list[dict]:
    """Paths are absolute but keep their symlinks, so each is still under `dataset.root` as the user
    sees it (candidate files name images by that path)."""
    return [{"id": f"{split}/{f.relative_to(split_root).as_posix()}", "path": os.path.abspath(f), "image": None,
             "split": split, "label": label} for f in files]


def _presplit_rows(split_roots: dict[str, Path], class_folders: list[str], skipped: list[Path]) -> pd.DataFrame:
    rows = []
    for label, folder in enumerate(class_folders):
        for split, split_root in split_roots.items():
            files = _files(split_root / folder, skipped)
            if not files:
                raise PipelineError(f"class folder {split_root / folder} holds no images; every class needs "
                                    f"{split} images (or remove the folder from every split)")
            rows += _rows(files, split, split_root, label)
    return pd.DataFrame(rows)


def _random_split_rows(root: Path, class_folders: list[str], params: DatasetParams,
                       skipped: list[Path]) -> pd.DataFrame:
    rows = []
    rng = np.random.default_rng(params.split_seed)
    fraction = 0.5 if params.test_fraction is None else params.test_fraction
    for label, folder in enumerate(class_folders):
        files = _files(root / folder, skipped)
        if len(files) < 2:
            raise PipelineError(f"class folder {root / folder} holds {len(files)} image(s); each class needs at least 2")
        order = rng.permutation(len(files))
        is_test = np.zeros(len(files), dtype=bool)
        is_test[order[:max(1, int(round(fraction * len(files))))]] = True
        rows += _rows([f for f, test in zip(files, is_test) if not test], "train", root, label)
        rows += _rows([f for f, test in zip(files, is_test) if test], "test", root, label)
    return pd.DataFrame(rows)


def _check_unique_ids(frame: pd.DataFrame) -> None:
    repeated = frame.loc[frame["id"].duplicated(), "id"].tolist()
    if repeated:
        raise PipelineError(f"{len(repeated)} manifest id(s) repeat: {_listing(repeated)}; this is a bug in the "
                            "folder source (ids come from unique relative paths), please report it with the layout")


def _listing(items: list[str], separator: str = ", ") -> str:
    return separator.join(items[:SHOWN]) + (f"{separator}... ({len(items)} in all)" if len(items) > SHOWN else "")
