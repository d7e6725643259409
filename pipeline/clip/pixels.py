"""Images decoded once into a uint8 tensor cache, for training that runs the image tower.

open_clip's eval preprocess is PIL resize + centre crop, then `ToTensor` (x / 255) and `Normalize`.
The cache keeps the pixels after the PIL part, as uint8 [N, H, W, 3] in Parquet shards, so
`normalise(cache)` reproduces `preprocess(image)` exactly and no epoch decodes a file again.
Shards are written atomically under a key of everything that decides their pixels (the rows'
identities and bytes, the transform), so an interrupted build resumes and a stale one is never read.

Training views are augmented on the batch tensor (GRIP's visual prompts train with random resized
crop + flip): one affine `grid_sample` per batch, on whatever device the model runs on.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torchvision import transforms as T
from tqdm.auto import tqdm

from pipeline.core.artifacts import atomic_path
from pipeline.core.errors import PipelineError
from pipeline.datasets.images import open_image

log = logging.getLogger(__name__)

SHARD_IMAGES = 1024


@dataclass(frozen=True)
class PixelSpec:
    """The PIL part of a preprocess (what the cache stores) and the normalisation applied per batch."""

    pil: T.Compose
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    size: int

    @classmethod
    def from_preprocess(cls, preprocess: T.Compose) -> "PixelSpec":
        steps = list(preprocess.transforms)
        normalise = next((s for s in steps if isinstance(s, T.Normalize)), None)
        if normalise is None:
            raise PipelineError(f"the model's preprocess has no Normalize step: {preprocess}")
        pil = [s for s in steps if isinstance(s, (T.Resize, T.CenterCrop))]
        crop = next((s for s in pil if isinstance(s, T.CenterCrop)), None)
        if crop is None:
            raise PipelineError(f"the model's preprocess has no CenterCrop, so its images have no fixed size: {preprocess}")
        return cls(T.Compose(pil), tuple(normalise.mean), tuple(normalise.std), int(crop.size[0]))

    def describe(self) -> str:
        return f"{self.pil}|{self.mean}|{self.std}"

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, 3] (or float in [0, 1], channels first) -> the model's input [B, 3, H, W]."""
        if pixels.dtype == torch.uint8:
            pixels = pixels.permute(0, 3, 1, 2).float().div_(255)
        mean = torch.tensor(self.mean, device=pixels.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=pixels.device).view(1, 3, 1, 1)
        return (pixels - mean) / std


def decode_pixels(spec: PixelSpec, path, data) -> np.ndarray:
    """An image's pixels after the PIL part of the preprocess, uint8 [H, W, 3]."""
    try:
        return np.asarray(spec.pil(open_image(path, data)), dtype=np.uint8)
    except Exception as error:
        where = path if path is not None else "an in-memory image"
        raise PipelineError(f"cannot read image {where}: {error}. Remove or replace it and run prepare again.") from None


def _rows_digest(frame: pd.DataFrame) -> str:
    """Identity of the rows: ids, and the image bytes or the files' paths, sizes and times."""
    digest = hashlib.sha256()
    for row in frame.itertuples(index=False):
        digest.update(str(row.id).encode())
        data = getattr(row, "image", None)
        if data is not None:
            digest.update(hashlib.sha256(data).digest())
        else:
            stat = os.stat(row.path)
            digest.update(f"{row.path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def pixel_cache(frame: pd.DataFrame, spec: PixelSpec, cache_dir: str | Path, desc: str = "images") -> np.ndarray:
    """uint8 [N, H, W, 3] of a frame with `id` and `path` and/or `image` columns, in frame order,
    decoded at most once per cache key; shards already in the cache are read, not decoded."""
    if frame.empty:
        return np.zeros((0, spec.size, spec.size, 3), np.uint8)
    key = hashlib.sha256(f"{_rows_digest(frame)}|{spec.describe()}".encode()).hexdigest()[:16]
    folder = Path(cache_dir) / key
    folder.mkdir(parents=True, exist_ok=True)
    paths = frame["path"].tolist() if "path" in frame else [None] * len(frame)
    images = frame["image"].tolist() if "image" in frame else [None] * len(frame)
    ids = frame["id"].astype(str).tolist()
    out = np.empty((len(frame), spec.size, spec.size, 3), np.uint8)
    n_shards = math.ceil(len(frame) / SHARD_IMAGES)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # PIL decodes without the GIL
        for shard in tqdm(range(n_shards), desc=f"pixel cache {desc}", unit="shard", disable=n_shards < 2):
            rows = slice(shard * SHARD_IMAGES, min(len(frame), (shard + 1) * SHARD_IMAGES))
            path = folder / f"shard-{shard:05d}.parquet"
            if path.exists():
                table = pq.read_table(path)
                if table.column("id").to_pylist() == ids[rows]:
                    out[rows] = np.frombuffer(b"".join(table.column("pixels").to_pylist()), np.uint8).reshape(
                        -1, spec.size, spec.size, 3)
                    continue
            decoded = np.stack(list(pool.map(lambda a: decode_pixels(spec, *a), zip(paths[rows], images[rows]))))
            out[rows] = decoded
            table = pa.table({"id": ids[rows], "pixels": pa.array([d.tobytes() for d in decoded], pa.binary())})
            with atomic_path(path) as tmp:
                pq.write_table(table, tmp)
    return out


def augment(batch: torch.Tensor, generator: torch.Generator, scale: tuple[float, float],
            flip: bool = True, ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Random resized crop (area share in `scale`, aspect in `ratio`, as torchvision's) and a
    horizontal flip with probability 1/2, per image, of float [B, 3, H, W]; bilinear, one call."""
    n = batch.shape[0]
    uniform = lambda low, high: low + (high - low) * torch.rand(n, generator=generator)  # noqa: E731
    area = uniform(*scale)
    aspect = torch.exp(uniform(math.log(ratio[0]), math.log(ratio[1])))
    width, height = (area * aspect).sqrt().clamp(max=1), (area / aspect).sqrt().clamp(max=1)
    centre_x, centre_y = uniform(-1, 1) * (1 - width), uniform(-1, 1) * (1 - height)
    mirror = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = width * mirror, centre_x
    theta[:, 1, 1], theta[:, 1, 2] = height, centre_y
    grid = F.affine_grid(theta.to(batch.device), list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
