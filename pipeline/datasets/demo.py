"""The demo source: the procedural world of `pipeline.demo.world`, for tests and the default run."""

from __future__ import annotations

import pandas as pd

from pipeline.config.params import WorldParams
from pipeline.datasets.images import png_bytes
from pipeline.datasets.source import Dataset
from pipeline.demo import world as demo_world


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
