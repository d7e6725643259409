import re

import numpy as np
import pytest

from pipeline.config.params import DatasetParams, ParadigmParams, WorldParams
from pipeline.core.errors import PipelineError
from pipeline.datasets.images import open_image
from pipeline.datasets.loading import load_dataset
from pipeline.datasets.paradigms import prepare, seen_classes
from pipeline.demo.world import class_names

DEMO = DatasetParams(name="demo", demo=WorldParams(images_per_class=6, test_images_per_class=3))


def test_trzsl_split_of_the_project_protocol_is_numpys_generator():
    options = ParadigmParams()
    expected = np.random.default_rng(500).choice(24, int(0.62 * 24), replace=False)
    np.testing.assert_array_equal(seen_classes(24, options), expected)
    assert len(seen_classes(102, options)) == 63


# GRIP's published split files, data/data_splits/{EuroSAT,Flowers102}.json "split_500" "seen"
# (BatsResearch/menghini-neurips23-code @ b387624c): EuroSAT as indices, Flowers102 as its first names.
GRIP_EUROSAT_SEEN = [4, 2, 9, 3, 0, 5]
GRIP_FLOWERS_SEEN_START = ["canna lily", "petunia", "silverbush", "prince of wales feathers", "pincushion flower",
                           "bird of paradise", "frangipani", "hard-leaved pocket orchid", "bearded iris",
                           "passion flower"]


@pytest.mark.parametrize("protocol", ["grip", "cpl"])
def test_trzsl_split_of_the_reference_protocols_reproduces_grips_published_split_files(protocol):
    from pipeline.datasets.benchmark import shipped_class_names

    options = ParadigmParams()
    assert seen_classes(10, options, protocol).tolist() == GRIP_EUROSAT_SEEN
    flowers = shipped_class_names("flowers102")
    seen = seen_classes(len(flowers), options, protocol)
    assert len(seen) == 63 and len(set(seen.tolist())) == 63
    assert [flowers[i] for i in seen[:10]] == GRIP_FLOWERS_SEEN_START
    assert set(seen.tolist()) != set(seen_classes(102, options).tolist())  # the project's draw differs


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


@pytest.mark.parametrize(("name", "message"), [
    ("food101", r"Food101 not found under dataset.root=.*dataset.download: true"),
    ("flowers102", r"no setid.mat under dataset.root=.*flowers-102/jpg/image_00001.jpg.*dataset.download: true"),
    ("resisc45", r"no airplane under dataset.root=.*NWPU-RESISC45/airplane/airplane_001.jpg(?!.*download)"),
])
def test_a_missing_dataset_says_where_its_files_go(tmp_path, name, message):
    with pytest.raises(PipelineError, match=re.compile(message, re.S)):
        load_dataset(DatasetParams(name=name, root=str(tmp_path / "nowhere")))


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
