"""The generate stage's library on the tiny random diffusion pipeline: schema, resume, determinism."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
from PIL import Image

from pipeline.clip.models import register_model_configs
from pipeline.config.params import GenerateParams
from pipeline.core.errors import PipelineError
from pipeline.core.plots import LABEL_WIDTH
from pipeline.diffusion import generate as generation
from pipeline.diffusion.generate import generate_synthetic
from pipeline.diffusion.loading import load_generator
from pipeline.diffusion.synthetic import COLUMNS, contact_sheet, image_seed, read_planned_synthetic, read_synthetic
from pipeline.tiny import TINY_CLIP, build_tiny_diffusion, save_tiny_diffusion

CLASSES = ["cat", "dog", "red car"]
CPU = torch.device("cpu")


def _params(cache: Path, **overrides) -> GenerateParams:
    values = dict(model="tiny-random", images_per_class=5, templates=["a photo of a {}", "a drawing of a {}"],
                  size=32, steps=2, guidance=0.0, batch_size=4, shard_size=6, dtype="float32", device="cpu",
                  cache_dir=str(cache))
    values.update(overrides)
    return GenerateParams(**values)


class Recorder:
    """Stands in for the pipeline: records each batch size, and can fail on the call numbered `fail_at`."""

    def __init__(self, pipe, fail_at: int | None = None):
        self.pipe, self.fail_at, self.batches = pipe, fail_at, []

    def __call__(self, **kwargs):
        if len(self.batches) == self.fail_at:
            raise RuntimeError("simulated crash")
        self.batches.append(len(kwargs["prompt"]))
        return self.pipe(**kwargs)


@pytest.fixture(scope="module")
def tiny_pipe():
    return build_tiny_diffusion(seed=0)


@pytest.fixture
def recorder(monkeypatch, tiny_pipe):
    """Route generate_synthetic's model loading to a shared recording pipeline."""
    def install(fail_at: int | None = None) -> Recorder:
        rec = Recorder(tiny_pipe, fail_at)
        monkeypatch.setattr(generation, "load_generator", lambda model, device, dtype, adapter=None, adapter_scale=1.0: rec)
        return rec
    return install


def _pixels(frame) -> np.ndarray:
    return np.stack([np.asarray(Image.open(io.BytesIO(data))) for data in frame["image"]]).astype(int)


def test_image_seed_is_pure_and_distinct():
    assert image_seed(0, 1, 2) == image_seed(0, 1, 2)
    seeds = {image_seed(s, c, i) for s in range(2) for c in range(20) for i in range(20)}
    assert len(seeds) == 2 * 20 * 20
    assert all(0 <= value < 2**63 for value in seeds)


def test_generate_schema_and_shards(tmp_path):
    params = _params(tmp_path / "cache")
    out = tmp_path / "out"
    out.mkdir()
    (out / "shard-00099.parquet").write_bytes(b"stale")

    summary = generate_synthetic(params, CLASSES, seed=3, out_dir=out, progress=False)

    total = len(CLASSES) * params.images_per_class
    shards = sorted(out.glob("shard-*.parquet"))
    assert [path.name for path in shards] == ["shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]
    assert len(shards) <= math.ceil(total / params.shard_size)
    assert sorted(path.name for path in out.iterdir()) == [path.name for path in shards]
    assert summary["images"].tolist() == [6, 6, 3] and not summary["from_cache"].any()

    frame = read_synthetic(out)
    assert list(frame.columns) == COLUMNS and len(frame) == total
    assert frame["id"].is_unique and frame["id"].iloc[0] == "syn-0000-00000"
    assert frame["label"].tolist() == [c for c in range(len(CLASSES)) for _ in range(params.images_per_class)]
    assert frame["class_name"].tolist() == [CLASSES[c] for c in frame["label"]]
    assert frame["prompt"].iloc[6] == "a drawing of a dog"
    assert frame["seed"].dtype == np.int64 and frame["seed"].iloc[6] == image_seed(3, 1, 1)
    assert (frame["width"] == 32).all() and (frame["height"] == 32).all()
    assert _pixels(frame).shape == (total, 32, 32, 3)


def test_resume_generates_only_missing_shards(tmp_path, recorder):
    params_a = _params(tmp_path / "cache-x")
    rec = recorder()
    generate_synthetic(params_a, CLASSES, seed=0, out_dir=tmp_path / "a", progress=False)
    assert rec.batches == [4, 2, 4, 2, 3]

    params_b = _params(tmp_path / "cache-y")
    recorder(fail_at=2)  # the second shard's first batch
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate_synthetic(params_b, CLASSES, seed=0, out_dir=tmp_path / "b", progress=False)
    (cache,) = (tmp_path / "cache-y").iterdir()
    assert sorted(path.name for path in cache.iterdir()) == [".lock", "shard-00000.parquet"]

    rec = recorder()
    summary = generate_synthetic(params_b, CLASSES, seed=0, out_dir=tmp_path / "b", progress=False)
    assert sum(rec.batches) == 9 and rec.batches == [4, 2, 3]
    assert summary["from_cache"].tolist() == [True, False, False]

    a, b = read_synthetic(tmp_path / "a"), read_synthetic(tmp_path / "b")
    assert a["image"].tolist() == b["image"].tolist()
    for column in ("id", "seed", "prompt", "label"):
        assert a[column].tolist() == b[column].tolist()

    rec = recorder()
    generate_synthetic(params_b, CLASSES, seed=0, out_dir=tmp_path / "b", progress=False)
    assert rec.batches == []


def test_images_do_not_depend_on_batch_composition(tmp_path, recorder):
    recorder()
    frames = []
    for batch_size in (1, 4):
        out = tmp_path / f"batch-{batch_size}"
        params = _params(tmp_path / "cache", batch_size=batch_size)
        generate_synthetic(params, CLASSES, seed=1, out_dir=out, progress=False)
        frames.append(read_synthetic(out))
    ones, fours = (_pixels(frame) for frame in frames)
    # Same seeds and latents; CPU kernels pick batch-size-dependent summation orders, which can flip a rounding.
    assert np.abs(ones - fours).max() <= 1
    assert frames[0]["id"].tolist() == frames[1]["id"].tolist()


def test_no_images_gives_no_shards(tmp_path):
    out = tmp_path / "out"
    generate_synthetic(_params(tmp_path / "cache", images_per_class=0), CLASSES, seed=0, out_dir=out, progress=False)
    assert list(out.iterdir()) == []
    frame = read_synthetic(out)
    assert list(frame.columns) == COLUMNS and frame.empty

    sheet = tmp_path / "sheet.png"
    contact_sheet(out, sheet, max_classes=4, images_per_class=4)
    assert Image.open(sheet).size == (256, 64)


def test_from_pretrained_folder(tmp_path, tiny_pipe):
    folder = save_tiny_diffusion(tmp_path / "sd", seed=0)
    pipe = load_generator(str(folder), CPU, torch.float32)
    kwargs = dict(prompt=["a photo of a cat"], height=32, width=32, num_inference_steps=2, guidance_scale=0.0,
                  output_type="np")
    loaded = pipe(generator=[torch.Generator().manual_seed(7)], **kwargs).images
    built = tiny_pipe(generator=[torch.Generator().manual_seed(7)], **kwargs).images
    assert loaded.shape == (1, 32, 32, 3)
    np.testing.assert_allclose(loaded, built, atol=1e-5)


def test_retrained_weights_in_the_same_folder_are_not_served_from_cache(tmp_path):
    """The cache key covers the weights' bytes, not just generate.model's path."""
    folder = save_tiny_diffusion(tmp_path / "sd", seed=0)
    params = _params(tmp_path / "cache", model=str(folder), images_per_class=2, shard_size=6)

    def run(name):
        summary = generate_synthetic(params, CLASSES, seed=0, out_dir=tmp_path / name, progress=False)
        return summary["from_cache"].tolist(), _pixels(read_synthetic(tmp_path / name))

    assert run("first")[0] == [False]
    cached, before = run("again")
    assert cached == [True]
    sizes = {p.name: p.stat().st_size for p in folder.rglob("*.safetensors")}
    save_tiny_diffusion(folder, seed=1)  # "retrained": same files and sizes, new weights
    assert {p.name: p.stat().st_size for p in folder.rglob("*.safetensors")} == sizes
    cached, after = run("retrained")
    assert cached == [False]
    assert np.abs(before - after).max() > 0


def test_missing_model_folder_names_the_key(tmp_path):
    with pytest.raises(PipelineError, match="generate.model"):
        load_generator(str(tmp_path / "missing"), CPU, torch.float32)


def test_contact_sheet_grid(tmp_path, recorder):
    recorder()
    out = tmp_path / "out"
    generate_synthetic(_params(tmp_path / "cache"), CLASSES, seed=0, out_dir=out, progress=False)
    sheet = tmp_path / "sheet.png"
    contact_sheet(out, sheet, max_classes=2, images_per_class=3)
    cell = 64  # 32 px images, upscaled x2
    with Image.open(sheet) as image:
        assert image.format == "PNG"
        assert image.size == (LABEL_WIDTH + 3 * cell, 2 * cell)


def test_contact_sheet_frames_each_image_by_whether_the_clip_keeps_its_class(tmp_path, recorder):
    recorder()
    out = tmp_path / "out"
    generate_synthetic(_params(tmp_path / "cache"), CLASSES, seed=0, out_dir=out, progress=False)
    frame = read_synthetic(out)
    faithful = {image_id: index % 2 == 0 for index, image_id in enumerate(frame["id"])}
    sheet = tmp_path / "sheet.png"
    target = pd.DataFrame({"label": [0, 1], "path": [None, None], "image": list(frame["image"][:2])})
    contact_sheet(out, sheet, max_classes=2, images_per_class=3, target=target, faithful=faithful,
                  fidelity={0: 0.5, 1: 0.25})
    cell = 64
    with Image.open(sheet) as image:
        pixels = np.asarray(image.convert("RGB")).astype(int)
    assert pixels.shape[0] == 4 * cell  # synthetic and target row per class
    for column in range(3):  # the top-left pixel of each synthetic image of class 0 is its frame's colour
        row_image = frame[frame["label"] == 0].iloc[column]
        expected = (40, 190, 60) if faithful[row_image["id"]] else (220, 30, 30)
        assert tuple(pixels[0, LABEL_WIDTH + column * cell]) == expected


def test_tiny_clip_encodes():
    register_model_configs()
    register_model_configs()
    model, _, preprocess = open_clip.create_model_and_transforms(TINY_CLIP, pretrained=None)
    image = preprocess(Image.new("RGB", (50, 40), "red")).unsqueeze(0)
    assert model.encode_image(image).shape == (1, 32)
    assert model.encode_text(open_clip.get_tokenizer(TINY_CLIP)(["a cat", "a dog"])).shape == (2, 32)


def test_damaged_or_foreign_cached_shards_are_regenerated_byte_identical(tmp_path, recorder, caplog):
    """A truncated shard (killed mid-copy, disk fault) and a foreign Parquet file with the right row count
    are both named, deleted and generated again; the result equals an undisturbed run byte for byte."""
    params = _params(tmp_path / "cache")
    recorder()
    generate_synthetic(params, CLASSES, seed=0, out_dir=tmp_path / "clean", progress=False)
    clean = read_synthetic(tmp_path / "clean")
    (cache,) = (tmp_path / "cache").iterdir()
    first, second = cache / "shard-00000.parquet", cache / "shard-00001.parquet"
    first.write_bytes(first.read_bytes()[:200])
    foreign = read_synthetic(tmp_path / "clean").iloc[6:12].assign(id=[f"other-{i}" for i in range(6)])
    foreign.to_parquet(second, index=False)
    (cache / ".shard-00002.parquet.abc.tmp").write_bytes(b"left by a killed writer")

    rec = recorder()
    with caplog.at_level("WARNING", logger="pipeline.diffusion.generate"):
        summary = generate_synthetic(params, CLASSES, seed=0, out_dir=tmp_path / "again", progress=False)
    assert summary["from_cache"].tolist() == [False, False, True]
    assert rec.batches == [4, 2, 4, 2]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2
    assert str(first) in warnings[0] and "unreadable" in warnings[0]
    assert str(second) in warnings[1] and "ids do not match" in warnings[1]
    assert not list(cache.glob(".shard-*.tmp"))
    again = read_synthetic(tmp_path / "again")
    assert again["image"].tolist() == clean["image"].tolist() and again["id"].tolist() == clean["id"].tolist()


def test_concurrent_writers_of_one_cache_end_with_identical_shards(tmp_path, tiny_pipe, monkeypatch):
    """Two runs wanting the same images at once (queued experiments sharing the cache): the second waits
    for the first's lock, then reuses every shard; both outputs are byte-identical."""
    import threading

    calls = []
    lock = threading.Lock()

    def pipe(**kwargs):
        with lock:
            calls.append(len(kwargs["prompt"]))
            return tiny_pipe(**kwargs)

    monkeypatch.setattr(generation, "load_generator", lambda model, device, dtype, adapter=None, adapter_scale=1.0: pipe)
    params = _params(tmp_path / "cache")
    summaries = {}

    def writer(name):
        summaries[name] = generate_synthetic(params, CLASSES, seed=0, out_dir=tmp_path / name, progress=False)

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(calls) == len(CLASSES) * params.images_per_class  # every image generated exactly once
    assert sorted(summary["from_cache"].all() for summary in summaries.values()) == [False, True]
    for shard in ("shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"):
        assert (tmp_path / "a" / shard).read_bytes() == (tmp_path / "b" / shard).read_bytes()


def test_features_refuse_a_missing_shard(tmp_path, recorder):
    """After a killed `generate`, the synthetic images are incomplete: reading them for the auxiliary
    classifier is an error that counts what is missing and names the fix."""
    recorder()
    params = _params(tmp_path / "cache")
    out = tmp_path / "out"
    generate_synthetic(params, CLASSES, seed=0, out_dir=out, progress=False)
    assert len(read_planned_synthetic(out, params, CLASSES)) == 15
    (out / "shard-00001.parquet").unlink()
    with pytest.raises(PipelineError, match=r"holds 9 synthetic images.*plans 15 \(missing e.g. \['syn-0001-00001'"
                                            r".*run the generate stage again"):
        read_planned_synthetic(out, params, CLASSES)
