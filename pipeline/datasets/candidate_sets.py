"""The `candidates` paradigm's label sets: one per training image, drawn or read from the user's file.

Drawn (the candidate-label papers' uniform flipping): the true label is always in; every other label
joins independently with probability q = `paradigm_options.partial_rate`, from
`paradigm_options.candidate_seed` alone, so the sets do not move with the training seed. Read:
`paradigm_options.candidates_file`, CSV or Parquet with a `path` column (the image's path relative to
the dataset root, or its manifest id, e.g. `train-003-00012` in the demo world) and a `candidates`
column (class names; in CSV separated by `;`; in Parquet a list per row, or one such string). Paths
and names match in Unicode NFC, so a CSV typed on one system finds file names stored decomposed
(macOS) on another. Test images keep their single true label.
"""

from __future__ import annotations

import contextlib
import os
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config.params import DatasetParams, ParadigmParams
from pipeline.core.errors import PipelineError

COLUMNS = ["id", "candidates"]
CSV_SEPARATOR = ";"


def draw_candidate_masks(labels: np.ndarray, n_classes: int, partial_rate: float, seed: int) -> np.ndarray:
    """[n, C] bool: the true label, and each other label independently with probability `partial_rate`."""
    rng = np.random.default_rng(seed)
    masks = rng.random((len(labels), n_classes)) < partial_rate
    masks[np.arange(len(labels)), labels] = True
    return masks


def empty_table() -> pd.DataFrame:
    return pd.DataFrame({"id": pd.Series(dtype=str), "candidates": pd.Series(dtype=object)})


def candidate_table(manifest: pd.DataFrame, class_names: list[str], options: ParadigmParams,
                    dataset: DatasetParams) -> pd.DataFrame:
    """(id, candidates: sorted class indices) for every training image of the manifest."""
    train = manifest[manifest["split"] == "train"]
    if options.candidates_file:
        masks = _read_candidates_file(Path(options.candidates_file), train, class_names, dataset.root)
    else:
        masks = draw_candidate_masks(train["label"].to_numpy(dtype=np.int64), len(class_names),
                                     options.partial_rate, options.candidate_seed)
    return pd.DataFrame({"id": train["id"].to_numpy(), "candidates": [np.flatnonzero(m).tolist() for m in masks]})


def candidate_masks(table: pd.DataFrame, ids: np.ndarray, n_classes: int) -> np.ndarray:
    """[len(ids), C] bool from the table, in the order of `ids`; every id must have a set."""
    row_of = pd.Series(np.arange(len(table)), index=table["id"].to_numpy())
    missing = ~pd.Index(ids).isin(row_of.index)
    if missing.any():
        raise PipelineError(f"{int(missing.sum())} training images have no candidate set (first: {ids[missing][0]!r}); "
                            "re-run the prepare stage (dvc repro prepare)")
    masks = np.zeros((len(ids), n_classes), dtype=bool)
    for index, classes in enumerate(table["candidates"].to_numpy()[row_of[ids].to_numpy()]):
        masks[index, np.asarray(classes, dtype=np.int64)] = True
    return masks


def _read_candidates_file(path: Path, train: pd.DataFrame, class_names: list[str], root: str | None) -> np.ndarray:
    if not path.is_file():
        raise PipelineError(f"paradigm_options.candidates_file {str(path)!r} not found; give a CSV or Parquet file "
                            "with columns path, candidates")
    try:
        if path.suffix.lower() == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as error:  # noqa: BLE001 - any parse failure is the same user error
        raise PipelineError(f"{path}: cannot be read as {'Parquet' if path.suffix.lower() == '.parquet' else 'CSV'} "
                            f"({type(error).__name__}: {error})") from None
    absent = [column for column in ("path", "candidates") if column not in frame.columns]
    if absent:
        raise PipelineError(f"{path}: missing column(s) {', '.join(absent)}; it needs path (image path relative to "
                            "the dataset root, or its manifest id) and candidates (class names)")

    row_of_key = _training_keys(train, root)
    index_of_class = {_nfc(name): index for index, name in enumerate(class_names)}
    masks = np.zeros((len(train), len(class_names)), dtype=bool)
    seen = np.zeros(len(train), dtype=bool)
    csv = path.suffix.lower() != ".parquet"
    for number, (key, names) in enumerate(zip(frame["path"], frame["candidates"]), start=2 if csv else 1):
        where = f"{path} {'line' if csv else 'row'} {number} ({key!r})"
        row = row_of_key.get(_nfc(str(key)))
        if row is None:
            raise PipelineError(f"{where}: not a training image of the dataset; give its path relative to the "
                                "dataset root (or its manifest id), and only training images")
        if seen[row]:
            raise PipelineError(f"{where}: the image has a second row; give each image one candidate set")
        names = _names(names, where)
        if not names:
            raise PipelineError(f"{where}: empty candidate set; every image needs at least one candidate class")
        unknown = [name for name in names if name not in index_of_class]
        if unknown:
            raise PipelineError(f"{where}: unknown class {unknown[0]!r}; known classes include "
                                f"{', '.join(repr(n) for n in class_names[:5])}{' ...' if len(class_names) > 5 else ''}")
        masks[row, [index_of_class[name] for name in names]] = True
        seen[row] = True
    if not seen.all():
        first = train["id"].to_numpy()[~seen][0]
        raise PipelineError(f"{path}: {int((~seen).sum())} of {len(train)} training images have no row "
                            f"(first: {first!r}); every training image needs a candidate set")
    return masks


def _names(value, where: str) -> list[str]:
    if isinstance(value, str):
        return [_nfc(name.strip()) for name in value.split(CSV_SEPARATOR) if name.strip()]
    if value is None:
        return []
    if not isinstance(value, (list, tuple, np.ndarray)):
        raise PipelineError(f"{where}: column candidates holds {type(value).__name__} {value}; it needs a list of "
                            f"class names per row (or one string of names separated by '{CSV_SEPARATOR}')")
    return [_nfc(str(name).strip()) for name in value if str(name).strip()]


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _training_keys(train: pd.DataFrame, root: str | None) -> dict[str, int]:
    """Each training image's manifest id, and its path relative to the dataset root where it has one:
    both sides taken as given (made absolute) and with symlinks resolved, so a relative or symlinked
    root, or images under a symlinked folder, still match the path a user sees."""
    keys = {_nfc(image_id): row for row, image_id in enumerate(train["id"])}
    if root:
        bases = {os.path.abspath(os.path.expanduser(root)), os.path.realpath(os.path.expanduser(root))}
        for row, image_path in enumerate(train["path"]):
            if isinstance(image_path, str):
                for path in {os.path.abspath(image_path), os.path.realpath(image_path)}:
                    for base in bases:
                        with contextlib.suppress(ValueError):  # not under this form of the root
                            keys.setdefault(_nfc(Path(path).relative_to(base).as_posix()), row)
    return keys
