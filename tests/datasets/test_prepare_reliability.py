"""The prepare stage on inputs a user gets wrong (issue 28, round 2): symlinked image folders, a split
that empties a class, a huge image in the contact sheet, a malformed candidates file, a download
without a network, candidate paths under a relative, symlinked or Unicode-decomposed root. Each
fault is one line and exit status 2, and the last run's outputs stay as they were."""

from __future__ import annotations

import errno
import socket
import unicodedata
import urllib.request
from pathlib import Path
from urllib.error import URLError

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from benchmark_fakes import fake_flowers
from pipeline.check import fingerprint
from pipeline.config.params import DatasetParams, ParadigmParams
from pipeline.core.artifacts import read_table
from pipeline.core.errors import PipelineError
from pipeline.core.plots import CELL, LABEL_WIDTH
from pipeline.datasets import paradigms
from pipeline.datasets.loading import load_dataset
from pipeline.datasets.paradigms import prepare as prepare_dataset
from pipeline.datasets.source import Dataset
from stages import prepare

OUTPUTS = ("data/prepared/manifest.parquet", "data/prepared/candidates.parquet", "data/prepared/classes.json",
           "plots/train_images.png")


def _images(folder: Path, count: int, size=(8, 8), start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(start, start + count):
        Image.new("RGB", size, (index * 40 % 256, 0, 0)).save(folder / f"{index}.png")


def invoke():
    result = CliRunner().invoke(prepare.app, [])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes is not None else "")


def refused(expected: str) -> str:
    code, output = invoke()
    assert code == 2, output
    assert expected in output and "Traceback" not in output and len(set(output.strip().splitlines())) == 1, output
    return output


def outputs() -> dict[str, bytes]:
    return {path: Path(path).read_bytes() for path in OUTPUTS}


# --- item 5: symlinked folders inside a class ------------------------------------------------------

def test_images_in_a_symlinked_subfolder_are_counted_as_check_counts_them(project, tmp_path):
    root = tmp_path / "images"
    _images(root / "cat", 2)
    _images(root / "dog", 2)
    _images(tmp_path / "elsewhere" / "more", 4, start=2)
    (root / "cat" / "more").symlink_to(tmp_path / "elsewhere" / "more")   # ln -s /elsewhere/more ROOT/cat/more
    project(dataset__name="folder", dataset__root=str(root))
    assert invoke()[0] == 0
    manifest, _ = read_table("data/prepared/manifest.parquet")
    assert len(manifest) == fingerprint.folder_listing(root)["files"] == 8
    assert (manifest["label"] == 0).sum() == 6
    linked = sorted(i.split("/", 1)[1] for i in manifest["id"] if "/more/" in i)
    assert linked == [f"cat/more/{i}.png" for i in range(2, 6)]
    assert all(path.startswith(str(root / "cat" / "more")) for path in manifest["path"] if "/more/" in path)


def test_a_symlink_loop_inside_a_class_is_one_line_naming_the_link(tmp_path):
    root = tmp_path / "images"
    _images(root / "cat", 2)
    _images(root / "dog", 2)
    (root / "cat" / "again").symlink_to(root)
    with pytest.raises(PipelineError) as error:
        load_dataset(DatasetParams(name="folder", root=str(root)))
    assert str(error.value) == (f"dataset.root: {root}/cat/again links back to {root}, a folder above it, so the "
                                "folder never ends; remove the link or point it outside the dataset")
    (root / "cat" / "again").unlink()
    (root / "cat" / "self").symlink_to(root / "cat" / "self")
    with pytest.raises(PipelineError, match=rf"{root}/cat/self is a symbolic link that never resolves"):
        load_dataset(DatasetParams(name="folder", root=str(root)))


# --- item 6: a split that leaves a class without training (or test) images -------------------------

def test_a_test_fraction_that_leaves_no_training_image_is_refused_naming_the_class(project, tmp_path):
    root = tmp_path / "images"
    for name in ("cat", "dog"):
        _images(root / name, 4)
    project(dataset__name="folder", dataset__root=str(root), dataset__test_fraction=0.9)
    refused("error in stage prepare: class 'cat' gets 0 training and 4 test image(s) of 4; every class needs both: "
            "lower dataset.test_fraction (now 0.9) below 0.875, or add images to it")
    assert not Path("data").exists() and not Path("plots").exists()
    project(dataset__test_fraction=0.8)   # round(3.2) = 3 test images, 1 for training
    assert invoke()[0] == 0


def test_a_split_that_leaves_no_test_image_is_refused(tmp_path):
    frame = pd.DataFrame({"id": ["a", "b", "c"], "path": None, "image": None, "split": ["train", "test", "train"],
                          "label": [0, 0, 1]})
    with pytest.raises(PipelineError, match=r"^class 'dog' gets 1 training and 0 test image\(s\) of 1; every class "
                                            r"needs both: add images to it \(each class needs at least 2\)$"):
        paradigms._check_both_splits(Dataset(frame, ["cat", "dog"]), None)


# --- item 9: the contact sheet ----------------------------------------------------------------------

def test_a_huge_image_gets_a_fixed_size_thumbnail_in_the_contact_sheet(project, tmp_path):
    root = tmp_path / "images"
    (root / "train" / "cat").mkdir(parents=True)
    Image.new("1", (10000, 10000), 0).save(root / "train" / "cat" / "0.png")   # ~12 KB on disk, 10^8 pixels
    _images(root / "train" / "cat", 1, start=1)
    _images(root / "train" / "dog", 2, size=(300, 100))
    for name in ("cat", "dog"):
        _images(root / "test" / name, 1)
    project(dataset__name="folder", dataset__root=str(root))
    assert invoke()[0] == 0
    with Image.open("plots/train_images.png") as sheet:
        assert sheet.size == (LABEL_WIDTH + 2 * CELL, 2 * CELL)   # not 20170 x 20000 from the first image
        centre = CELL // 2
        assert sheet.getpixel((LABEL_WIDTH + centre, centre)) == (0, 0, 0)              # the huge black image
        assert sheet.getpixel((LABEL_WIDTH + centre, CELL + centre)) == (0, 0, 0)       # 300 x 100 -> 64 x 21,
        assert sheet.getpixel((LABEL_WIDTH + centre, CELL + 10)) == (255, 255, 255)     # centred in its cell
    assert paradigms.open_thumbnail(str(root / "train" / "dog" / "0.png"), None, CELL).size == (64, 21)


def test_a_failing_contact_sheet_or_write_replaces_none_of_the_last_outputs(project, monkeypatch):
    assert invoke()[0] == 0
    before = outputs()
    project(dataset__demo__seed=7)   # a different world: every output would change

    def out_of_memory(*args):
        raise MemoryError
    with monkeypatch.context() as patch:
        patch.setattr(paradigms, "open_thumbnail", out_of_memory)
        assert isinstance(CliRunner().invoke(prepare.app, []).exception, MemoryError)
    assert outputs() == before

    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device", "data/prepared/classes.json")
    with monkeypatch.context() as patch:
        patch.setattr(prepare, "write_json", disk_full)   # after the manifest and candidates are written
        refused("no space left on the device while writing data/prepared/classes.json")
    assert outputs() == before
    assert sorted(p.name for p in Path("data/prepared").iterdir()) == ["candidates.parquet", "classes.json",
                                                                       "manifest.parquet"]
    assert [p.name for p in Path("plots").iterdir()] == ["train_images.png"]
    assert invoke()[0] == 0 and outputs() != before


# --- item 13: a candidates column of plain numbers --------------------------------------------------

def test_a_parquet_candidates_column_of_numbers_is_one_line_naming_the_column(project, tmp_path):
    project(method="pll", paradigm="candidates")
    assert invoke()[0] == 0
    manifest, _ = read_table("data/prepared/manifest.parquet")
    train = manifest.loc[manifest["split"] == "train", "id"].tolist()
    sets = tmp_path / "sets.parquet"
    pd.DataFrame({"path": train, "candidates": range(len(train))}).to_parquet(sets)
    project(paradigm_options__candidates_file=str(sets))
    refused(f"error in stage prepare: {sets} row 1 ('{train[0]}'): column candidates holds int 0; it needs a list "
            "of class names per row (or one string of names separated by ';')")
    pd.DataFrame({"path": train, "candidates": [["red circle"]] * len(train)}).to_parquet(sets)
    assert invoke()[0] == 0


# --- item 15: a download without a network ----------------------------------------------------------

@pytest.mark.parametrize("existing", [False, True])
def test_a_download_without_network_is_one_line_and_removes_only_what_it_created(project, tmp_path, monkeypatch,
                                                                                 existing):
    def offline(*args, **kwargs):
        raise URLError(socket.gaierror(-3, "Temporary failure in name resolution"))
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    root = tmp_path / "datasets" / "flowers"
    if existing:
        root.mkdir(parents=True)
        (root / "notes.txt").write_text("mine")
    project(dataset__name="flowers102", dataset__root=str(root), dataset__download=True)
    refused(f"error in stage prepare: dataset.download: cannot download flowers102 ([Errno -3] Temporary failure in "
            f"name resolution); no network? Download it yourself to {root} and set dataset.download: false")
    if existing:
        assert [p.name for p in root.iterdir()] == ["notes.txt"]   # the empty flowers-102/ is gone, the rest kept
    else:
        assert not (tmp_path / "datasets").exists()
    assert not Path("data").exists()


# --- item 20: candidate paths under a relative, symlinked or decomposed-Unicode root ----------------

@pytest.mark.parametrize("given", ["relative", "symlink"])
def test_candidate_paths_match_a_benchmark_under_a_relative_or_symlinked_root(tmp_path, monkeypatch, given):
    fake_flowers(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    root = "real"
    if given == "symlink":
        (tmp_path / "link").symlink_to(tmp_path / "real")
        root = str(tmp_path / "link")
    sets = tmp_path / "sets.csv"
    sets.write_text("path,candidates\n" + "".join(f"flowers-102/jpg/image_{i:05d}.jpg,pink primrose;hard-leaved "
                                                  "pocket orchid\n" for i in range(1, 205)))
    _, names, candidates = prepare_dataset(DatasetParams(name="flowers102", root=root), "candidates",
                                           ParadigmParams(candidates_file=str(sets)), 0)
    assert len(candidates) == 204 and candidates["candidates"].map(list).tolist() == [[0, 1]] * 204
    assert names[:2] == ["pink primrose", "hard-leaved pocket orchid"]


def test_an_nfc_candidates_file_matches_nfd_file_and_folder_names(tmp_path):
    cafe = unicodedata.normalize("NFD", "café")
    for split in ("train", "test"):
        _images(tmp_path / "images" / split / "dog", 1)
        (tmp_path / "images" / split / cafe).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "images" / split / cafe / unicodedata.normalize("NFD", "bébé.png"))
    sets = tmp_path / "sets.csv"
    sets.write_text("path,candidates\ntrain/café/bébé.png,café;dog\ntrain/dog/0.png,dog\n", encoding="utf-8")
    assert unicodedata.is_normalized("NFC", sets.read_text())
    manifest, names, candidates = prepare_dataset(
        DatasetParams(name="folder", root=str(tmp_path / "images")), "candidates",
        ParadigmParams(candidates_file=str(sets)), 0)
    assert [unicodedata.normalize("NFC", name) for name in names] == ["café", "dog"]
    assert dict(zip(candidates["id"], candidates["candidates"].map(list))) == {
        f"train/{cafe}/{unicodedata.normalize('NFD', 'bébé.png')}": [0, 1], "train/dog/0.png": [1]}
