"""Paradigms (UL, SSL, TRZSL, candidates): which training labels the methods may use, written into the
manifest, and under `candidates` each training image's label set (a sibling table)."""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import pandas as pd
from PIL import Image

from pipeline.config.params import DatasetParams, ParadigmParams
from pipeline.config.protocols import get_protocol
from pipeline.core.errors import PipelineError
from pipeline.core.plots import CELL, grid_image
from pipeline.datasets.candidate_sets import candidate_table, empty_table
from pipeline.datasets.images import open_thumbnail
from pipeline.datasets.loading import load_dataset
from pipeline.datasets.manifest import MANIFEST_COLUMNS
from pipeline.datasets.source import Dataset
from pipeline.datasets.torchvision import cleaned_up_download

log = logging.getLogger(__name__)


def seen_classes(n_classes: int, options: ParadigmParams, protocol: str = "project") -> np.ndarray:
    """TRZSL's seen classes, `int(seen_fraction · C)` drawn from `split_seed` by the protocol's
    generator, in draw order (GRIP's split files list them so)."""
    return get_protocol(protocol).seen_classes(n_classes, options.seen_fraction, options.split_seed)


def apply_paradigm(dataset: Dataset, paradigm: str, options: ParadigmParams, seed: int,
                   protocol: str = "project") -> pd.DataFrame:
    """Add `labeled` and `seen`: which training labels the methods may use, and which classes are seen."""
    frame = dataset.frame.copy()
    n_classes = len(dataset.class_names)
    train = (frame["split"] == "train").to_numpy()
    frame["labeled"] = False
    frame["seen"] = True
    if paradigm == "ssl":
        labels = frame["label"].to_numpy()
        members = []
        for label in range(n_classes):
            members.append(np.flatnonzero(train & (labels == label)))
            if len(members[-1]) <= options.n_label:
                raise PipelineError(
                    f"SSL needs more than paradigm_options.n_label={options.n_label} training images per class; "
                    f"class {dataset.class_names[label]!r} has {len(members[-1])}. Lower n_label."
                )
        chosen = get_protocol(protocol).ssl_labeled(members, options.n_label, seed)
        frame.loc[frame.index[chosen], "labeled"] = True
    elif paradigm == "trzsl":
        seen = seen_classes(n_classes, options, protocol)
        if len(seen) in (0, n_classes):
            raise PipelineError(
                f"TRZSL with {n_classes} classes and seen_fraction={options.seen_fraction} leaves "
                "no seen or no unseen class; change paradigm_options.seen_fraction"
            )
        frame["seen"] = frame["label"].isin(seen)
        frame["labeled"] = train & frame["seen"].to_numpy()
    return frame[MANIFEST_COLUMNS]


def prepare(dataset_params: DatasetParams, paradigm: str, options: ParadigmParams, seed: int,
            protocol: str = "project") -> tuple[pd.DataFrame, list[str], pd.DataFrame]:
    """The manifest, the class names and the candidate sets (empty unless the paradigm is `candidates`)."""
    download = cleaned_up_download(dataset_params) if dataset_params.download else contextlib.nullcontext()
    with download:
        dataset = load_dataset(dataset_params)
    _check_both_splits(dataset, dataset_params.test_fraction)
    manifest = apply_paradigm(dataset, paradigm, options, seed, protocol)
    counts = manifest.groupby("split").size().to_dict()
    log.info("%s: %d classes, %s images, %d labeled for training (%s)", dataset_params.name,
             len(dataset.class_names), counts, int(manifest["labeled"].sum()), paradigm.upper())
    candidates = empty_table()
    if paradigm == "candidates":
        candidates = candidate_table(manifest, dataset.class_names, options, dataset_params)
        sizes = candidates["candidates"].map(len)
        log.info("candidate sets: %d training images, %.2f classes per set on average (%s)", len(candidates),
                 sizes.mean(), options.candidates_file or f"drawn with partial_rate {options.partial_rate}")
    return manifest, dataset.class_names, candidates


def _check_both_splits(dataset: Dataset, test_fraction: float | None) -> None:
    """A class with no training image is never pseudo-labelled, one with no test image never scored:
    refuse the split (e.g. test_fraction 0.9 of 4 images) before anything is written."""
    counts = pd.crosstab(dataset.frame["label"], dataset.frame["split"]).reindex(
        index=range(len(dataset.class_names)), columns=["train", "test"], fill_value=0)
    for label, (train, test) in enumerate(counts.to_numpy()):
        if train and test:
            continue
        total = int(train + test)
        fraction = "the source's default" if test_fraction is None else test_fraction
        if total < 2:
            fix = "add images to it (each class needs at least 2)"
        elif not train:
            fix = f"lower dataset.test_fraction (now {fraction}) below {1 - 0.5 / total:.3g}, or add images to it"
        else:
            fix = f"raise dataset.test_fraction (now {fraction}), or add images to it"
        raise PipelineError(f"class {dataset.class_names[label]!r} gets {int(train)} training and {int(test)} test "
                            f"image(s) of {total}; every class needs both: {fix}")


def class_sheet(manifest: pd.DataFrame, class_names: list[str], max_classes: int, per_class: int) -> Image.Image:
    """A grid of the first training images of each class, to see the domain being adapted to; each
    image is decoded as a thumbnail, so the sheet costs the same whatever the images' size."""
    train = manifest[manifest["split"] == "train"]
    rows = []
    for label, name in list(enumerate(class_names))[:max_classes]:
        members = train[train["label"] == label].head(per_class)
        rows.append((name, [open_thumbnail(path, data, CELL) for path, data in zip(members["path"], members["image"])]))
    return grid_image(rows, "no training images")
