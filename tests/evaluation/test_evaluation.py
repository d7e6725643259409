import numpy as np

from pipeline.evaluation.metrics import confusion_rows, harmonic_mean, per_class_accuracy, predict, split_metrics


def test_harmonic_mean():
    assert harmonic_mean(0.5, 0.5) == 0.5
    assert abs(harmonic_mean(0.8, 0.4) - 2 * 0.32 / 1.2) < 1e-12
    assert harmonic_mean(0.0, 0.9) == 0.0 and harmonic_mean(0.0, 0.0) == 0.0


def test_trzsl_metrics_split_by_seen_classes():
    true = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 0, 1, 0, 2, 1])
    seen = np.isin(true, [0, 1])
    metrics = split_metrics(true, predicted, "trzsl", seen)
    assert metrics["seen_accuracy"] == 0.75 and metrics["unseen_accuracy"] == 0.5
    assert abs(metrics["harmonic_mean"] - 0.6) < 1e-12
    assert split_metrics(true, predicted, "ul", seen) == {"accuracy": 4 / 6}


def test_predict_per_class_and_confusion():
    weights = np.eye(3, dtype=np.float32)
    features = np.array([[1, 0, 0], [0, 0.9, 0.1], [0.2, 0, 0.8]], dtype=np.float32)
    predicted = predict(features, weights)
    assert predicted.tolist() == [0, 1, 2]
    table = per_class_accuracy(np.array([0, 1, 1]), np.array([0, 1, 2]), ["a", "b", "c"])
    assert table["accuracy"].tolist()[:2] == [1.0, 0.5] and np.isnan(table["accuracy"][2])
    confusion = confusion_rows(np.array([0, 1, 2]), np.array([0, 2, 2]), ["a", "b", "c"], max_classes=2)
    assert confusion.to_dict("records") == [{"actual": "a", "predicted": "a"}, {"actual": "b", "predicted": "c"}]
