import numpy as np

from pipeline.auxiliary.prototypes import auxiliary_posterior, class_prototypes
from pipeline.pseudolabel.rules import fuse, grip_k, select_balanced, select_upl

# 6 images x 3 classes, hand-built so each rule's answer can be worked out on paper.
PROBS = np.array([
    [0.90, 0.05, 0.05],  # 0 -> class 0, most confident
    [0.80, 0.15, 0.05],  # 1 -> class 0
    [0.70, 0.20, 0.10],  # 2 -> class 0, third: over k=2
    [0.10, 0.60, 0.30],  # 3 -> class 1
    [0.05, 0.15, 0.80],  # 4 -> class 2
    [0.50, 0.10, 0.40],  # 5 -> class 0, least confident of class 0
])


def as_dict(selection):
    return dict(zip(selection.rows.tolist(), selection.labels.tolist()))


def test_upl_keeps_top_k_per_predicted_class_without_fallback():
    chosen = select_upl(PROBS, k=2)
    assert as_dict(chosen) == {0: 0, 1: 0, 3: 1, 4: 2}
    np.testing.assert_allclose(chosen.confidence, [0.9, 0.8, 0.6, 0.8])


def test_balanced_top_k_falls_back_and_gives_one_label_per_image():
    chosen = select_balanced(PROBS, k=2)
    # Pairs by p: (0,0) (1,0) (4,2) [then (2,0) class 0 full] (3,1) [(5,0) full] (5,2) (2,1).
    assert as_dict(chosen) == {0: 0, 1: 0, 2: 1, 3: 1, 4: 2, 5: 2}
    assert len(set(chosen.rows.tolist())) == len(chosen.rows)
    assert np.bincount(chosen.labels, minlength=3).max() <= 2
    np.testing.assert_allclose(chosen.confidence, PROBS[chosen.rows, chosen.labels])


def test_balanced_never_exceeds_k_on_random_matrices():
    rng = np.random.default_rng(0)
    for k in (1, 3, 7):
        probs = rng.dirichlet(np.ones(5), size=40)
        chosen = select_balanced(probs, k)
        assert len(chosen.rows) == min(40, 5 * k)
        assert np.bincount(chosen.labels, minlength=5).max() <= k
        assert len(np.unique(chosen.rows)) == len(chosen.rows)


def test_grip_schedule_grows_to_all_of_the_pool():
    # |U| = 1000, C = 10, 10 rounds: K_t = floor(t * 100 / 10) = 10 t, capped at 100.
    assert [grip_k(t, 1000, 10, 10) for t in range(1, 11)] == [10 * t for t in range(1, 11)]
    assert grip_k(12, 1000, 10, 10) == 100
    assert grip_k(1, 95, 10, 10) == 0 and grip_k(10, 95, 10, 10) == 9
    assert grip_k(1, 6, 3, 3) == 0 and len(select_balanced(PROBS, 0)) == 0  # K_1 = floor(6/3/3) = 0
    assert grip_k(3, 6, 3, 3) == 2


def test_air_fusion_is_a_renormalised_weighted_sum():
    p_aux = np.array([[0.0, 1.0, 0.0]] * len(PROBS))
    fused = fuse(PROBS, p_aux, weight=3.0)
    np.testing.assert_allclose(fused.sum(axis=1), 1.0)
    np.testing.assert_allclose(fused[0], [(0.9) / 4, (0.05 + 3) / 4, 0.05 / 4])
    np.testing.assert_allclose(fuse(PROBS, p_aux, 0.0), PROBS)
    # A confident auxiliary vote flips image 5 from class 0 to class 1.
    assert fused.argmax(axis=1).tolist() == [1] * 6


def test_prototypes_all_and_kept():
    features = np.array([[1, 0], [1, 0], [0.8, 0.6], [-1, 0], [0, 1], [0, 1]], dtype=np.float32)
    labels = np.array([0, 0, 0, 0, 1, 1])
    mean = class_prototypes(features, labels, n_classes=3)
    expected = features[:4].mean(axis=0) / np.linalg.norm(features[:4].mean(axis=0))
    np.testing.assert_allclose(mean[0], expected, atol=1e-6)
    np.testing.assert_allclose(mean[1], [0, 1])
    np.testing.assert_allclose(mean[2], [0, 0])  # no synthetic images: zero prototype
    knn = class_prototypes(features, labels, n_classes=3, keep=2)
    np.testing.assert_allclose(knn[0], [1, 0], atol=1e-6)  # the outlier [-1, 0] and [0.8, 0.6] drop out
    posterior = auxiliary_posterior(np.array([[0.0, 1.0]]), mean, temperature=10.0)
    np.testing.assert_allclose(posterior.sum(), 1.0)
    assert posterior.argmax() == 1
    # A class without prototype scores cos = 0: neither favoured nor excluded.
    np.testing.assert_allclose(posterior[0, 2], np.exp(0) / np.exp(10 * (mean @ [0, 1])).sum(), rtol=1e-6)


def test_paper_form_scores_the_mean_cosine_to_the_k_kept_images():
    # Class 0: four unit vectors; its mean (0.45, 0.15) normalised is ~(0.949, 0.316); cosines to it:
    # [1,0] 0.949, [0.8,0.6] 0.949, [0.6,0.8] 0.822, [-1,0] -0.949 -> K = 3 keeps the first three.
    features = np.array([[1, 0], [0.8, 0.6], [0.6, 0.8], [-1, 0], [0, 1]], dtype=np.float32)
    labels = np.array([0, 0, 0, 0, 1])
    rows = class_prototypes(features, labels, n_classes=2, keep=3, score="mean_similarity")
    x = np.array([[0.6, 0.8]], dtype=np.float32)
    # By hand: cos(x, [1,0]) = 0.6, cos(x, [0.8,0.6]) = 0.96, cos(x, [0.6,0.8]) = 1.0 -> mean 0.85333.
    np.testing.assert_allclose((x @ rows.T)[0, 0], (0.6 + 0.96 + 1.0) / 3, rtol=1e-6)
    np.testing.assert_allclose((x @ rows.T)[0, 1], 0.8, rtol=1e-6)  # one image [0, 1]: cos = 0.8
    # The prototype form renormalises that mean, so its score differs: cos(x, normalise(mean)).
    proto = class_prototypes(features, labels, n_classes=2, keep=3, score="prototype")
    mean = features[:3].mean(axis=0)
    np.testing.assert_allclose((x @ proto.T)[0, 0], x[0] @ mean / np.linalg.norm(mean), rtol=1e-6)
    assert abs((x @ proto.T)[0, 0] - (x @ rows.T)[0, 0]) > 0.05
    posterior = auxiliary_posterior(x, rows, temperature=10.0)
    np.testing.assert_allclose(posterior[0], np.exp([8.5333, 8.0]) / np.exp([8.5333, 8.0]).sum(), rtol=1e-4)
