import json

import numpy as np
import pytest
from PIL import Image

from pipeline.data import load_dataset, open_image, prepare, seen_classes
from pipeline.demo.world import class_names
from pipeline.errors import PipelineError
from pipeline.params import DatasetParams, ParadigmParams, WorldParams

DEMO = DatasetParams(name="demo", demo=WorldParams(images_per_class=6, test_images_per_class=3))


def test_trzsl_split_matches_the_reference_rule():
    options = ParadigmParams()
    expected = np.sort(np.random.default_rng(500).choice(24, int(0.62 * 24), replace=False))
    np.testing.assert_array_equal(seen_classes(24, options), expected)
    assert len(seen_classes(102, options)) == 63


def test_paradigms_mark_labels():
    options = ParadigmParams(n_label=2)
    ul, names = prepare(DEMO, "ul", options, seed=0)
    assert len(names) == 24 and names == class_names()
    assert not ul["labeled"].any() and ul["seen"].all()
    assert (ul["split"] == "train").sum() == 144 and (ul["split"] == "test").sum() == 72

    ssl, _ = prepare(DEMO, "ssl", options, seed=0)
    labeled = ssl[ssl["labeled"]]
    assert (labeled["split"] == "train").all()
    assert labeled.groupby("label").size().tolist() == [2] * 24
    again, _ = prepare(DEMO, "ssl", options, seed=0)
    other, _ = prepare(DEMO, "ssl", options, seed=1)
    assert again["labeled"].equals(ssl["labeled"]) and not other["labeled"].equals(ssl["labeled"])

    trzsl, _ = prepare(DEMO, "trzsl", options, seed=0)
    seen = set(seen_classes(24, options).tolist())
    assert trzsl["seen"].tolist() == [label in seen for label in trzsl["label"]]
    train = trzsl["split"] == "train"
    assert (trzsl.loc[train, "labeled"] == trzsl.loc[train, "seen"]).all()
    assert not trzsl.loc[~train, "labeled"].any()


def test_demo_is_rendered_in_memory_and_deterministic(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = load_dataset(DEMO).frame
    b = load_dataset(DEMO).frame
    assert a["path"].isna().all() and a["image"].equals(b["image"])
    assert open_image(None, a["image"][0]).size == (32, 32)
    assert list(tmp_path.iterdir()) == []  # no loose image files
    other = load_dataset(DatasetParams(name="demo", demo=WorldParams(seed=1, images_per_class=6,
                                                                   test_images_per_class=3))).frame
    assert not other["image"].equals(a["image"])
    train, test = a[a["split"] == "train"], a[a["split"] == "test"]
    assert not set(train["image"]) & set(test["image"])


def _folder(root, classes, per_class=3):
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / name / f"{i}.png")


def test_folder_source_with_class_map_and_presplit_folders(tmp_path):
    _folder(tmp_path / "flat", ["annual_crop", "forest"], per_class=4)
    mapping = tmp_path / "names.json"
    mapping.write_text(json.dumps({"annual_crop": "annual crop land", "forest": "forest"}))
    dataset = load_dataset(DatasetParams(name="folder", root=str(tmp_path / "flat"), class_names_file=str(mapping)))
    assert dataset.class_names == ["annual crop land", "forest"]
    assert dataset.frame.groupby("split").size().to_dict() == {"test": 4, "train": 4}

    _folder(tmp_path / "split" / "train", ["a_b", "c"])
    _folder(tmp_path / "split" / "test", ["a_b", "c"], per_class=1)
    dataset = load_dataset(DatasetParams(name="folder", root=str(tmp_path / "split")))
    assert dataset.class_names == ["a b", "c"]
    assert dataset.frame.groupby("split").size().to_dict() == {"test": 2, "train": 6}


def test_folder_errors_name_the_problem_and_the_fix(tmp_path):
    with pytest.raises(PipelineError, match="is not a folder"):
        load_dataset(DatasetParams(name="folder", root=str(tmp_path / "missing")))

    _folder(tmp_path / "mismatch" / "train", ["cat", "dog"])
    _folder(tmp_path / "mismatch" / "test", ["cat", "fox"])
    with pytest.raises(PipelineError, match=r"only in train \['dog'\], only in test \['fox'\].*same class folders"):
        load_dataset(DatasetParams(name="folder", root=str(tmp_path / "mismatch")))

    _folder(tmp_path / "broken", ["cat", "dog"])
    (tmp_path / "broken" / "dog" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(PipelineError, match=r"1 image\(s\) cannot be read: .*bad.png.*Remove or replace"):
        load_dataset(DatasetParams(name="folder", root=str(tmp_path / "broken")))

    _folder(tmp_path / "mapped", ["cat", "dog"])
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"cat": "cat", "wolf": "wolf"}))
    with pytest.raises(PipelineError, match=r"no name for folders \['dog'\].*do not exist \['wolf'\]"):
        load_dataset(DatasetParams(name="folder", root=str(tmp_path / "mapped"), class_names_file=str(mapping)))


def test_torchvision_missing_root_says_how_to_fix(tmp_path):
    with pytest.raises(PipelineError, match=r"Flowers102 not found under dataset.root=.*dataset.download: true"):
        load_dataset(DatasetParams(name="flowers102", root=str(tmp_path / "nowhere")))
