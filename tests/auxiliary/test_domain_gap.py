import numpy as np

from pipeline.auxiliary.domain_gap import domain_gap, frechet_distance


def _features(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


def test_frechet_distance_of_a_set_to_itself_is_zero():
    a = _features(200, 8, 0)
    assert abs(frechet_distance(a, a)) < 1e-8


def test_frechet_distance_grows_with_a_shift_as_the_squared_mean_difference():
    a = _features(300, 8, 1)
    distances = [frechet_distance(a, a + shift) for shift in (0.0, 0.5, 1.0, 2.0)]
    assert distances == sorted(distances) and distances[0] < 1e-8
    # Same covariance: the distance is exactly ‖Δμ‖² = d · shift².
    np.testing.assert_allclose(distances[1:], [8 * 0.25, 8 * 1.0, 8 * 4.0], rtol=1e-6)


def test_frechet_distance_sees_a_covariance_change():
    a = _features(2000, 4, 2)
    # b = 2a: Σb = 4Σa, so Tr(Σa + 4Σa − 2·(4Σa²)^½) = Tr Σa, and ‖μa − 2μa‖² = ‖μa‖².
    expected = (a.mean(axis=0) ** 2).sum() + np.trace(np.cov(a, rowvar=False))
    np.testing.assert_allclose(frechet_distance(a, 2 * a), expected, rtol=1e-8)


def test_cosine_mean_is_the_mean_over_all_pairs():
    rng = np.random.default_rng(3)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    synthetic, train, test = unit(rng.normal(size=(30, 5))), unit(rng.normal(size=(40, 5))), unit(rng.normal(size=(20, 5)))
    gap = domain_gap(synthetic, train, test)
    np.testing.assert_allclose(gap["cosine_mean"], (synthetic @ train.T).mean(), rtol=1e-10)
    np.testing.assert_allclose(gap["cosine_median"], np.median((synthetic @ train.T).mean(axis=1)), rtol=1e-10)
    assert gap["frechet_floor"] == frechet_distance(train, test)


def test_classifier_accuracies_count_argmax_hits_of_each_classifier():
    from pipeline.auxiliary.domain_gap import classifier_accuracies

    features = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32)
    text = np.eye(2, dtype=np.float32)                       # text says 0, 1, 1
    prototypes = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)  # auxiliary says 1, 0, 0
    accuracy = classifier_accuracies(features, np.array([0, 1, 0]), text, prototypes, 10.0, 1.0)
    assert accuracy["text"] == 2 / 3 and accuracy["auxiliary"] == 1 / 3
    # Fused, λ = 1: image 3 has text softmax(100·[0.6, 0.8]) ≈ [0, 1] and aux softmax(10·[0.8, 0.6]) ≈ [0.88, 0.12],
    # so the fused vote is class 1 (wrong); images 1 and 2 go the text's way, whose vote is the more one-hot.
    assert accuracy["fused"] == 2 / 3
