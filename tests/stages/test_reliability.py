"""Faults a user meets (typos, missing GPUs, a stage started twice, unwritable folders, inputs changed
outside the repo): each one an exit status 2 with the culprit named, and nothing written or overwritten."""

from __future__ import annotations

import errno
import fcntl
import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pipeline.check import fingerprint
from pipeline.config.params import load_params, parse_params
from pipeline.core.artifacts import write_json
from pipeline.core.errors import PipelineError
from pipeline.methods.catalog import check_method
from pipeline.runtime.devices import resolve_device
from stages import check, prepare

ROOT = Path(__file__).resolve().parents[2]


def invoke(stage_module):
    result = CliRunner().invoke(stage_module.app, [])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes is not None else "")


# --- params: every mistake named at load time -----------------------------------------------------

@pytest.mark.parametrize("key", ["seed", "dataset.split_seed", "dataset.demo.seed", "paradigm_options.split_seed",
                                 "generate.seed", "adapt.seed"])
def test_negative_seeds_are_rejected_with_the_key(key):
    data: dict = {}
    node = data
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = -1
    with pytest.raises(PipelineError, match=rf"{key}: Input should be greater than or equal to 0 \(got -1\)"):
        parse_params(data)


@pytest.mark.parametrize("template, found", [("a {} {x}", "found 2: ['', 'x']"), ("a {} and {}", "found 2: ['', '']"),
                                             ("a {name}", "found 1: ['name']")])
def test_templates_need_exactly_one_empty_slot(template, found):
    with pytest.raises(PipelineError, match=r"clip.templates: template .* must have exactly one '\{\}' slot") as error:
        parse_params({"clip": {"templates": [template]}})
    assert found in str(error.value)
    with pytest.raises(PipelineError, match=r"generate.templates: template 'a \{ \{\}' is not a format string"):
        parse_params({"generate": {"templates": ["a { {}"]}})
    assert parse_params({"clip": {"templates": ["a {{literal}} {}."]}}).clip.templates == ["a {{literal}} {}."]


def test_booleans_are_not_numbers_but_yes_no_keys_take_them():
    with pytest.raises(PipelineError, match=r"train.epochs: a boolean is not allowed here"):
        parse_params({"train": {"epochs": True}})
    with pytest.raises(PipelineError, match=r"pseudolabel.fusion_lambda: a boolean is not allowed here"):
        parse_params({"pseudolabel": {"fusion_lambda": False}})
    assert parse_params({"adapt": {"enabled": True}, "dataset": {"download": False}}).adapt.enabled is True


def test_an_empty_params_file_is_an_error(tmp_path):
    for text in ("", "# nothing\n"):
        (tmp_path / "params.yaml").write_text(text)
        with pytest.raises(PipelineError, match=r"params.yaml is empty; restore it"):
            load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("- a\n- list\n")
    with pytest.raises(PipelineError, match=r"must be a mapping of keys to values, not a list"):
        load_params(tmp_path / "params.yaml")


def test_air_without_synthetic_images_is_an_error():
    with pytest.raises(PipelineError, match=r"method 'air' builds its auxiliary classifier from synthetic images, "
                                            r"but generate.images_per_class is 0"):
        check_method(parse_params({"method": "air", "generate": {"images_per_class": 0}}))
    assert parse_params({"method": "grip", "generate": {"images_per_class": 0}}).method == "grip"


def test_devices_that_do_not_exist_here(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(PipelineError, match=r"train.device='mps' but Apple's MPS backend is not available"):
        resolve_device("mps", "train.device")
    with pytest.raises(PipelineError, match=r"clip.device='meta': the pipeline runs on cpu, cuda or mps"):
        resolve_device("meta", "clip.device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(PipelineError, match=r"generate.device='cuda' but CUDA is not available"):
        resolve_device("cuda", "generate.device")


# --- the check stage: first, cheap, and the only door to the DAG ----------------------------------

def test_check_catches_a_typo_and_a_missing_gpu_before_any_stage_runs(project, monkeypatch):
    project(train__epoch=3)  # misspelled: the real key is train.epochs
    code, output = invoke(check)
    assert code == 2 and "train.epoch: unknown key; remove it or check its spelling" in output
    assert not Path("data").exists()

    project(train__epoch=..., train__device="cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, output = invoke(check)
    assert code == 2 and "train.device='cuda' but CUDA is not available on this machine" in output
    assert not Path("data").exists()


def test_check_fingerprints_change_only_with_an_input(project, tmp_path):
    """A folder dataset's listing: rerun without changes -> same bytes; add, resize or re-write a file
    -> new bytes. Local weights: hashed by content, so touching them alone changes nothing."""
    from PIL import Image

    root = tmp_path / "images"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for index in range(3):
            Image.new("RGB", (8, 8), (index * 40, 0, 0)).save(root / name / f"{index}.png")
    project(dataset__name="folder", dataset__root=str(root))

    def run() -> dict[str, bytes]:
        code, output = invoke(check)
        assert code == 0, output
        return {path.name: path.read_bytes() for path in sorted(Path("data/inputs").iterdir())}

    first = run()
    assert sorted(first) == ["clip.json", "dataset.json", "generator.json", "training.json"]
    listing = json.loads(first["dataset.json"])["listing"]
    assert listing["files"] == 6 and listing["bytes"] == sum(p.stat().st_size for p in root.rglob("*.png"))
    assert run() == first

    Image.new("RGB", (8, 8), (0, 0, 255)).save(root / "dog" / "3.png")
    added = run()
    assert added["dataset.json"] != first["dataset.json"] and json.loads(added["dataset.json"])["listing"]["files"] == 7
    assert added["clip.json"] == first["clip.json"] and added["generator.json"] == first["generator.json"]

    stat = (root / "cat" / "0.png").stat()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "cat" / "0.png")
    os.utime(root / "cat" / "0.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    rewritten = run()
    assert rewritten["dataset.json"] != added["dataset.json"]

    # The candidates paradigm's own file is an input too: editing it changes the fingerprint.
    sets = tmp_path / "sets.csv"
    sets.write_text("path,candidates\ncat/0.png,cat\n")
    project(method="pll", paradigm="candidates", paradigm_options__candidates_file=str(sets))
    with_sets = run()
    assert with_sets["dataset.json"] != rewritten["dataset.json"] and run() == with_sets
    sets.write_text("path,candidates\ncat/0.png,cat;dog\n")
    assert run()["dataset.json"] != with_sets["dataset.json"]

    # CoFT+'s class descriptions: a path in params, so its contents are fingerprinted for train alone.
    descriptions = tmp_path / "descriptions.json"
    descriptions.write_text(json.dumps({"cat": ["furry"], "dog": ["barks"]}))
    project(method="coft_plus", paradigm="ul", paradigm_options__candidates_file=None,
            coft__descriptions_file=str(descriptions))
    described = run()
    descriptions.write_text(json.dumps({"cat": ["furry"], "dog": ["loyal"]}))
    edited = run()
    assert edited["training.json"] != described["training.json"]
    assert {k: v for k, v in edited.items() if k != "training.json"} == \
           {k: v for k, v in described.items() if k != "training.json"}


def test_weights_are_hashed_by_content_and_remembered(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x" * 1000)
    hashes = fingerprint._ContentHashes()
    first = fingerprint.weights_fingerprint(str(weights), hashes)
    hashes.save()

    warm = fingerprint._ContentHashes()
    monkeypatch.setattr(Path, "open", lambda *a, **k: pytest.fail("a warm run must not read the weights"))
    assert fingerprint.weights_fingerprint(str(weights), warm) == first and not warm.changed
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)

    os.utime(weights)  # touched, same bytes: a new stamp, the same content hash
    assert fingerprint.weights_fingerprint(str(weights), fingerprint._ContentHashes()) == first
    weights.write_bytes(b"y" * 1000)  # retrained in place, same size
    assert fingerprint.weights_fingerprint(str(weights), fingerprint._ContentHashes())["sha256"] != first["sha256"]
    assert fingerprint.weights_fingerprint("openai", hashes) == {"location": "openai", "local": False}


# --- stages: one at a time, and filesystem faults as one line --------------------------------------

def test_a_stage_already_running_blocks_a_second_copy(project):
    lock = Path(".cache/locks/prepare.lock")
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.write("4242")
        handle.flush()
        code, output = invoke(prepare)
    assert code == 2 and "stage prepare is already running in this workspace (pid 4242)" in output
    assert not Path("data").exists()
    code, output = invoke(prepare)  # the holder is gone: the lock went with it
    assert code == 0, output
    assert Path("data/prepared/manifest.parquet").exists()


def test_an_unwritable_output_folder_is_one_line(project, monkeypatch):
    """As root a read-only folder is still writable, so the fault is injected where the write happens."""
    import tempfile

    original = tempfile.mkstemp

    def refuse(*args, dir=None, **kwargs):
        if str(dir).startswith("data"):
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return original(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    code, output = invoke(prepare)
    assert code == 2
    assert "error in stage prepare: cannot write data/prepared: Permission denied; make the folder writable" in output
    assert "Traceback" not in output


def test_a_refused_read_is_named_a_read_and_a_refused_write_a_write(tmp_path, monkeypatch, capsys):
    """Issue 28 item 22 for every stage: PermissionError does not say which was refused, so the existing
    path's own permissions decide (as root nothing is unreadable, so os.access is faked for one folder)."""
    from stages import _cli

    secret = tmp_path / "secret"
    secret.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_cli.os, "access", lambda path, mode: Path(path) != secret)
    for path, said in ((secret, f"cannot read {secret}: Permission denied; make it readable"),
                       (tmp_path / "new" / "file", f"cannot write {tmp_path}/new/file: Permission denied; make "
                                                   "the folder writable")):
        with pytest.raises(SystemExit) as stopped, _cli.stage("probe"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        assert stopped.value.code == 2
        assert f"error in stage probe: {said}" in capsys.readouterr().err


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_artifacts_respect_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        write_json(tmp_path / "metrics.json", {"accuracy": 0.5})
    finally:
        os.umask(previous)
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == mode


# --- queued experiments: one generation cache, and the cores shared -------------------------------

def test_temporary_experiment_workspaces_share_the_project_root(tmp_path):
    from pipeline.core.paths import shared_root

    project = tmp_path / "project"
    queued = project / ".dvc" / "tmp" / "exps" / "standalone" / "tmpab12"
    queued.mkdir(parents=True)
    assert shared_root(queued) == project.resolve()
    assert shared_root(project) == project.resolve()


def test_running_stages_split_the_cores(tmp_path, monkeypatch):
    from pipeline.runtime.devices import CoreShare

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("PIPELINE_THREADS", raising=False)
    threads = torch.get_num_threads()
    try:
        first = CoreShare(tmp_path / "running")
        first.cores = 4
        with first:
            assert first.running() == 1 and torch.get_num_threads() == 4
            second = CoreShare(tmp_path / "running")
            second.cores = 4
            with second:
                assert second.running() == 2 and torch.get_num_threads() == 2
                first.rebalance()
                assert torch.get_num_threads() == 2
            (tmp_path / "running" / "999999-dead.lock").write_text("")  # a killed stage's file, unlocked
            assert first.running() == 1 and not (tmp_path / "running" / "999999-dead.lock").exists()
            first.rebalance()
            assert torch.get_num_threads() == 4
        monkeypatch.setenv("PIPELINE_THREADS", "3")
        assert CoreShare(tmp_path / "running").threads() == 3
    finally:
        torch.set_num_threads(threads)
