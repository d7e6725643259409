"""Issue 28, the benchmark readers: class names bound to what the archive's own files say (items 1, 2, 7),
malformed metadata and documented roots as one-line errors or accepted (items 14, 19, 23). Each test is
the reproduction as the issue wrote it, on a fake archive (tests/benchmark_fakes.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmark_fakes import CUB_CLASSES, fake_class_folders, fake_cub, fake_dtd, fake_fgvc, fake_flowers, jpg
from pipeline.config.params import DatasetParams
from pipeline.core.errors import PipelineError
from pipeline.datasets.benchmark import shipped_class_names, shipped_folders
from pipeline.datasets.loading import load_dataset


def _load(name: str, root: Path, **options):
    return load_dataset(DatasetParams(name=name, root=str(root), **options))


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# ---- item 1: names by position -------------------------------------------------------------------------

def test_cub_with_two_classes_txt_lines_swapped_is_refused_not_relabelled(tmp_path):
    base = fake_cub(tmp_path)
    assert _load("cub", tmp_path).frame["label"].tolist() == [0, 1, 2] * 3
    (base / "classes.txt").write_text(f"1 {CUB_CLASSES[1]}\n2 {CUB_CLASSES[0]}\n3 {CUB_CLASSES[2]}\n")
    with pytest.raises(PipelineError) as error:
        _load("cub", tmp_path)
    assert (f"image 1 is in folder '{CUB_CLASSES[0]}' (images.txt) but class 1 (image_class_labels.txt) is "
            f"'{CUB_CLASSES[1]}'") in _one_line(error)


def test_dtd_with_a_class_folder_renamed_and_lists_updated_is_refused_not_shifted(tmp_path):
    base = fake_dtd(tmp_path)
    before = _load("dtd", tmp_path).frame.set_index("id")
    assert before.loc["train/blotchy/blotchy_0001.jpg", "label"] == shipped_class_names("dtd").index("blotchy")
    (base / "images" / "banded").rename(base / "images" / "zbanded")
    for listing in (base / "labels").glob("*.txt"):
        listing.write_text(listing.read_text().replace("banded/", "zbanded/"))
    with pytest.raises(PipelineError) as error:
        _load("dtd", tmp_path)
    assert "does not hold DTD's 47 class folders (unknown: ['zbanded']; missing: ['banded'])" in _one_line(error)


def test_dtd_labels_follow_folder_names_whatever_order_the_disk_lists_them(tmp_path, monkeypatch):
    fake_dtd(tmp_path)
    expected = _load("dtd", tmp_path).frame
    listed = Path.iterdir
    monkeypatch.setattr(Path, "iterdir", lambda self: reversed(sorted(listed(self))))
    assert _load("dtd", tmp_path).frame.equals(expected)


# ---- item 2: label ranges --------------------------------------------------------------------------------

def test_flowers_labels_outside_1_to_102_are_refused(tmp_path):
    from scipy.io import savemat

    base = fake_flowers(tmp_path)
    labels = np.array([(i - 1) % 102 + 1 for i in range(1, 307)])
    labels[0], labels[5] = 0, 200
    savemat(base / "imagelabels.mat", {"labels": labels[None]})
    with pytest.raises(PipelineError) as error:
        _load("flowers102", tmp_path)
    assert "gives labels outside 1..102: image 1 label 0, image 6 label 200 (2 in all)" in _one_line(error)


def test_cub_classes_txt_shorter_than_its_labels_is_refused(tmp_path):
    base = fake_cub(tmp_path)
    (base / "classes.txt").write_text(f"1 {CUB_CLASSES[0]}\n2 {CUB_CLASSES[1]}\n")
    with pytest.raises(PipelineError) as error:
        _load("cub", tmp_path)
    assert "gives image 3 class '3', but classes.txt names classes 1..2" in _one_line(error)


# ---- item 7: duplicate and empty names for every source -------------------------------------------------

def test_class_names_file_with_names_equal_but_for_case_is_refused_on_cub(tmp_path):
    fake_cub(tmp_path)
    (tmp_path / "names.txt").write_text("albatross\nAlbatross\nsooty\n")
    with pytest.raises(PipelineError) as error:
        _load("cub", tmp_path, class_names_file=str(tmp_path / "names.txt"))
    assert _one_line(error).startswith("classes share a class name: 'black footed albatross' and "
                                       "'laysan albatross' -> 'albatross'")


def test_a_class_folder_named_only_underscores_is_refused_not_named_empty(tmp_path):
    for folder in ("cat", "___"):
        for i in range(2):
            jpg(tmp_path / "images" / folder / f"{i}.jpg", 40 * i)
    with pytest.raises(PipelineError) as error:
        _load("folder", tmp_path / "images")
    assert _one_line(error).startswith("class folders '___' get an empty class name")
    (tmp_path / "names.json").write_text(json.dumps({"cat": "cat", "___": "dog"}))
    assert _load("folder", tmp_path / "images", class_names_file=str(tmp_path / "names.json")).class_names == \
        ["dog", "cat"]


# ---- item 14: malformed metadata ---------------------------------------------------------------------------

def test_a_text_file_as_imagelabels_mat_is_named(tmp_path):
    base = fake_flowers(tmp_path)
    (base / "imagelabels.mat").write_text("these are not labels\n")
    with pytest.raises(PipelineError) as error:
        _load("flowers102", tmp_path)
    assert _one_line(error).startswith(f"flowers102: cannot read labels from {base / 'imagelabels.mat'} (")


def test_setid_naming_an_image_past_the_labels_is_refused(tmp_path):
    from scipy.io import savemat

    base = fake_flowers(tmp_path)
    savemat(base / "imagelabels.mat", {"labels": np.arange(1, 7)[None]})
    savemat(base / "setid.mat", {"trnid": np.array([[1, 2, 3]]), "valid": np.array([[4, 9]]),
                                 "tstid": np.array([[5, 6]])})
    with pytest.raises(PipelineError) as error:
        _load("flowers102", tmp_path)
    assert "setid.mat valid names image 9, but imagelabels.mat labels images 1..6" in _one_line(error)


def test_a_cub_classes_txt_line_with_no_name_is_named_with_its_line(tmp_path):
    base = fake_cub(tmp_path)
    (base / "classes.txt").write_text(f"1 {CUB_CLASSES[0]}\n2\n3 {CUB_CLASSES[2]}\n")
    with pytest.raises(PipelineError) as error:
        _load("cub", tmp_path)
    assert f"{base / 'classes.txt'}:2 reads '2', not '<id> <value>'" in _one_line(error)


# ---- item 19: documented roots ------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "inner", "root_depth"), [
    ("eurosat", ("eurosat", "2750"), 1),       # root = the folder holding 2750/
    ("eurosat", ("eurosat", "2750"), 2),       # root = 2750/ itself
    ("resisc45", ("NWPU-RESISC45",), 1),
])
def test_class_folder_benchmarks_accept_a_root_inside_the_archive(tmp_path, name, inner, root_depth):
    fake_class_folders(tmp_path, name, inner, 2)
    expected = _load(name, tmp_path).frame
    inside = _load(name, tmp_path.joinpath(*inner[:root_depth])).frame
    assert inside[["label", "path"]].equals(expected[["label", "path"]])
    assert len(inside) == 2 * len(shipped_folders(name))


def test_fgvc_accepts_root_at_the_archive_folder_above_data(tmp_path):
    fake_fgvc(tmp_path)
    expected = _load("fgvc_aircraft", tmp_path).frame
    for root in (tmp_path / "fgvc-aircraft-2013b", tmp_path / "fgvc-aircraft-2013b" / "data"):
        assert _load("fgvc_aircraft", root).frame.equals(expected)


def test_a_root_with_no_layout_below_it_still_gets_the_layout_error(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(PipelineError) as error:
        _load("eurosat", tmp_path / "elsewhere")
    assert "2750/AnnualCrop" in str(error.value)


# ---- item 23: unclear messages ---------------------------------------------------------------------------------

def test_fgvc_variants_txt_missing_a_variant_names_it(tmp_path):
    base = fake_fgvc(tmp_path)
    variants = sorted(shipped_folders("fgvc_aircraft", "variants"))
    (base / "variants.txt").write_text("\n".join(v for v in variants if v != "Spitfire") + "\n")
    with pytest.raises(PipelineError) as error:
        _load("fgvc_aircraft", tmp_path)
    assert "does not list FGVC-Aircraft's 100 variants (missing: ['Spitfire'])" in _one_line(error)


def test_flowers_without_imagelabels_mat_says_which_file_is_missing(tmp_path):
    base = fake_flowers(tmp_path)
    (base / "imagelabels.mat").unlink()
    with pytest.raises(PipelineError) as error:
        _load("flowers102", tmp_path)
    assert _one_line(error).startswith(f"flowers102: {base / 'imagelabels.mat'} is missing")
