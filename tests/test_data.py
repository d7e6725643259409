import numpy as np
import pytest

from pipeline.datasets import load_dataset
from pipeline.datasets.images import open_image
from pipeline.datasets.paradigms import prepare, seen_classes
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
    ul, names, _ = prepare(DEMO, "ul", options, seed=0)
    assert len(names) == 24 and names == class_names()
    assert not ul["labeled"].any() and ul["seen"].all()
    assert (ul["split"] == "train").sum() == 144 and (ul["split"] == "test").sum() == 72

    ssl, _, _ = prepare(DEMO, "ssl", options, seed=0)
    labeled = ssl[ssl["labeled"]]
    assert (labeled["split"] == "train").all()
    assert labeled.groupby("label").size().tolist() == [2] * 24
    again, _, _ = prepare(DEMO, "ssl", options, seed=0)
    other, _, _ = prepare(DEMO, "ssl", options, seed=1)
    assert again["labeled"].equals(ssl["labeled"]) and not other["labeled"].equals(ssl["labeled"])

    assert prepare(DEMO, "ssl", options, seed=0)[2].empty  # candidate sets only under their paradigm

    trzsl, _, _ = prepare(DEMO, "trzsl", options, seed=0)
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


def test_torchvision_missing_root_says_how_to_fix(tmp_path):
    with pytest.raises(PipelineError, match=r"Flowers102 not found under dataset.root=.*dataset.download: true"):
        load_dataset(DatasetParams(name="flowers102", root=str(tmp_path / "nowhere")))


def test_candidates_paradigm_draws_one_set_per_training_image_from_its_own_seed():
    options = ParadigmParams(partial_rate=0.5, candidate_seed=3)
    manifest, _, sets = prepare(DEMO, "candidates", options, seed=0)
    train = manifest[manifest["split"] == "train"]
    assert not manifest["labeled"].any() and sets["id"].tolist() == train["id"].tolist()
    assert all(label in c for c, label in zip(sets["candidates"], train["label"]))
    assert all(list(c) == sorted(set(c)) for c in sets["candidates"])
    assert sets["candidates"].map(len).mean() > 5
    assert prepare(DEMO, "candidates", options, seed=1)[2].equals(sets)  # the training seed does not move them
    other = prepare(DEMO, "candidates", ParadigmParams(partial_rate=0.5, candidate_seed=4), seed=0)[2]
    assert not other["candidates"].equals(sets["candidates"])
