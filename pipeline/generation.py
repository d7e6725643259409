"""The `generate` stage's library: synthetic class images from a text-to-image diffusion model.

Generation is the slowest step of the pipeline, so it is resumable: images are made in fixed
shards, and every finished shard lands atomically in a cache folder keyed by everything that
determines its pixels. A rerun after a crash (or with an unchanged configuration) regenerates only
the shards that are missing. Each image has its own seed, derived from (seed, class, index), so an
image never depends on which other images shared its batch or its shard.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd
import pyarrow.parquet as pq
import torch
from diffusers import AutoPipelineForText2Image, DiffusionPipeline
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from pipeline.adaptation import LORA_FILE, load_adapter
from pipeline.artifacts import atomic_path, file_digest, read_table, write_table
from pipeline.demo.generator import MARKER as DEMO_MARKER
from pipeline.demo.generator import DemoPipeline
from pipeline.compute import execution_device, run_shards, worker_model
from pipeline.devices import rebalance_threads, resolve_dtype, torch_threads
from pipeline.datasets.images import open_image
from pipeline.errors import PipelineError
from pipeline.params import ComputeParams, GenerateParams
from pipeline.paths import shared_root
from pipeline.plots import class_grid
from pipeline.tiny import build_tiny_diffusion

log = logging.getLogger(__name__)

TINY_RANDOM = "tiny-random"
SHARD_GLOB = "shard-*.parquet"
COLUMNS = ["id", "label", "class_name", "prompt", "seed", "image", "width", "height"]
_DTYPES = {"id": "object", "label": "int64", "class_name": "object", "prompt": "object",
           "seed": "int64", "image": "object", "width": "int64", "height": "int64"}


@dataclass(frozen=True)
class _Job:
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


def _plan(params: GenerateParams, class_names: list[str], seed: int) -> list[list[_Job]]:
    """All jobs, class by class, cut into shards of `shard_size` consecutive jobs."""
    templates = params.templates
    jobs = [
        _Job(label, name, index, templates[index % len(templates)].format(name), image_seed(seed, label, index))
        for label, name in enumerate(class_names)
        for index in range(params.images_per_class)
    ]
    return [jobs[start:start + params.shard_size] for start in range(0, len(jobs), params.shard_size)]


def _shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


def _looks_local(model: str) -> bool:
    return model.startswith((".", "/", "~")) or Path(model).expanduser().exists()


def load_generator(model: str, device: torch.device, dtype: torch.dtype,
                   adapter: Path | None = None, adapter_scale: float = 1.0) -> DiffusionPipeline:
    """Load a text-to-image pipeline: `tiny-random`, the demo world's generator folder, a local
    diffusers folder, or a hub id; with `adapter`, the LoRA weights the `adapt` stage saved there,
    applied at `adapter_scale`."""
    fix = ("set generate.model to a local diffusers directory (one with model_index.json), go online once so "
           f"the hub id is cached, or use generate.model: {TINY_RANDOM} for a smoke run")
    if model == TINY_RANDOM:
        pipe = build_tiny_diffusion(seed=0)
        if dtype != torch.float32:  # it is built in float32; casting to the same dtype only logs a warning
            pipe = pipe.to(dtype=dtype)
    elif _looks_local(model) and not Path(model).expanduser().exists():
        raise PipelineError(f"generate.model={model!r} does not exist; {fix}")
    elif (Path(model).expanduser() / DEMO_MARKER).exists():
        pipe = DemoPipeline.from_dir(Path(model).expanduser(), device)
    else:
        source = str(Path(model).expanduser()) if _looks_local(model) else model
        try:
            pipe = AutoPipelineForText2Image.from_pretrained(source, dtype=dtype)
        except Exception as error:  # unreachable hub, unknown id, incomplete folder: all need the same fix
            reason = str(error).rstrip(".")
            raise PipelineError(f"could not load generate.model={model!r}: {reason}. To fix: {fix}") from None
    pipe = pipe.to(device)
    if adapter is not None:
        load_adapter(pipe, adapter, adapter_scale)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def model_fingerprint(model: str) -> str:
    """What identifies the generator's weights: for a local folder the SHA-256 of its files' names and
    bytes (a retrained model under the same path must not reuse old images), else the name itself
    (a hub id or `tiny-random`, built from a fixed seed in code)."""
    folder = Path(model).expanduser()
    if not (_looks_local(model) and folder.is_dir()):
        return model
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        file_digest(path, digest)
    return f"{model}@sha256:{digest.hexdigest()}"


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
    """One shard's images from its jobs: the picklable work that `pipeline.compute` runs here, in a
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

    def __call__(self, jobs: list[_Job], report: Callable[[int], None] | None = None) -> pd.DataFrame:
        if self.device.type == "cpu":
            with torch_threads(1):
                return self._images(jobs, report)
        return self._images(jobs, report)

    def _images(self, jobs: list[_Job], report: Callable[[int], None] | None) -> pd.DataFrame:
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
        return pd.DataFrame(rows, columns=COLUMNS).astype(_DTYPES)


def _cached_shard_problem(path: Path, jobs: list[_Job]) -> str | None:
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


def _reusable(path: Path, jobs: list[_Job]) -> bool:
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
    shards = _plan(params, class_names, seed)
    cache = shared_root() / params.cache_dir / _cache_key(params, class_names, seed, dtype, adapter)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*out_dir.glob(SHARD_GLOB), *out_dir.glob(".shard-*.tmp")]:
        stale.unlink()

    total = sum(len(jobs) for jobs in shards)
    with _cache_lock(cache), tqdm(total=total, unit="image", desc="generate", disable=not progress) as bar:
        cached = {index for index, jobs in enumerate(shards)
                  if (cache / _shard_name(index)).exists() and _reusable(cache / _shard_name(index), jobs)}
        bar.update(sum(len(shards[index]) for index in cached))
        missing = {index: jobs for index, jobs in enumerate(shards) if index not in cached}
        work = ShardGenerator(params, device, dtype, adapter)
        for index, frame in run_shards(work, missing, compute, device, bar.update):
            write_table(cache / _shard_name(index), frame)
            rebalance_threads()

        summary = pd.DataFrame([{"shard": _shard_name(index), "images": len(jobs), "from_cache": index in cached}
                                for index, jobs in enumerate(shards)], columns=["shard", "images", "from_cache"])
        for name in summary["shard"]:
            with atomic_path(out_dir / name) as tmp:
                shutil.copyfile(cache / name, tmp)
    reused = int(summary.loc[summary["from_cache"], "images"].sum())
    log.info("generate: %d images generated, %d taken from cache %s", total - reused, reused, cache)
    return summary


def read_synthetic(out_dir: Path) -> pd.DataFrame:
    """All synthetic images in generation order; an empty frame (same columns) when there are none."""
    frames = [read_table(path)[0] for path in sorted(Path(out_dir).glob(SHARD_GLOB))]
    if not frames:
        return pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in _DTYPES.items()})
    return pd.concat(frames, ignore_index=True).astype(_DTYPES)


def read_planned_synthetic(out_dir: Path, params: GenerateParams, class_names: list[str]) -> pd.DataFrame:
    """The synthetic images of `out_dir`, refused unless they are exactly the images `params` plan: a
    killed `generate` (missing shards) or a stray file must not reach the auxiliary classifier."""
    frame = read_synthetic(out_dir)
    planned = [job.id for jobs in _plan(params, class_names, params.seed) for job in jobs]
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
