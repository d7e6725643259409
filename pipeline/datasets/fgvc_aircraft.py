"""FGVC-Aircraft (variants) as the papers use it: pool = trainval (6,667 images), test = test (3,333),
100 variants in GRIP's / ELEVATER's label order (case-insensitive alphabetical, which differs from
variants.txt's at 20 places; class_names/fgvc_aircraft_variants.txt maps each to its variant string). Layout: `fgvc-aircraft-2013b/data/{images/<id>.jpg,
variants.txt, images_variant_trainval.txt, images_variant_test.txt}`."""

from __future__ import annotations

from pathlib import Path

from pipeline.config.params import DatasetParams
from pipeline.core.errors import PipelineError
from pipeline.datasets.benchmark import differences, frame, locate, missing_files, shipped_class_names, shipped_folders
from pipeline.datasets.source import Dataset

LAYOUT = ("  <root>/fgvc-aircraft-2013b/data/images/1025794.jpg ...\n"
          "  <root>/fgvc-aircraft-2013b/data/{variants,images_variant_trainval,images_variant_test}.txt")


def load(params: DatasetParams) -> Dataset:
    base = locate(params.root, ("fgvc-aircraft-2013b", "data"), "variants.txt", "fgvc_aircraft", LAYOUT)
    variants = [line.strip() for line in (base / "variants.txt").read_text().splitlines() if line.strip()]
    ordered = shipped_folders("fgvc_aircraft", "variants")
    if sorted(variants) != sorted(ordered):
        raise PipelineError(f"fgvc_aircraft: {base / 'variants.txt'} does not list FGVC-Aircraft's 100 variants "
                            f"({differences(variants, ordered)}); re-unpack the archive")
    index = {variant: label for label, variant in enumerate(ordered)}
    paths, ids, splits, labels = [], [], [], []
    for part, split in (("trainval", "train"), ("test", "test")):
        listing = base / f"images_variant_{part}.txt"
        if not listing.is_file():
            raise PipelineError(f"fgvc_aircraft: {listing} is missing; unpack the complete archive")
        for number, line in enumerate(listing.read_text().splitlines(), 1):
            if not line.strip():
                continue
            image_id, _, variant = line.strip().partition(" ")
            if variant not in index:
                raise PipelineError(f"fgvc_aircraft: {listing}:{number} names variant {variant!r}, "
                                    "which variants.txt does not list")
            paths.append(str(Path(base, "images", f"{image_id}.jpg")))
            ids.append(f"{split}/{image_id}.jpg")
            splits.append(split)
            labels.append(index[variant])
    names = shipped_class_names("fgvc_aircraft")
    missing_files(paths, "fgvc_aircraft")
    return Dataset(frame(paths, ids, splits, labels), names)
