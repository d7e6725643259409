"""The folder source: layouts, ids, decoding, image modes, skipped files, class names; errors name the culprit."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from pipeline.config.params import DatasetParams
from pipeline.core.errors import PipelineError
from pipeline.datasets.folder import _check_unique_ids
from pipeline.datasets.images import open_image
from pipeline.datasets.loading import load_dataset

ROOT = Path(__file__).resolve().parents[2]


def _folder(root: Path, classes, per_class=3, name="{i}.png"):
    for cls in classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / cls / name.format(i=i))


def _load(root: Path, **options):
    return load_dataset(DatasetParams(name="folder", root=str(root), **options))


def _split_counts(dataset) -> dict:
    return dataset.frame.groupby("split").size().to_dict()


def test_class_folders_are_split_by_test_fraction_and_named_by_the_class_map(tmp_path):
    _folder(tmp_path / "flat", ["annual_crop", "forest"], per_class=4)
    mapping = tmp_path / "names.json"
    mapping.write_text(json.dumps({"annual_crop": "annual crop land", "forest": "forest"}))
    dataset = _load(tmp_path / "flat", class_names_file=str(mapping))
    assert dataset.class_names == ["annual crop land", "forest"]
    assert _split_counts(dataset) == {"test": 4, "train": 4}
    ids = dataset.frame["id"].tolist()
    assert all(i.startswith(f"{split}/") for i, split in zip(ids, dataset.frame["split"]))
    assert sorted(i.split("/", 1)[1] for i in ids) == [f"{c}/{n}.png" for c in ("annual_crop", "forest")
                                                       for n in range(4)]


@pytest.mark.parametrize(("splits", "counts", "logged"), [
    ({"train": 3, "test": 1}, {"train": 6, "test": 2}, None),
    ({"train": 3, "val": 2}, {"train": 6, "test": 4}, "no test folder, so val is the test split"),
    ({"Train": 3, "Validation": 2}, {"train": 6, "test": 4}, "no test folder, so Validation is the test split"),
    ({"train": 3, "val": 2, "test": 1}, {"train": 6, "test": 2},
     "using train for training and test for testing; val is ignored"),
])
def test_split_layouts(tmp_path, caplog, splits, counts, logged):
    for split, per_class in splits.items():
        _folder(tmp_path / split, ["a_b", "c"], per_class=per_class)
    caplog.set_level(logging.INFO, logger="pipeline.datasets.folder")
    dataset = _load(tmp_path)
    assert dataset.class_names == ["a b", "c"]
    assert _split_counts(dataset) == counts
    test_folder = "test" if "test" in splits else next(s for s in splits if s.lower() != "train")
    test_paths = dataset.frame.loc[dataset.frame["split"] == "test", "path"]
    assert {Path(p).parent.parent.name for p in test_paths} == {test_folder}
    assert dataset.frame.loc[dataset.frame["split"] == "test", "id"].str.startswith("test/").all()
    if logged:
        assert logged in caplog.text


@pytest.mark.parametrize("folders", [
    ["train"],
    ["train", "validation", "cat"],
    ["val", "test"],
    ["train", "val", "valid"],
])
def test_unrecognised_split_layouts_are_errors_that_list_the_folders(tmp_path, folders):
    for folder in folders:
        _folder(tmp_path / folder, ["cat"])
    with pytest.raises(PipelineError) as error:
        _load(tmp_path)
    message = str(error.value)
    assert f"top-level folders {sorted(folders)}" in message
    assert "train/ + test/, train/ + val/, or train/ + val/ + test/" in message


def test_folder_errors_name_the_problem_and_the_fix(tmp_path):
    with pytest.raises(PipelineError, match="is not a folder"):
        _load(tmp_path / "missing")

    _folder(tmp_path / "mismatch" / "train", ["cat", "dog"])
    _folder(tmp_path / "mismatch" / "test", ["cat", "fox"])
    with pytest.raises(PipelineError, match=r"only in train \['dog'\], only in test \['fox'\].*same class folders"):
        _load(tmp_path / "mismatch")

    _folder(tmp_path / "empty" / "train", ["cat", "dog"])
    _folder(tmp_path / "empty" / "val", ["cat"])
    (tmp_path / "empty" / "val" / "dog").mkdir()
    with pytest.raises(PipelineError, match=r"class folder \S*empty/val/dog holds no images; every class needs test"):
        _load(tmp_path / "empty")

    _folder(tmp_path / "mapped", ["cat", "dog"])
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"cat": "cat", "wolf": "wolf"}))
    with pytest.raises(PipelineError, match=r"no name for \['dog'\].*no class \['wolf'\]"):
        _load(tmp_path / "mapped", class_names_file=str(mapping))


def test_nested_files_with_repeated_names_get_ids_from_their_relative_path(tmp_path):
    for sub in ("a", "b"):
        _folder(tmp_path / "train" / "cat", [sub], per_class=2)
        _folder(tmp_path / "test" / "cat", [sub], per_class=1)
    dataset = _load(tmp_path)
    assert sorted(dataset.frame["id"]) == ["test/cat/a/0.png", "test/cat/b/0.png", "train/cat/a/0.png",
                                           "train/cat/a/1.png", "train/cat/b/0.png", "train/cat/b/1.png"]
    with pytest.raises(PipelineError, match=r"1 manifest id\(s\) repeat: train/cat/1.png"):
        _check_unique_ids(pd.DataFrame({"id": ["train/cat/1.png", "train/cat/1.png", "test/cat/1.png"]}))


def test_every_image_is_decoded_so_a_truncated_jpeg_is_named(tmp_path):
    _folder(tmp_path, ["cat", "dog"])
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buffer, "JPEG")
    truncated = tmp_path / "dog" / "cut.jpg"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with Image.open(truncated) as image:
        image.verify()  # the header check the folder source used to rely on passes
    (tmp_path / "cat" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(PipelineError) as error:
        _load(tmp_path)
    message = str(error.value)
    assert message.startswith("2 image(s) cannot be read: ")
    assert "/cat/bad.png (not an image format Pillow reads); " in message
    assert "/dog/cut.jpg (OSError: image file is truncated" in message
    assert message.endswith("Remove or replace them, then run again.")


def test_many_bad_images_are_named_first_few_and_counted(tmp_path):
    _folder(tmp_path, ["cat", "dog"])
    for i in range(7):
        (tmp_path / "cat" / f"bad{i}.png").write_bytes(b"not a png")
    first_five_then_count = r"^7 image\(s\) cannot be read: \S+/bad0.png .*; \S+/bad4.png [^;]*; \.\.\. \(7 in all\)\. "
    with pytest.raises(PipelineError, match=first_five_then_count):
        _load(tmp_path)


def test_unsupported_files_are_skipped_with_a_count_in_the_log(tmp_path, caplog):
    _folder(tmp_path, ["cat", "dog"])
    (tmp_path / "cat" / "notes.txt").write_text("label notes")
    Image.new("P", (8, 8)).save(tmp_path / "dog" / "anim.gif")
    (tmp_path / "dog" / ".DS_Store").write_bytes(b"\0")  # hidden: ignored, not reported
    caplog.set_level(logging.INFO, logger="pipeline.datasets.folder")
    dataset = _load(tmp_path)
    assert len(dataset.frame) == 6
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 1
    assert skipped[0].startswith("skipped 2 file(s) under ") and skipped[0].endswith(": cat/notes.txt, dog/anim.gif")


@pytest.mark.parametrize(("folders", "mapping", "clash"), [
    (["dark-red", "dark_red", "blue"], None, "'dark-red' and 'dark_red' -> 'dark red'"),
    (["cat1", "cat2", "dog"], {"cat1": "cat", "cat2": "Cat", "dog": "dog"}, "'cat1' and 'cat2' -> 'cat'"),
])
def test_two_folders_with_one_class_name_are_rejected(tmp_path, folders, mapping, clash):
    _folder(tmp_path / "images", folders)
    options = {}
    if mapping:
        (tmp_path / "names.json").write_text(json.dumps(mapping))
        options["class_names_file"] = str(tmp_path / "names.json")
    with pytest.raises(PipelineError) as error:
        _load(tmp_path / "images", **options)
    assert str(error.value).startswith(f"class folders share a class name: {clash} ")


def test_a_16_bit_gradient_is_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 64).round().astype(np.uint16).reshape(8, 8)
    Image.fromarray(values).save(tmp_path / "gradient.png")
    with Image.open(tmp_path / "gradient.png") as image:
        assert image.mode == "I;16"
    rgb = np.asarray(open_image(str(tmp_path / "gradient.png"), None)).astype(int)
    assert rgb.shape == (8, 8, 3) and (rgb == rgb[..., :1]).all()
    assert np.abs(rgb[..., 0] - values / 257).max() <= 1
    assert rgb[0, 0, 0] == 0 and rgb[4, 0, 0] == 130 and rgb[7, 7, 0] == 255


@pytest.mark.parametrize(("image", "expected"), [
    (Image.fromarray(np.array([[0, 1000, 65535]], dtype=np.int32)), [0, 4, 255]),  # 16-bit data in mode I: / 257
    (Image.fromarray(np.array([[-10, 0, 90]], dtype=np.int32)), [0, 26, 255]),  # outside 0..65535: min..max
    (Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)), [0, 128, 255]),  # F in 0..1: * 255
    (Image.fromarray(np.array([[2.0, 4.0, 6.0]], dtype=np.float32)), [0, 128, 255]),  # F otherwise: min..max
])
def test_integer_and_float_images_follow_the_documented_rule(image, expected):
    assert np.asarray(open_image(None, _tiff_bytes(image)))[0, :, 0].tolist() == expected


@pytest.mark.parametrize(("image", "expected"), [
    (Image.new("RGBA", (1, 1), (255, 0, 0, 128)), (255, 127, 127)),  # composited on white
    (Image.new("RGBA", (1, 1), (0, 0, 0, 0)), (255, 255, 255)),
    (Image.new("LA", (1, 1), (0, 64)), (191, 191, 191)),
    (Image.new("L", (1, 1), 77), (77, 77, 77)),
    (Image.new("CMYK", (1, 1), (0, 255, 255, 0)), (255, 0, 0)),
])
def test_alpha_grey_and_cmyk_images_become_the_rgb_a_viewer_shows(image, expected):
    data = _tiff_bytes(image) if image.mode == "CMYK" else _png_bytes(image)
    assert tuple(np.asarray(open_image(None, data))[0, 0].tolist()) == expected


def test_palette_transparency_is_composited_on_white(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 0, 0, 255])
    image.putpixel((1, 0), 1)
    image.save(tmp_path / "p.png", transparency=0)
    assert np.asarray(open_image(str(tmp_path / "p.png"), None)).tolist() == [[[255, 255, 255], [0, 0, 255]]]


def test_prepare_stage_writes_nothing_when_the_folder_is_bad(tmp_path, monkeypatch):
    from stages import prepare

    _folder(tmp_path / "images" / "train", ["cat"])
    monkeypatch.chdir(tmp_path)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["dataset"].update(name="folder", root=str(tmp_path / "images"))
    Path("params.yaml").write_text(yaml.safe_dump(params))
    result = CliRunner().invoke(prepare.app, [])
    assert result.exit_code == 2
    assert "has split folders, but its top-level folders ['train']" in result.output + (result.stderr or "")
    assert not Path("data").exists() and not Path("plots").exists()


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _tiff_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF")
    return buffer.getvalue()
