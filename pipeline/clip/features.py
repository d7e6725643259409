"""Encode real images, synthetic images and class prompts with a frozen open_clip model.

Everything downstream (auxiliary classifier, pseudo-labels, prompt training, evaluation) works on
these cached, L2-normalised vectors, so the image tower runs once per image, not once per epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable

import numpy as np
import open_clip
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from pipeline.clip import pixels
from pipeline.clip.models import Clip, load_clip
from pipeline.clip.pixels import PixelSpec, decode_pixels
from pipeline.clip.prompts import class_prompts
from pipeline.config.params import ClipParams, ComputeParams, Params
from pipeline.core import paths
from pipeline.core.artifacts import atomic_path, write_table
from pipeline.core.paths import shared_root
from pipeline.runtime.compute import execution_device, run_shards, worker_model

log = logging.getLogger(__name__)

SHARD_TARGET = 4096  # images per feature shard, rounded to whole batches


class _ImageRows(torch.utils.data.Dataset):
    """Rows with a `path` or PNG `image` bytes, decoded to uint8 pixels in DataLoader workers; the
    batch is normalised on the model's device (`PixelSpec.normalise`: exactly the preprocess), so
    workers do the PIL part only and a quarter of the bytes cross to the model."""

    def __init__(self, paths: list, images: list, spec: PixelSpec):
        self.paths, self.images, self.spec = paths, images, spec

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor(decode_pixels(self.spec, self.paths[index], self.images[index]))  # PIL's array is read-only


@torch.inference_mode()
def encode_images(clip: Clip, frame: pd.DataFrame, batch_size: int, num_workers: int, device: torch.device,
                  desc: str = "images") -> np.ndarray:
    """L2-normalised image embeddings for a frame with `path` and/or `image` columns."""
    if frame.empty:
        return np.zeros((0, clip.model.visual.output_dim), dtype=np.float32)
    paths, images = _sources(frame)
    with tqdm(total=len(frame), desc=f"encode {desc}", unit="image") as bar:
        return _encode(clip, paths, images, batch_size, num_workers, device, bar.update)


def _sources(frame: pd.DataFrame) -> tuple[list, list]:
    paths = frame["path"].tolist() if "path" in frame else [None] * len(frame)
    images = frame["image"].tolist() if "image" in frame else [None] * len(frame)
    return paths, images


def _encode(clip: Clip, paths: list, images: list, batch_size: int, num_workers: int, device: torch.device,
            report: Callable[[int], None] | None) -> np.ndarray:
    """Decode in DataLoader workers (batches ahead of the model), encode on `device`, L2-normalise."""
    spec = PixelSpec.from_preprocess(clip.preprocess)
    loader = torch.utils.data.DataLoader(_ImageRows(paths, images, spec), batch_size=batch_size,
                                         num_workers=num_workers, shuffle=False, pin_memory=device.type == "cuda")
    chunks = []
    with torch.inference_mode():
        for batch in loader:
            # contiguous: the permuted (channels-last) layout takes other conv kernels, off by float rounding
            pixels = spec.normalise(batch.to(device, non_blocking=True)).contiguous()
            chunks.append(F.normalize(clip.model.encode_image(pixels).float(), dim=-1).cpu())
            if report is not None:
                report(len(batch))
    return torch.cat(chunks).numpy()


class ShardEncoder:
    """One shard of the feature plan: its images' embeddings. Picklable work for `pipeline.runtime.compute`
    (this process, or a Ray task); the model loads once per process."""

    single_threaded_on_cpu = False  # one process, all its threads (and DataLoader workers decode)

    def __init__(self, clip: ClipParams, device: torch.device):
        self.clip, self.device = clip, device
        self._model: Clip | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_model": None}

    def model(self) -> Clip:
        if self._model is None:
            identity = (self.clip.arch, self.clip.pretrained, str(self.device))
            self._model = worker_model(identity, lambda: load_clip(self.clip.arch, self.clip.pretrained, self.device))
        return self._model

    def __call__(self, items: list[tuple], report: Callable[[int], None] | None = None) -> np.ndarray:
        paths, images = [path for path, _ in items], [image for _, image in items]
        return _encode(self.model(), paths, images, self.clip.batch_size, self.clip.num_workers, self.device, report)


def _shard_images(batch_size: int) -> int:
    """Images per feature shard: a whole number of batches (so sharding never changes a batch, nor
    the embeddings), about 4096."""
    return batch_size * max(1, SHARD_TARGET // batch_size)


def _source_identity(path, image) -> str:
    """What decides an image's pixels: its bytes' digest, or a file's path, size and mtime."""
    if image is not None:
        return "bytes:" + hashlib.sha256(image).hexdigest()
    stat = Path(path).stat()
    return f"file:{path}:{stat.st_size}:{stat.st_mtime_ns}"


def _weights_identity(pretrained: str) -> str:
    weights = Path(pretrained).expanduser()
    if weights.is_file():
        stat = weights.stat()
        return f"{weights.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return pretrained


def _code_identity() -> str:
    """The encoding code and the libraries under it: a change to any may move the floats, and a cached
    shard from before must not be served (a layout change once did, by 2e-7)."""
    digest = hashlib.sha256(f"{torch.__version__}|{open_clip.__version__}".encode())
    for module in (__file__, pixels.__file__):
        digest.update(Path(module).read_bytes())
    return digest.hexdigest()


def encode_image_shards(frame: pd.DataFrame, clip: ClipParams, device: torch.device, cache: Path,
                        compute: ComputeParams | None = None, desc: str = "images") -> np.ndarray:
    """`encode_images` as a plan of shards: each shard's embeddings land in `cache` (safetensors,
    atomically, named by a digest of the model and the shard's images), so a killed run resumes and
    the missing shards can run where `compute` says. Returns the embeddings in frame order."""
    paths, images = _sources(frame)
    size = _shard_images(clip.batch_size)
    model = json.dumps([clip.arch, _weights_identity(clip.pretrained), clip.batch_size, str(device.type),
                        _code_identity()])
    shards, files = {}, {}
    for index, start in enumerate(range(0, len(frame), size)):
        items = list(zip(paths[start:start + size], images[start:start + size]))
        digest = hashlib.sha256(model.encode())
        for path, image in items:
            digest.update(_source_identity(path, image).encode() + b"\0")
        files[index] = Path(cache) / f"{digest.hexdigest()[:24]}.safetensors"
        shards[index] = items
    missing = {index: items for index, items in shards.items() if not files[index].exists()}
    with tqdm(total=len(frame), desc=f"encode {desc}", unit="image") as bar:
        bar.update(len(frame) - sum(len(items) for items in missing.values()))
        for index, embeddings in run_shards(ShardEncoder(clip, device), missing, compute, device, bar.update):
            with atomic_path(files[index]) as tmp:
                save_file({"embeddings": torch.tensor(embeddings)}, str(tmp))  # a copy: Ray hands back read-only arrays
    log.info("%s: %d of %d shards encoded, the rest read from %s", desc, len(missing), len(shards), cache)
    if not shards:
        return np.zeros((0, ShardEncoder(clip, device).model().model.visual.output_dim), dtype=np.float32)
    return np.concatenate([load_file(str(files[index]))["embeddings"].numpy() for index in sorted(shards)])


@torch.inference_mode()
def encode_prompts(clip: Clip, templates: list[str], class_names: list[str], device: torch.device
                   ) -> tuple[pd.DataFrame, np.ndarray]:
    """One L2-normalised embedding per (class, template)."""
    pairs = class_prompts(templates, class_names)
    tokens = clip.tokenizer([prompt for _, prompt in pairs]).to(device)
    embeddings = F.normalize(clip.model.encode_text(tokens).float(), dim=-1).cpu().numpy()
    frame = pd.DataFrame({"class_index": [c for c, _ in pairs], "prompt": [p for _, p in pairs]})
    return frame, embeddings


def feature_metadata(params: Params) -> dict:
    """What a feature table says it was encoded with (evaluate and train check it against params)."""
    return {"arch": params.clip.arch, "pretrained": params.clip.pretrained}


def write_image_features(path: Path, frame: pd.DataFrame, params: Params, desc: str) -> None:
    """Encode `frame` shard by shard (cached under `.cache/features`, run where `compute.*` says) into
    the feature table `path` (id, label, embedding)."""
    device = execution_device(params.compute, params.clip.device, "clip.device")
    embeddings = encode_image_shards(frame, params.clip, device, shared_root() / paths.FEATURE_CACHE, params.compute, desc)
    table = pd.DataFrame({"id": frame["id"].to_numpy(), "label": frame["label"].astype("int64").to_numpy()})
    write_table(path, table, embeddings, feature_metadata(params))
