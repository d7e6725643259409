"""The synthetic store (`data/synthetic`, `data/adapter/prior`): which images a generation plans, its
Parquet shards' format, reading them back, and the contact sheet that shows them.

Each image has its own seed, derived from (seed, class, index), so an image never depends on which
other images shared its batch or its shard; the plan is what `features` and training check a store
against, and it needs no diffusers.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw

from pipeline.config.params import GenerateParams
from pipeline.core.artifacts import read_table
from pipeline.core.errors import PipelineError
from pipeline.core.plots import class_grid
from pipeline.datasets.images import open_image

SHARD_GLOB = "shard-*.parquet"
COLUMNS = ["id", "label", "class_name", "prompt", "seed", "image", "width", "height"]
DTYPES = {"id": "object", "label": "int64", "class_name": "object", "prompt": "object",
           "seed": "int64", "image": "object", "width": "int64", "height": "int64"}


@dataclass(frozen=True)
class Job:
    label: int
    class_name: str
    index: int
    prompt: str
    seed: int


    @property
    def id(self) -> str:
        return f"syn-{self.label:04d}-{self.index:05d}"



def image_seed(seed: int, class_index: int, image_index: int) -> int:
    """A per-image seed that depends only on its arguments, so images survive any re-batching."""
    digest = hashlib.sha256(f"{seed}:{class_index}:{image_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)



def plan_shards(params: GenerateParams, class_names: list[str], seed: int) -> list[list[Job]]:
    """All jobs, class by class, cut into shards of `shard_size` consecutive jobs."""
    templates = params.templates
    jobs = [
        Job(label, name, index, templates[index % len(templates)].format(name), image_seed(seed, label, index))
        for label, name in enumerate(class_names)
        for index in range(params.images_per_class)
    ]
    return [jobs[start:start + params.shard_size] for start in range(0, len(jobs), params.shard_size)]



def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"



def read_synthetic(out_dir: Path) -> pd.DataFrame:
    """All synthetic images in generation order; an empty frame (same columns) when there are none."""
    frames = [read_table(path)[0] for path in sorted(Path(out_dir).glob(SHARD_GLOB))]
    if not frames:
        return pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in DTYPES.items()})
    return pd.concat(frames, ignore_index=True).astype(DTYPES)



def read_planned_synthetic(out_dir: Path, params: GenerateParams, class_names: list[str]) -> pd.DataFrame:
    """The synthetic images of `out_dir`, refused unless they are exactly the images `params` plan: a
    killed `generate` (missing shards) or a stray file must not reach the auxiliary classifier."""
    frame = read_synthetic(out_dir)
    planned = [job.id for jobs in plan_shards(params, class_names, params.seed) for job in jobs]
    if frame["id"].tolist() != planned:
        found = set(frame["id"])
        missing = [image_id for image_id in planned if image_id not in found]
        raise PipelineError(
            f"{out_dir} holds {len(frame)} synthetic images, but generate.images_per_class="
            f"{params.images_per_class} for {len(class_names)} classes plans {len(planned)}"
            + (f" (missing e.g. {missing[:3]})" if missing else " (ids or order differ)")
            + "; run the generate stage again (dvc repro generate, or python -m stages.generate)")
    return frame



def _framed(image: Image.Image, faithful: bool) -> Image.Image:
    """The image with a 1-px frame: green when the CLIP assigns it to its class, red when not."""
    framed = image.convert("RGB")
    ImageDraw.Draw(framed).rectangle([0, 0, framed.width - 1, framed.height - 1],
                                     outline=(40, 190, 60) if faithful else (220, 30, 30))
    return framed



def contact_sheet(out_dir: Path, png_path: Path, max_classes: int, images_per_class: int,
                  target: pd.DataFrame | None = None, faithful: dict[str, bool] | None = None,
                  fidelity: dict[int, float] | None = None) -> None:
    """A PNG grid to eyeball what the generator made: one row per class, its first images, labelled.
    With `target` (rows with `label`, `path`/`image`), each class's row of synthetic images is followed
    by a row of its target images, to see the domain gap at a glance. With `faithful` (synthetic id →
    whether the CLIP assigns it to its class) each synthetic image is framed green or red, and with
    `fidelity` (class → share) the row's label gives the class's share."""
    rows: dict[int, tuple[str, list[Image.Image]]] = {}
    for path in sorted(Path(out_dir).glob(SHARD_GLOB)):
        frame = read_table(path, columns=["id", "label", "class_name", "image"])[0]
        for image_id, label, name, data in frame.itertuples(index=False):
            if label not in rows and len(rows) < max_classes:
                rows[label] = (name, [])
            if label in rows and len(rows[label][1]) < images_per_class:
                image = Image.open(io.BytesIO(data))
                rows[label][1].append(image if faithful is None else _framed(image, faithful[image_id]))
    if target is None:
        class_grid(list(rows.values()), png_path, "no synthetic images")
        return
    paired = []
    for label, (name, images) in rows.items():
        members = target[target["label"] == label].head(images_per_class)
        share = "" if fidelity is None else f", {100 * fidelity[label]:.0f}%"
        paired += [(f"{name} (syn{share})", images),
                   (f"{name} (target)", [open_image(p, d) for p, d in zip(members["path"], members["image"])])]
    class_grid(paired, png_path, "no synthetic images")
