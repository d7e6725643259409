"""The `generate` stage's library: synthetic class images from a text-to-image diffusion model.

Generation is the slowest step of the pipeline, so it is resumable: images are made in fixed
shards (`pipeline.diffusion.synthetic`'s plan), and every finished shard lands atomically in a cache
folder keyed by everything that determines its pixels. A rerun after a crash (or with an unchanged
configuration) regenerates only the shards that are missing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import shutil
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd
import pyarrow.parquet as pq
import torch
from diffusers import DiffusionPipeline
from PIL import Image
from tqdm.auto import tqdm

from pipeline.config.params import ComputeParams, GenerateParams
from pipeline.core.artifacts import atomic_path, file_digest, write_table
from pipeline.core.paths import shared_root
from pipeline.diffusion.loading import load_generator, model_fingerprint
from pipeline.diffusion.lora import LORA_FILE
from pipeline.diffusion.synthetic import COLUMNS, DTYPES, SHARD_GLOB, Job, plan_shards, shard_name
from pipeline.runtime.compute import execution_device, run_shards, worker_model
from pipeline.runtime.devices import rebalance_threads, resolve_dtype, torch_threads

log = logging.getLogger(__name__)


def _cache_key(params: GenerateParams, class_names: list[str], seed: int, dtype: torch.dtype,
               adapter: Path | None = None) -> str:
    """Hash of everything that determines the shards' contents (the weights' bytes, the adapter's
    bytes when there is one, the dtype as actually used). Without an adapter the key is what it was
    before adaptation existed, so caches made then stay valid."""
    identity = {
        "model": model_fingerprint(params.model), "templates": params.templates, "size": params.size, "steps": params.steps,
        "guidance": params.guidance, "dtype": str(dtype).removeprefix("torch."), "seed": seed,
        "class_names": class_names, "images_per_class": params.images_per_class,
        "shard_size": params.shard_size, "batch_size": params.batch_size,
    }
    if adapter is not None:
        identity["adapter"] = file_digest(Path(adapter) / LORA_FILE).hexdigest()
        if params.adapter_scale != 1.0:  # keys made before the scale existed stay valid at 1
            identity["adapter_scale"] = params.adapter_scale
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]



def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()



class ShardGenerator:
    """One shard's images from its jobs: the picklable work that `pipeline.runtime.compute` runs here, in a
    process per GPU, or as a Ray task. The pipeline is loaded on first use, once per process.


    On CPU a shard runs on one torch thread: oneDNN splits some convolutions' sums by thread count,
    which moved a pixel by one grey level between 1 and 2 threads (tiny-random), and a shard's bytes
    must not depend on how many workers share the cores. Parallelism on CPU comes from processes."""


    single_threaded_on_cpu = True


    def __init__(self, params: GenerateParams, device: torch.device, dtype: torch.dtype, adapter: Path | None):
        self.params, self.device, self.dtype, self.adapter = params, device, dtype, adapter
        self._pipe = None


    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pipe": None}  # a worker loads its own copy


    def pipe(self) -> DiffusionPipeline:
        if self._pipe is None:
            scale = self.params.adapter_scale
            identity = (self.params.model, str(self.device), str(self.dtype), str(self.adapter), scale)
            self._pipe = worker_model(identity, lambda: load_generator(self.params.model, self.device,
                                                                       self.dtype, self.adapter, scale))
        return self._pipe


    def __call__(self, jobs: list[Job], report: Callable[[int], None] | None = None) -> pd.DataFrame:
        if self.device.type == "cpu":
            with torch_threads(1):
                return self._images(jobs, report)
        return self._images(jobs, report)


    def _images(self, jobs: list[Job], report: Callable[[int], None] | None) -> pd.DataFrame:
        params, device, rows = self.params, self.device, []
        for start in range(0, len(jobs), params.batch_size):
            batch = jobs[start:start + params.batch_size]
            images = self.pipe()(
                prompt=[job.prompt for job in batch],
                height=params.size,
                width=params.size,
                num_inference_steps=params.steps,
                guidance_scale=params.guidance,
                generator=[torch.Generator(device=device).manual_seed(job.seed) for job in batch],
            ).images
            for job, image in zip(batch, images, strict=True):
                rows.append({"id": job.id, "label": job.label, "class_name": job.class_name, "prompt": job.prompt,
                             "seed": job.seed, "image": _png(image), "width": image.width, "height": image.height})
            if report is not None:
                report(len(batch))
        return pd.DataFrame(rows, columns=COLUMNS).astype(DTYPES)



def _cached_shard_problem(path: Path, jobs: list[Job]) -> str | None:
    """Why the cached shard cannot be reused (None: it can): it must read back with the generator's
    columns and exactly the ids of its jobs, in order. A truncated or foreign file is not a shard."""
    try:
        shard = pq.ParquetFile(path)
        columns = shard.schema_arrow.names
        table = shard.read(columns=["id"])
    except Exception as error:  # pyarrow raises several kinds for a damaged file; all mean "regenerate"
        return f"unreadable ({type(error).__name__}: {str(error)[:120]})"
    if columns != COLUMNS:
        return f"columns {columns} are not a generator shard's {COLUMNS}"
    ids = table.column("id").to_pylist()
    if ids != [job.id for job in jobs]:
        return f"holds {len(ids)} images whose ids do not match the {len(jobs)} planned for it"
    return None



def _reusable(path: Path, jobs: list[Job]) -> bool:
    """True for a good cached shard; a bad one is named in a warning and deleted, to be generated again."""
    problem = _cached_shard_problem(path, jobs)
    if problem is not None:
        log.warning("cached shard %s is %s; deleting it and generating it again", path, problem)
        path.unlink()
    return problem is None



@contextlib.contextmanager
def _cache_lock(cache: Path) -> Iterator[None]:
    """One writer per cache key at a time: a second run that wants the same images waits, then finds the
    shards finished. Under the lock, temporary files left by a killed writer are safe to delete."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another run is generating into %s; waiting for it", cache)
            fcntl.flock(handle, fcntl.LOCK_EX)
        for stale in cache.glob(".shard-*.tmp"):
            stale.unlink()
        yield



def generate_synthetic(params: GenerateParams, class_names: list[str], seed: int, out_dir: Path,
                       progress: bool = True, adapter: Path | None = None,
                       compute: ComputeParams | None = None) -> pd.DataFrame:
    """Fill `out_dir` with one Parquet shard per `shard_size` images, reusing cached shards; with
    `adapter`, from the generator with that LoRA folder loaded. The missing shards are made where
    `compute` says (this process, a process per GPU or core, Ray tasks; None: this process); each lands
    in the cache whole.


    Returns one row per shard: its file name, its number of images, and whether it came from cache.
    """
    device = execution_device(compute, params.device, "generate.device")
    dtype = resolve_dtype(params.dtype, device)
    shards = plan_shards(params, class_names, seed)
    cache = shared_root() / params.cache_dir / _cache_key(params, class_names, seed, dtype, adapter)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*out_dir.glob(SHARD_GLOB), *out_dir.glob(".shard-*.tmp")]:
        stale.unlink()


    total = sum(len(jobs) for jobs in shards)
    with _cache_lock(cache), tqdm(total=total, unit="image", desc="generate", disable=not progress) as bar:
        cached = {index for index, jobs in enumerate(shards)
                  if (cache / shard_name(index)).exists() and _reusable(cache / shard_name(index), jobs)}
        bar.update(sum(len(shards[index]) for index in cached))
        missing = {index: jobs for index, jobs in enumerate(shards) if index not in cached}
        work = ShardGenerator(params, device, dtype, adapter)
        for index, frame in run_shards(work, missing, compute, device, bar.update):
            write_table(cache / shard_name(index), frame)
            rebalance_threads()


        summary = pd.DataFrame([{"shard": shard_name(index), "images": len(jobs), "from_cache": index in cached}
                                for index, jobs in enumerate(shards)], columns=["shard", "images", "from_cache"])
        for name in summary["shard"]:
            with atomic_path(out_dir / name) as tmp:
                shutil.copyfile(cache / name, tmp)
    reused = int(summary.loc[summary["from_cache"], "images"].sum())
    log.info("generate: %d images generated, %d taken from cache %s", total - reused, reused, cache)
    return summary
