"""Prompt training and the methods' rounds, on features built so the right answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.clip.prompts import PromptLearner
from pipeline.config.params import parse_params
from pipeline.core.candidates import Candidates
from pipeline.core.pool import Pool
from pipeline.datasets.candidate_sets import draw_candidate_masks
from pipeline.methods.catalog import build_method
from pipeline.training.loop import fit_prompt, run_ensemble, run_method

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
                np.arange(len(NAMES)) if allowed is None else np.asarray(allowed), len(NAMES),
                synthetic.astype(np.float32), synthetic_labels, centres.astype(np.float32))


def pseudo_label(pool, weights, config):
    return build_method(config).pseudo_label(pool, weights)


def terms(pool, pseudo, config):
    return build_method(config).loss_terms(pool, pseudo)


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
    """`factory(spec)` as `run_method` calls it (the spec is params.train's: a text prompt)."""
    return lambda spec=None, seed=config.seed: PromptLearner(clip.model, clip.tokenizer, NAMES, config.train.n_ctx,
                                                             config.train.ctx_init, seed)


def test_training_on_true_labels_lowers_loss_and_beats_zero_shot(tiny_clip):
    pool = make_pool(tiny_clip)
    zero_shot = accuracy(pool.features, pool.true_labels, handcrafted_weights(tiny_clip))
    truth = Candidates.single(np.arange(len(pool.true_labels)), pool.true_labels, len(NAMES),
                              np.ones(len(pool.true_labels)))
    learner = learner_factory(tiny_clip, params())()
    history = fit_prompt(learner, terms(pool, truth, params()), params().train, seed=0, device=DEVICE)
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
        fit_prompt(learner, terms(pool, pseudo, params()), params(train__epochs=2).train, 3, DEVICE)
        runs.append(learner.ctx.detach().clone())
    assert torch.equal(runs[0], runs[1])


@pytest.mark.parametrize("method, expected_rounds", [("upl", 1), ("fpl", 1), ("ifpl", 3), ("grip", 3), ("cpl", 3)])
def test_methods_run_their_rounds(tiny_clip, method, expected_rounds):
    config = params(method=method, train__epochs=2)
    pool = make_pool(tiny_clip)
    weights = handcrafted_weights(tiny_clip)
    first = pseudo_label(pool, weights, config)
    result = run_method(build_method(config), learner_factory(tiny_clip, config), pool, weights, first, 0, DEVICE)
    assert len(result.rounds) == expected_rounds
    assert result.class_weights.shape == weights.shape and result.context["ctx"].shape[0] == 4
    if method == "grip":  # K_t = floor(t * 72 / 3 / 6) = 4, 8, 12: the pool grows to all 72 images
        assert [r.n_pseudo_labels for r in result.rounds] == [24, 48, 72]
    if method == "ifpl":
        assert [r.n_pseudo_labels for r in result.rounds] == [48, 48, 48]
    if method == "cpl":  # pools of at most K_t = 4, 8, 12 per class; sets hold the assigned class
        assert all(r.n_pseudo_labels <= 6 * k for r, k in zip(result.rounds, (4, 8, 12)))
        assert result.pseudo.mask[np.arange(len(result.pseudo)), result.pseudo.labels].all()
        np.testing.assert_allclose(first.weights.sum(axis=1), 1.0, rtol=1e-5)  # round 1: soft target
        assert set(np.unique(result.pseudo.weights).tolist()) <= {0.0, 1.0}   # later rounds: binary sets


def test_zeroshot_trains_nothing(tiny_clip):
    config = params(method="zeroshot")
    pool = make_pool(tiny_clip)
    weights = handcrafted_weights(tiny_clip)
    result = run_method(build_method(config), None, pool, weights, pseudo_label(pool, weights, config), 0, DEVICE)
    assert result.context is None and result.rounds == [] and result.class_weights is weights
    assert len(result.pseudo.rows) == len(pool.true_labels)


def test_air_fusion_improves_pseudo_labels_when_prototypes_are_good(tiny_clip):
    pool = make_pool(tiny_clip)
    weights = handcrafted_weights(tiny_clip)
    text_only = pseudo_label(pool, weights, params(method="fpl"))
    fused = pseudo_label(pool, weights, params(method="air", pseudolabel__selection="fpl",
                                               auxiliary__temperature=50.0))
    assert len(text_only.rows) == len(fused.rows) == 48
    assert fused.accuracy(pool.true_labels) > text_only.accuracy(pool.true_labels)


def test_synthetic_loss_is_used_only_with_weight(tiny_clip):
    pool = make_pool(tiny_clip)
    empty = Candidates.empty(len(NAMES))
    air = params(method="air", train__epochs=3, train__synthetic_weight=1.0)
    no_synthetic = params(method="air", train__epochs=3, train__synthetic_weight=0.0)
    # No pseudo-labels, no labeled images, no synthetic term: nothing to train on.
    assert fit_prompt(learner_factory(tiny_clip, air)(), terms(pool, empty, no_synthetic), air.train, 0, DEVICE) == []
    # No pseudo-labels yet (GRIP's first round on a small pool): the synthetic images alone drive training.
    assert len(fit_prompt(learner_factory(tiny_clip, air)(), terms(pool, empty, air), air.train, 0, DEVICE)) == 3
    # Only AiR adds the synthetic term; with pseudo-labels, it changes what the prompt learns.
    assert [t.name for t in terms(pool, empty, params(method="grip"))] == ["pseudo"]
    pseudo = pseudo_label(pool, handcrafted_weights(tiny_clip), air)
    contexts = []
    for config in (no_synthetic, air):
        learner = learner_factory(tiny_clip, config)()
        fit_prompt(learner, terms(pool, pseudo, config), config.train, 0, DEVICE)
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


def test_ensemble_trains_members_from_different_seeds_and_averages_them(tiny_clip):
    config = params(method="upl", train__epochs=2, train__ensemble=3, seed=5)
    pool = make_pool(tiny_clip)
    weights = handcrafted_weights(tiny_clip)
    seeds = []

    def make_learner(seed, spec=None):
        seeds.append(seed)
        return learner_factory(tiny_clip, config)(spec, seed)

    ensemble = run_ensemble(build_method(config), make_learner, pool, weights, pseudo_label(pool, weights, config),
                            DEVICE)
    assert seeds == [5, 5 + 100_003, 5 + 2 * 100_003] and len(ensemble.members) == 3
    contexts = [m.context["ctx"] for m in ensemble.members]
    assert not torch.equal(contexts[0], contexts[1]) and not torch.equal(contexts[1], contexts[2])
    logits = [100 * pool.features @ m.class_weights.T for m in ensemble.members]
    np.testing.assert_allclose(100 * pool.features @ ensemble.class_weights.T, np.mean(logits, axis=0), atol=1e-4)
    # A single member is the plain run, bit for bit.
    single = run_ensemble(build_method(params(method="upl", train__epochs=2, seed=5)), make_learner, pool, weights,
                          pseudo_label(pool, weights, config), DEVICE)
    np.testing.assert_array_equal(single.class_weights, ensemble.members[0].class_weights)


@pytest.mark.parametrize("loss", ["cc", "rc", "lws", "cavl"])
@pytest.mark.parametrize("align", [False, True])
def test_pll_trains_every_image_on_its_candidate_set_and_beats_zero_shot(tiny_clip, loss, align):
    pool = make_pool(tiny_clip)
    zero_shot_weights = handcrafted_weights(tiny_clip)
    pool.candidate_sets = draw_candidate_masks(pool.true_labels, len(NAMES), 0.3, seed=0)
    pool.zero_shot_weights = zero_shot_weights
    config = params(method="pll", paradigm="candidates", train__pll_loss=loss, train__align=align)
    method = build_method(config)
    sets = method.pseudo_label(pool, zero_shot_weights)
    assert len(sets) == len(pool.true_labels) and sets.coverage(pool.true_labels) == 1.0
    assert np.array_equal(sets.mask, pool.candidate_sets) and sets.mask[np.arange(len(sets)), sets.labels].all()
    (term,) = method.loss_terms(pool, sets)
    assert term.loss == loss and (term.teacher is not None) == align
    result = run_method(method, learner_factory(tiny_clip, config), pool, zero_shot_weights, sets, 0, DEVICE)
    assert len(result.rounds) == 1
    zero_shot = accuracy(pool.features, pool.true_labels, zero_shot_weights)
    assert accuracy(pool.features, pool.true_labels, result.class_weights) > zero_shot


def test_rc_updated_from_the_next_steps_forward_trains_exactly_as_with_a_separate_post_step_pass(tiny_clip):
    """fit_prompt applies RC's update with the next step's class weights instead of a second text-tower
    pass after each step; the parameters are the same, so the trained context must be too."""
    from pipeline.core.candidates import LOGIT_SCALE
    from pipeline.training.loop import _schedule, steps_per_epoch
    from pipeline.training.losses import build_loss

    pool = make_pool(tiny_clip)
    pool.candidate_sets = draw_candidate_masks(pool.true_labels, len(NAMES), 0.4, seed=1)
    pool.zero_shot_weights = handcrafted_weights(tiny_clip)
    config = params(method="pll", paradigm="candidates", train__pll_loss="rc", train__epochs=3)
    method = build_method(config)
    sets = method.pseudo_label(pool, pool.zero_shot_weights)
    learner = learner_factory(tiny_clip, config)()
    fit_prompt(learner, method.loss_terms(pool, sets), config.train, seed=5, device=DEVICE)

    reference = learner_factory(tiny_clip, config)()
    features, rc = torch.tensor(pool.features), build_loss("rc", torch.tensor(sets.weights))
    steps = steps_per_epoch(len(features), config.train.batch_size)
    optimizer = torch.optim.Adam(reference.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
    scheduler = _schedule(optimizer, config.train.warmup_epochs, config.train.epochs, steps)
    rng = np.random.default_rng(5)
    for _ in range(config.train.epochs):
        order = rng.permutation(len(features))
        for step in range(steps):
            rows = torch.as_tensor(order[step * config.train.batch_size:(step + 1) * config.train.batch_size])
            loss = rc(LOGIT_SCALE * features[rows] @ reference().T, rows)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                rc.update(LOGIT_SCALE * features[rows] @ reference().T, rows)
    assert torch.allclose(learner.ctx, reference.ctx, atol=1e-6)
    assert not torch.allclose(reference.ctx, learner_factory(tiny_clip, config)().ctx, atol=1e-3)  # it trained
