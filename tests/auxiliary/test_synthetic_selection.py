"""Which synthetic images count and how their classifier is calibrated (issue 25): class fidelity,
the fidelity filter with its per-class floor, `keep` after it, the entropy-matched temperature, and
the kept set reaching AiR's synthetic loss."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.auxiliary.prototypes import MIN_KEPT, auxiliary_posterior, class_fidelity, matched_temperature, synthetic_selection
from pipeline.pseudolabel.rules import text_posterior

# Three classes whose text weights are the unit axes; synthetic features near an axis are "seen as" it.
WEIGHTS = np.eye(3, dtype=np.float32)


def _unit(rows) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_class_fidelity_counts_the_images_the_clip_assigns_to_their_prompt_class():
    # Class 0: 3 of 4 point at axis 0; class 1: 1 of 2 at axis 1; class 2: no images.
    features = _unit([[1, 0.1, 0], [1, 0, 0.2], [0.9, 0.3, 0], [0.1, 1, 0], [0, 1, 0.1], [1, 0.2, 0]])
    labels = np.array([0, 0, 0, 0, 1, 1])
    features[3] = _unit([[0.1, 1, 0]])[0]  # image 3 (class 0) looks like class 1
    overall, per_class = class_fidelity(features, labels, WEIGHTS)
    assert overall == pytest.approx(4 / 6)
    np.testing.assert_allclose(per_class[:2], [3 / 4, 1 / 2])
    assert np.isnan(per_class[2])
    nan_overall, nan_per_class = class_fidelity(np.zeros((0, 3), np.float32), np.zeros(0, np.int64), WEIGHTS)
    assert np.isnan(nan_overall) and np.isnan(nan_per_class).all()


def test_fidelity_filter_drops_unfaithful_images_and_keeps_a_floor_per_class():
    # Class 0: 5 faithful + 1 that looks like class 1; class 1: 6 images, only 2 faithful (below the floor
    # of 4, so it keeps its 4 most class-1-probable); class 2: 2 images, none faithful (keeps both).
    class0 = [[1, 0.05 * i, 0] for i in range(5)] + [[0.2, 1, 0]]
    class1 = [[0, 1, 0], [0.1, 1, 0], [1, 0.9, 0], [1, 0.8, 0], [1, 0.1, 0], [1, 0.0, 0]]
    class2 = [[1, 0, 0.5], [0, 1, 0.4]]
    features = _unit(class0 + class1 + class2)
    labels = np.repeat([0, 1, 2], [6, 6, 2])
    assert MIN_KEPT == 4
    off = synthetic_selection(features, labels, WEIGHTS, keep=None, fidelity_filter=False)
    assert off.all()
    mask = synthetic_selection(features, labels, WEIGHTS, keep=None, fidelity_filter=True)
    assert np.flatnonzero(mask[:6]).tolist() == [0, 1, 2, 3, 4]
    # Class 1's p(class 1) ranks rows 6, 7 (faithful), then 8 (0.9 vs 1), 9 (0.8 vs 1) above 10 and 11.
    assert (np.flatnonzero(mask[6:12]) + 6).tolist() == [6, 7, 8, 9]
    assert mask[12:].all()
    # keep applies to what the filter left: class 0's 2 nearest to its mean among the 5 faithful.
    kept = synthetic_selection(features, labels, WEIGHTS, keep=2, fidelity_filter=True)
    assert kept[:6].sum() == 2 and not kept[5]


def test_matched_temperature_gives_the_auxiliary_posterior_the_text_posteriors_entropy():
    rng = np.random.default_rng(0)
    features = _unit(rng.normal(size=(200, 8)))
    text_weights, prototypes = _unit(rng.normal(size=(5, 8))), _unit(rng.normal(size=(5, 8)))
    p_text = text_posterior(features, text_weights)

    def entropy(p):  # written out here, not the library's helper, so the check is independent
        return float(-(p * np.log(np.clip(p, 1e-30, None))).sum(axis=1).mean())

    p_aux = auxiliary_posterior(features, prototypes, "auto", p_text)
    assert entropy(p_aux) == pytest.approx(entropy(p_text), rel=1e-4)
    tau = matched_temperature(features @ prototypes.T, entropy(p_text))
    np.testing.assert_allclose(p_aux, auxiliary_posterior(features, prototypes, tau), rtol=1e-6)
    # A fixed temperature is used as given, and auto without the text posterior is refused.
    assert entropy(auxiliary_posterior(features, prototypes, 1.0)) > entropy(auxiliary_posterior(features, prototypes, 50.0))
    with pytest.raises(ValueError, match="needs the text posterior"):
        auxiliary_posterior(features, prototypes, "auto")


def test_the_kept_mask_decides_which_synthetic_images_the_pool_trains_on(tmp_path, monkeypatch):
    import pandas as pd

    from pipeline.core import paths
    from pipeline.core.artifacts import save_tensors
    from pipeline.workspace import Workspace, training_pool

    monkeypatch.chdir(tmp_path)
    manifest = pd.DataFrame({"id": ["a", "b"], "split": ["train", "train"], "label": [0, 1], "labeled": False,
                             "seen": False})
    synthetic = _unit([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    workspace = Workspace(["x", "y", "z"], manifest, _unit([[1, 0, 0], [0, 1, 0]]), np.array([0, 1, 2, 0]),
                          synthetic, WEIGHTS)
    paths.PROTOTYPES.parent.mkdir(parents=True)
    save_tensors(paths.PROTOTYPES, {"prototypes": WEIGHTS, "synthetic_kept": np.array([1, 0, 1, 1], np.uint8)}, {})
    pool = training_pool(workspace, "ul", with_prototypes=True)
    assert pool.synthetic_rows.tolist() == [0, 2, 3]
    assert pool.synthetic_labels.tolist() == [0, 2, 0]
    np.testing.assert_array_equal(pool.synthetic_features, synthetic[[0, 2, 3]])
