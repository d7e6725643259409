"""The check stage on inputs outside the repo that a user gets wrong (issue 28): a symlink loop or an
unreadable folder in the dataset root, a descriptions file that is missing or malformed, and small
files edited in place with their size and mtime kept. Each fault is one line and exit status 2, with
no fingerprint written."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pipeline.check import fingerprint
from pipeline.config.params import parse_params
from pipeline.core.errors import PipelineError
from pipeline.training.learners import LearnerSpec, make_learner_factory
from stages import check

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def images(tmp_path):
    """`images/{cat,dog}/{0,1,2}.png`."""
    root = tmp_path / "images"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for index in range(3):
            Image.new("RGB", (8, 8), (index * 40, 0, 0)).save(root / name / f"{index}.png")
    return root


def invoke_check():
    result = CliRunner().invoke(check.app, [])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes is not None else "")


def refused(expected: str) -> str:
    code, output = invoke_check()
    assert code == 2, output
    assert expected in output and "Traceback" not in output and len(set(output.strip().splitlines())) == 1, output
    assert not Path("data/inputs").exists()
    return output


# --- item 11: symlinks in a folder dataset --------------------------------------------------------

def test_a_symlink_loop_in_the_dataset_root_is_named_not_an_eloop_traceback(project, images):
    project(dataset__name="folder", dataset__root=str(images))
    (images / "cat" / "again").symlink_to(images)
    refused(f"error in stage check: dataset.root: {images}/cat/again links back to {images}, a folder above it, "
            "so the folder never ends; remove the link or point it outside the dataset")


def test_two_links_that_lead_to_each_other_are_a_loop_too(project, images):
    project(dataset__name="folder", dataset__root=str(images))
    (images / "cat" / "to_dog").symlink_to(images / "dog")
    (images / "dog" / "to_cat").symlink_to(images / "cat")
    refused("links back to")


def test_a_link_to_itself_is_a_loop(project, images):
    project(dataset__name="folder", dataset__root=str(images))
    (images / "dog" / "self").symlink_to(images / "dog" / "self")
    refused(f"dataset.root: {images}/dog/self is a symbolic link that never resolves, so the folder never ends")


def test_a_symlinked_class_folder_elsewhere_is_followed(project, images, tmp_path):
    """Not a loop: a class folder that lives outside the root (or twice inside it) is listed."""
    elsewhere = tmp_path / "bird_images"
    elsewhere.mkdir()
    for index in range(2):
        Image.new("RGB", (8, 8), (0, index * 40, 0)).save(elsewhere / f"{index}.png")
    (images / "bird").symlink_to(elsewhere)
    (images / "cat" / "also_bird").symlink_to(elsewhere)
    project(dataset__name="folder", dataset__root=str(images))
    code, output = invoke_check()
    assert code == 0, output
    assert json.loads(Path("data/inputs/dataset.json").read_text())["listing"]["files"] == 6 + 2 + 2


# --- item 22: an unreadable dataset folder is unreadable, not unwritable ----------------------------

@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 folder, so the fault cannot happen "
                                             "(test_a_folder_that_refuses_listing_is_named_as_unreadable covers the path)")
def test_a_chmod_000_dataset_folder_is_reported_as_unreadable(project, images):
    project(dataset__name="folder", dataset__root=str(images))
    (images / "cat").chmod(0)
    try:
        refused(f"error in stage check: cannot read the dataset folder {images}/cat: permission denied; make it "
                f"readable (chmod -R u+rX {images}/cat)")
    finally:
        (images / "cat").chmod(0o755)


def test_a_folder_that_refuses_listing_is_named_as_unreadable(project, images, monkeypatch):
    """As root chmod 000 blocks nothing, so the kernel's EACCES is injected where the walk lists the folder."""
    original = os.scandir

    def refuse(path):
        if path == str(images / "dog"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return original(path)

    monkeypatch.setattr(fingerprint.os, "scandir", refuse)
    project(dataset__name="folder", dataset__root=str(images))
    assert "writ" not in refused(f"cannot read the dataset folder {images}/dog: permission denied")


# --- item 21: the descriptions file, checked by check, read only by the method that uses it --------

def test_a_missing_descriptions_file_stops_check_for_coft_plus(project):
    project(method="coft_plus", coft__descriptions_file="/missing.json")
    refused("error in stage check: coft.descriptions_file='/missing.json' does not exist; give a JSON file")


@pytest.mark.parametrize("text, expected", [
    ("{'cat': ['furry']}", "is not valid JSON (Expecting property name enclosed in double quotes"),
    ('["furry"]', "must be a JSON object mapping each class name to a list of descriptions"),
    ('{"cat": ["furry"], "dog": "barks"}', "the descriptions of 'dog' must be a list of non-empty strings"),
    ('{"cat": [""]}', "the descriptions of 'cat' must be a list of non-empty strings"),
])
def test_a_malformed_descriptions_file_stops_check(project, tmp_path, text, expected):
    path = tmp_path / "descriptions.json"
    path.write_text(text)
    project(method="coft_plus", coft__descriptions_file=str(path))
    refused(expected)


def test_a_method_without_descriptions_ignores_the_file(project):
    """GRIP and plain CoFT never put descriptions into a prompt: check passes and records the name only."""
    for method in ("grip", "coft"):
        project(method=method, coft__descriptions_file="/missing.json")
        code, output = invoke_check()
        assert code == 0, output
        assert json.loads(Path("data/inputs/training.json").read_text()) == {"descriptions_file": "/missing.json"}


def test_coft_plus_records_the_descriptions_hash(project, tmp_path):
    path = tmp_path / "descriptions.json"
    path.write_text('{"cat": ["furry"]}')
    project(method="coft_plus", coft__descriptions_file=str(path))
    code, output = invoke_check()
    assert code == 0, output
    assert json.loads(Path("data/inputs/training.json").read_text()) == {
        "descriptions_file": str(path), "sha256": hashlib.sha256(b'{"cat": ["furry"]}').hexdigest()}


NAMES = ["red circle", "blue circle"]


def test_train_reads_the_descriptions_only_for_a_prompt_that_takes_them(tiny_clip, tmp_path):
    """grip with `coft.descriptions_file: /missing.json` builds its learner; CoFT+'s spec with
    descriptions is the first to read the file (one prompt per class, plus one per description)."""
    weights, cpu = np.zeros((len(NAMES), 8), np.float32), torch.device("cpu")
    grip = parse_params({"method": "grip", "coft": {"descriptions_file": "/missing.json"}})
    assert make_learner_factory(grip, tiny_clip, NAMES, weights, None, cpu)(0).tokens.shape[0] == 2

    plus = parse_params({"method": "coft_plus", "coft": {"descriptions_file": "/missing.json"}})
    factory = make_learner_factory(plus, tiny_clip, NAMES, weights, None, cpu)
    assert factory(0, LearnerSpec(negative_prompt=True)).positive.tokens.shape[0] == 2
    with pytest.raises(PipelineError, match=r"coft.descriptions_file='/missing.json' does not exist"):
        factory(0, LearnerSpec(negative_prompt=True, descriptions=True))

    path = tmp_path / "descriptions.json"
    path.write_text(json.dumps({"red circle": ["which is round", "coloured red"], "blue circle": ["blue"]}))
    plus = parse_params({"method": "coft_plus", "coft": {"descriptions_file": str(path)}})
    factory = make_learner_factory(plus, tiny_clip, NAMES, weights, None, cpu)
    assert factory(0, LearnerSpec(negative_prompt=True, descriptions=True)).positive.tokens.shape[0] == 2 + 3


# --- item 24: small files are re-hashed on every check ---------------------------------------------

def _rewrite_keeping_size_and_mtime(path: Path, text: str) -> None:
    before = path.stat()
    assert len(text.encode()) == before.st_size
    path.write_text(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)


def test_a_candidates_file_rewritten_with_its_size_and_mtime_kept_changes_the_fingerprint(project, tmp_path):
    sets = tmp_path / "sets.csv"
    sets.write_text("path,candidates\ncat/0.png,cat;dog\n")
    project(method="pll", paradigm="candidates", paradigm_options__candidates_file=str(sets))
    code, output = invoke_check()
    assert code == 0, output
    first = json.loads(Path("data/inputs/dataset.json").read_text())
    assert first["candidates_file"] == hashlib.sha256(sets.read_bytes()).hexdigest()

    _rewrite_keeping_size_and_mtime(sets, "path,candidates\ncat/0.png,dog;cat\n")
    code, output = invoke_check()
    assert code == 0, output
    second = json.loads(Path("data/inputs/dataset.json").read_text())
    assert second["candidates_file"] == hashlib.sha256(sets.read_bytes()).hexdigest() != first["candidates_file"]


def test_a_descriptions_file_rewritten_with_its_size_and_mtime_kept_changes_the_fingerprint(project, tmp_path):
    path = tmp_path / "descriptions.json"
    path.write_text('{"cat": ["furry"]}')
    project(method="coft_plus", coft__descriptions_file=str(path))
    code, output = invoke_check()
    assert code == 0, output
    first = Path("data/inputs/training.json").read_bytes()

    _rewrite_keeping_size_and_mtime(path, '{"cat": ["silky"]}')
    code, output = invoke_check()
    assert code == 0, output
    assert json.loads(Path("data/inputs/training.json").read_text())["sha256"] == \
           hashlib.sha256(b'{"cat": ["silky"]}').hexdigest() != json.loads(first)["sha256"]
