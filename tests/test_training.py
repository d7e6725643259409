"""Prompt training and the methods' rounds, on features built so the right answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.params import parse_params
from pipeline.prompts import PromptLearner
from pipeline.training import Pool, PseudoLabels, fit_prompt, pseudo_label, run_method

NAMES = ["red circle", "blue circle", "red square", "blue square", "green star", "yellow ring"]
DEVICE = torch.device("cpu")


def handcrafted_weights(clip) -> np.ndarray:
    learner = PromptLearner(clip.model, clip.tokenizer, NAMES, ctx_init="a photo of a")
    with torch.no_grad():
        return learner().numpy()


def make_pool(clip, per_class=12, noise=0.25, labeled_per_class=0, seed=0, allowed=None) -> Pool:
    """Images = a class direction (a rotation of the handcrafted text features) plus noise, so the
    zero-shot classifier is imperfect and a prompt can learn the true directions."""
    rng = np.random.default_rng(seed)
    weights = handcrafted_weights(clip)
    d = weights.shape[1]
    rotation, _ = np.linalg.qr(np.eye(d) + 0.35 * rng.normal(size=(d, d)))
    centres = weights @ rotation.T
    labels = np.repeat(np.arange(len(NAMES)), per_class)
    features = centres[labels] + noise * rng.normal(size=(len(labels), d)) / np.sqrt(d)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    labeled = np.zeros(len(labels), bool)
    for c in range(len(NAMES)):
        labeled[np.flatnonzero(labels == c)[:labeled_per_class]] = True
    synthetic_labels = np.repeat(np.arange(len(NAMES)), 4)
    synthetic = centres[synthetic_labels] + 0.1 * rng.normal(size=(len(synthetic_labels), d)) / np.sqrt(d)
    synthetic /= np.linalg.norm(synthetic, axis=1, keepdims=True)
    return Pool(features.astype(np.float32), labels, labeled,
                np.arange(len(NAMES)) if allowed is None else np.asarray(allowed),
                synthetic.astype(np.float32), synthetic_labels, centres.astype(np.float32))


def accuracy(features, labels, weights) -> float:
    return float(((features @ weights.T).argmax(axis=1) == labels).mean())


def params(**overrides):
    data = {"method": "fpl", "pseudolabel": {"k": 8, "rounds": 3},
            "train": {"optimizer": "adam", "lr": 0.01, "epochs": 15, "batch_size": 16, "warmup_epochs": 0}}
    for key, value in overrides.items():
        section, _, leaf = key.partition("__")
        if leaf:
            data.setdefault(section, {})[leaf] = value
        else:
            data[section] = value
    return parse_params(data)


def learner_factory(clip, config):
    return lambda: PromptLearner(clip.model, clip.tokenizer, NAMES, config.train.n_ctx, config.train.ctx_init,
                                 config.seed)


def test_training_on_true_labels_lowers_loss_and_beats_zero_shot(tiny_clip):
    pool = make_pool(tiny_clip)
    zero_shot = accuracy(pool.features, pool.true_labels, handcrafted_weights(tiny_clip))
    truth = PseudoLabels(np.arange(len(pool.true_labels)), pool.true_labels, np.ones(len(pool.true_labels)))
    learner = learner_factory(tiny_clip, params())()
    history = fit_prompt(learner, pool, truth, params().train, seed=0, synthetic_weight=0.0, device=DEVICE)
    with torch.no_grad():
        trained = accuracy(pool.features, pool.true_labels, learner().numpy())
    assert len(history) == 15 and history[-1] < 0.7 * history[0]
    assert zero_shot < 0.9 and trained > zero_shot


def test_fit_is_deterministic_for_a_seed(tiny_clip):
    pool = make_pool(tiny_clip)
    pseudo = pseudo_label(pool, handcrafted_weights(tiny_clip), params())
    runs = []
    for _ in range(2):
        learner = learner_factory(tiny_clip, params())()
        fit_prompt(learner, pool, pseudo, params(train__epochs=2).train, 3, 0.0, DEVICE)
        runs.append(learner.ctx.detach().clone())
    assert torch.equal(runs[0], runs[1])


@pytest.mark.parametrize("method, expected_rounds", [("upl", 1), ("fpl", 1), ("ifpl", 3), ("grip", 3)])
def test_methods_run_their_rounds(tiny_clip, method, expected_rounds):
    config = params(method=method, train__epochs=2)
    pool = make_pool(tiny_clip)
    weights = handcrafted_weights(tiny_clip)
    first = pseudo_label(pool, weights, config)
    result = run_method(learner_factory(tiny_clip, config), pool, weights, first, config, DEVICE)
    assert len(result.rounds) == expected_rounds
    assert result.class_weights.shape == weights.shape and result.context["ctx"].shape[0] == 4
    if method == "grip":  # K_t = floor(t * 72 / 3 / 6) = 4, 8, 12: the pool grows to all 72 images
        assert [r.n_pseudo_labels for r in result.rounds] == [24, 48, 72]
    if method == "ifpl":
        assert [r.n_pseudo_labels for r in result.rounds] == [48, 48, 48]


def test_zeroshot_trains_nothing(tiny_clip):
    config = params(method="zeroshot")
    pool = make_pool(tiny_clip)
    weights = handcrafted_weights(tiny_clip)
    result = run_method(None, pool, weights, pseudo_label(pool, weights, config), config, DEVICE)
    assert result.context is None and result.rounds == [] and result.class_weights is weights
    assert len(result.pseudo.rows) == len(pool.true_labels)


def test_air_fusion_improves_pseudo_labels_when_prototypes_are_good(tiny_clip):
    pool = make_pool(tiny_clip)
    weights = handcrafted_weights(tiny_clip)
    text_only = pseudo_label(pool, weights, params(method="fpl"))
    fused = pseudo_label(pool, weights, params(method="air", pseudolabel__selection="balanced",
                                               auxiliary__temperature=50.0))
    assert len(text_only.rows) == len(fused.rows) == 48
    assert fused.accuracy(pool.true_labels) > text_only.accuracy(pool.true_labels)


def test_synthetic_loss_is_used_only_with_weight(tiny_clip):
    pool = make_pool(tiny_clip)
    empty = PseudoLabels(np.zeros(0, int), np.zeros(0, int), np.zeros(0))
    config = params(train__epochs=3)
    # No pseudo-labels, no labeled images, no synthetic term: nothing to train on.
    assert fit_prompt(learner_factory(tiny_clip, config)(), pool, empty, config.train, 0, 0.0, DEVICE) == []
    # No pseudo-labels yet (GRIP's first round on a small pool): the synthetic images alone drive training.
    assert len(fit_prompt(learner_factory(tiny_clip, config)(), pool, empty, config.train, 0, 1.0, DEVICE)) == 3
    # With pseudo-labels, the synthetic term changes what the prompt learns.
    pseudo = pseudo_label(pool, handcrafted_weights(tiny_clip), config)
    contexts = []
    for beta in (0.0, 1.0):
        learner = learner_factory(tiny_clip, config)()
        fit_prompt(learner, pool, pseudo, config.train, 0, beta, DEVICE)
        contexts.append(learner.ctx.detach())
    assert not torch.allclose(contexts[0], contexts[1])


def test_trzsl_pseudo_labels_only_unseen_and_ssl_keeps_labeled_out(tiny_clip):
    unseen = [1, 4, 5]
    pool = make_pool(tiny_clip, allowed=unseen)
    seen_rows = ~np.isin(pool.true_labels, unseen)
    pool.labeled[:] = seen_rows
    pseudo = pseudo_label(pool, handcrafted_weights(tiny_clip), params())
    assert set(pseudo.labels.tolist()) <= set(unseen)
    assert not pool.labeled[pseudo.rows].any()
