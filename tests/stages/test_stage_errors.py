"""Bad input through the stage commands: exit status 2, a message naming the fix, no half-written artifact."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from pipeline.core.artifacts import atomic_path
from stages import adapt, check, features, generate, prepare

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["dataset"]["demo"].update(images_per_class=3, test_images_per_class=2)
    params["generate"].update(images_per_class=1, steps=2, model=str(ROOT / params["generate"]["model"]))
    params["clip"]["pretrained"] = str(ROOT / params["clip"]["pretrained"])
    params["clip"]["num_workers"] = 0

    def write(**changes):
        for key, value in changes.items():
            node = params
            *parents, leaf = key.split("__")
            for part in parents:
                node = node[part]
            node[leaf] = value
        Path("params.yaml").write_text(yaml.safe_dump(params))
    write()
    return write


def invoke(stage_module, args: list[str] | None = None):
    result = CliRunner().invoke(stage_module.app, args or [])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes is not None else "")


def test_unknown_method_and_dataset(project):
    project(method="coop")
    code, output = invoke(check)   # the method catalog is check's (and train's), not every stage's
    assert code == 2 and "unknown method 'coop'" in output and "air, coft, coft_plus, cpl, fpl, grip, ifpl, pll, upl, zeroshot" in output
    project(method="air", dataset__name="imagenet1k")
    code, output = invoke(prepare)
    assert code == 2 and "unknown dataset 'imagenet1k'" in output
    assert not Path("data").exists()


def test_a_bad_candidates_file_stops_prepare_naming_the_line_and_keeps_the_last_manifest(project, tmp_path):
    project(method="pll", paradigm="candidates")
    code, output = invoke(prepare)
    assert code == 0
    manifest = Path("data/prepared/manifest.parquet").read_bytes()
    sets = tmp_path / "sets.csv"
    sets.write_text("path,candidates\ntrain-000-00000,red circle;purple circle\n")
    project(paradigm_options__candidates_file=str(sets))
    code, output = invoke(prepare)
    assert code == 2 and "sets.csv line 2 ('train-000-00000'): unknown class 'purple circle'" in output
    assert Path("data/prepared/manifest.parquet").read_bytes() == manifest


def test_missing_root_and_class_folder_mismatch(project, tmp_path):
    project(dataset__name="folder", dataset__root=str(tmp_path / "nope"))
    code, output = invoke(prepare)
    assert code == 2 and "is not a folder" in output
    for split, classes in (("train", ["cat", "dog"]), ("test", ["cat"])):
        for name in classes:
            (tmp_path / "images" / split / name).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / "images" / split / name / "0.png")
    project(dataset__root=str(tmp_path / "images"))
    code, output = invoke(prepare)
    assert code == 2 and "only in train ['dog']" in output
    assert not Path("data/prepared/manifest.parquet").exists()


def test_unreadable_image(project, tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8)).save(tmp_path / "images" / name / f"{i}.png")
    (tmp_path / "images" / "dog" / "2.jpg").write_bytes(b"\xff\xd8 truncated")
    project(dataset__name="folder", dataset__root=str(tmp_path / "images"))
    code, output = invoke(prepare)
    assert code == 2 and "2.jpg" in output and "Remove or replace" in output
    assert not Path("data/prepared").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised when CUDA is absent")
def test_cuda_without_cuda_keeps_finished_work(project):
    project(adapt__enabled=False)
    assert invoke(check)[0] == 0 and invoke(prepare)[0] == 0
    manifest = Path("data/prepared/manifest.parquet").read_bytes()
    code, output = invoke(generate)
    assert code == 2 and "run the adapt stage first" in output
    assert invoke(adapt)[0] == 0
    project(generate__device="cuda")
    code, output = invoke(generate)
    assert code == 2 and "generate.device='cuda'" in output and "set generate.device: cpu" in output
    assert not Path("data/synthetic").exists() or not list(Path("data/synthetic").glob("*.parquet"))
    project(generate__device="cpu", clip__device="cuda:0")
    assert invoke(generate)[0] == 0
    code, output = invoke(features, ["synthetic"])
    assert code == 2 and "clip.device='cuda:0'" in output and "CUDA is not available" in output
    assert not Path("data/features").exists()
    assert Path("data/prepared/manifest.parquet").read_bytes() == manifest


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out" / "table.parquet"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert list((tmp_path / "out").iterdir()) == []
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("new")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
