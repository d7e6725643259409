"""The papers' benchmarks, read from tiny fake copies of their on-disk layouts (no downloads); and the
GPU benchmark suite (`benchmarks/gpu_suite.sh`) in its toy mode."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark_fakes import CUB_CLASSES, fake_class_folders, fake_cub, fake_dtd, fake_fgvc, fake_flowers
from pipeline.config.params import DatasetParams, WorldParams
from pipeline.core.errors import PipelineError
from pipeline.datasets.benchmark import shipped_class_names, shipped_folders
from pipeline.datasets.loading import load_dataset


def _load(name: str, root: Path, **options):
    return load_dataset(DatasetParams(name=name, root=str(root), **options))


def _counts(dataset) -> dict:
    return dataset.frame.groupby("split").size().to_dict()


def test_flowers102_pool_is_train_plus_val_with_grips_names(tmp_path):
    fake_flowers(tmp_path)
    dataset = _load("flowers102", tmp_path)
    assert _counts(dataset) == {"train": 204, "test": 102}           # train + val pooled, official test
    assert len(dataset.class_names) == 102 and dataset.class_names[0] == "pink primrose"
    row = dataset.frame.set_index("id").loc["train/image_00103.jpg"]   # first val image: label 103 mod 102
    assert row["label"] == 0 and row["path"].endswith("flowers-102/jpg/image_00103.jpg")
    assert _load("flowers102", tmp_path / "flowers-102").frame.equals(dataset.frame)  # root may be the inner folder


def test_dtd_pool_is_train1_plus_val1_and_test_is_test1(tmp_path):
    folders = shipped_class_names("dtd")
    fake_dtd(tmp_path)
    dataset = _load("dtd", tmp_path)
    assert _counts(dataset) == {"train": 94, "test": 47}
    assert dataset.class_names == folders and len(folders) == 47
    frame = dataset.frame.set_index("id")
    assert frame.loc["test/zigzagged/zigzagged_0003.jpg", "label"] == 46


def test_fgvc_aircraft_labels_follow_grips_order_not_variants_txt(tmp_path):
    names, variants = shipped_class_names("fgvc_aircraft"), shipped_folders("fgvc_aircraft", "variants")
    base = fake_fgvc(tmp_path)
    dataset = _load("fgvc_aircraft", tmp_path)
    assert _counts(dataset) == {"train": 100, "test": 100} and dataset.class_names == names
    assert sorted(variants) != variants  # the two orders really differ (at 20 places)
    frame = dataset.frame.set_index("id")
    for variant in ("An-12", "ATR-42", "F/A-18", "Spitfire"):
        image = 1000000 + sorted(variants).index(variant)
        assert variants[frame.loc[f"train/{image}.jpg", "label"]] == variant
    (base / "variants.txt").write_text("\n".join(sorted(variants)[:-1] + ["Concorde 2"]) + "\n")
    with pytest.raises(PipelineError, match=r"does not list FGVC-Aircraft's 100 variants \(unknown: \['Concorde 2'\]"):
        _load("fgvc_aircraft", tmp_path)


@pytest.mark.parametrize(("name", "inner", "per_class", "test_per_class"), [
    ("eurosat", ("eurosat", "2750"), 4, 2),          # no official split: half of each class by default
    ("resisc45", ("NWPU-RESISC45",), 5, 4),          # ELEVATER's sizes: 80% of each class is test
])
def test_class_folder_benchmarks_get_the_papers_names_and_a_seeded_split(tmp_path, name, inner, per_class,
                                                                          test_per_class):
    folders = shipped_folders(name)
    fake_class_folders(tmp_path, name, inner, per_class)
    dataset = _load(name, tmp_path)
    assert dataset.class_names == shipped_class_names(name)
    counts = dataset.frame.groupby(["label", "split"]).size().unstack()
    assert (counts["test"] == test_per_class).all() and (counts["train"] == per_class - test_per_class).all()
    assert len(counts) == len(folders)
    assert _load(name, tmp_path).frame.equals(dataset.frame)                       # reproducible
    assert not _load(name, tmp_path, split_seed=1).frame["split"].equals(dataset.frame["split"])
    if name == "eurosat":
        assert dataset.class_names[2] == "brushland or shrubland" and folders[2] == "HerbaceousVegetation"
    else:
        assert dataset.class_names[2] == "baseball diamond" and len(folders) == 45


def test_cub_uses_the_official_split_and_class_names_from_classes_txt(tmp_path):
    base = fake_cub(tmp_path)
    dataset = _load("cub", tmp_path)
    assert dataset.class_names == ["black footed albatross", "laysan albatross", "sooty albatross"]
    assert _counts(dataset) == {"train": 6, "test": 3}
    assert dataset.frame["label"].tolist() == [0, 1, 2] * 3
    (base / "images" / CUB_CLASSES[0] / "bird_7.jpg").unlink()
    with pytest.raises(PipelineError, match=r"1 image\(s\) named by the split lists are missing, e\.g\. \S+bird_7.jpg"):
        _load("cub", tmp_path)


def test_class_names_file_renames_any_dataset_by_line_or_by_key(tmp_path):
    fake_flowers(tmp_path)
    names = [f"flower {i}" for i in range(102)]
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    assert _load("flowers102", tmp_path, class_names_file=str(tmp_path / "names.txt")).class_names == names
    (tmp_path / "names.json").write_text(json.dumps({"pink primrose": "primula vulgaris"}))
    with pytest.raises(PipelineError, match=r"no name for \['hard-leaved pocket orchid'"):
        _load("flowers102", tmp_path, class_names_file=str(tmp_path / "names.json"))
    (tmp_path / "short.txt").write_text("a\nb\n")
    with pytest.raises(PipelineError, match=r"has 2 non-empty lines but the dataset has 102 classes"):
        _load("flowers102", tmp_path, class_names_file=str(tmp_path / "short.txt"))
    world = WorldParams(images_per_class=2, test_images_per_class=1)
    demo = load_dataset(DatasetParams(name="demo", demo=world))
    (tmp_path / "demo.json").write_text(json.dumps({name: name.upper() for name in demo.class_names}))
    renamed = load_dataset(DatasetParams(name="demo", demo=world, class_names_file=str(tmp_path / "demo.json")))
    assert renamed.class_names == [n.upper() for n in demo.class_names]


def test_a_truncated_benchmark_image_is_named_before_any_work(tmp_path):
    base = fake_flowers(tmp_path)
    data = (base / "jpg" / "image_00007.jpg").read_bytes()
    (base / "jpg" / "image_00007.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(PipelineError, match=r"1 image\(s\) cannot be read: \S+image_00007.jpg"):
        _load("flowers102", tmp_path)


GPU_SUITE_ARMS = ["prompt_forward_eager", "prompt_reference_eager", "prompt_fit", "features_vitb32",
                  "generate_sd-turbo", "adapt_sd-turbo", "generate_sd15", "adapt_sd15",
                  "prompt_forward_compiled", "prompt_reference_compiled"]


def test_gpu_suite_toy_mode_records_every_arm_and_extrapolates_air_on_flowers102(tmp_path):
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "suite"
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable, OMP_NUM_THREADS="1")
    done = subprocess.run(["bash", str(root / "benchmarks" / "gpu_suite.sh"), "--toy"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for arm in GPU_SUITE_ARMS:
        record = json.loads((out / f"{arm}.json").read_text())
        assert record["status"] == "ok", record
        numbers = [value for value in record["figures"].values() if type(value) in (int, float)]
        assert numbers and all(math.isfinite(value) and value >= 0 for value in numbers), record
        assert f"[{arm}] ok in" in done.stdout
    assert "Extrapolated wall time of full AiR on Flowers102 (TOY figures: meaningless)" in done.stdout
    extrapolation = json.loads((out / "extrapolation.json").read_text())
    assert extrapolation["sd-turbo"]["missing"] == [] and extrapolation["total_s"] > 0
    assert set(extrapolation["sd-turbo"]["components_s"]) == {"adapt", "generate", "features", "GRIP"}
    # GRIP: K_t = 2t for |U| = 2,040, C = 102; n_t = 102 K_t (x 0.8 from K_t = 10); 150 epochs of ceil(n_t / 16)
    assert extrapolation["grip_k"] == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20] and extrapolation["grip_steps"] == 150 * 590
    assert (out / "suite.log").read_text().count("] ok in") == len(GPU_SUITE_ARMS)
