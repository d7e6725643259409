"""Protocols: what each example weighs per step, what is held out, and the reference recipes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.config.params import parse_params
from pipeline.config.protocols import PROTOCOLS
from pipeline.core.candidates import candidate_loss
from pipeline.methods.base import LossTerm
from pipeline.training.batching import PLANS
from pipeline.training.loop import _schedule, fit_prompt
from tests.training.test_training import DEVICE, NAMES, learner_factory, make_pool

N_PSEUDO, N_LABELED, C = 12, 4, 5


def _step_weights(plan_name: str, paradigm: str, batch_size: int, scales=(1.0, 1.0), seed: int = 0):
    """Per-example weights of every step of one epoch, read off the plan: a term's loss is a mean over
    its rows, so each row of a part weighs `scale / len(rows)`."""
    plan = PLANS[plan_name](["pseudo", "labeled"], [N_PSEUDO, N_LABELED], list(scales), batch_size, paradigm)
    steps = []
    for step in plan.epoch(np.random.default_rng(seed)):
        weights = {}
        for index, rows, scale in step:
            for row in rows:
                key = ("pseudo", "labeled")[index], int(row)
                weights[key] = weights.get(key, 0.0) + scale / len(rows)
        steps.append(weights)
    return plan, steps


@pytest.mark.parametrize("paradigm", ["ssl", "trzsl"])
def test_grip_streams_both_kinds_once_per_epoch_with_its_balance_on_the_right_term(paradigm):
    plan, steps = _step_weights("grip", paradigm, batch_size=6)
    assert plan.steps_per_epoch == len(steps) == 3                  # ceil((12 + 4) / 6)
    seen = [key for step in steps for key in step]
    assert sorted(seen) == sorted([("pseudo", i) for i in range(N_PSEUDO)] + [("labeled", i) for i in range(N_LABELED)])
    ratio = N_LABELED / N_PSEUDO
    for step in steps:
        n_pseudo = sum(kind == "pseudo" for kind, _ in step)
        n_labeled = len(step) - n_pseudo
        for (kind, _), weight in step.items():
            # GRIP: SSL  balance·mean(CE_labeled) + mean(CE_pseudo);  TRZSL  mean(CE_seen) + balance·mean(CE_unseen)
            if paradigm == "ssl":
                expected = ratio / n_labeled if kind == "labeled" else 1 / n_pseudo
            else:
                expected = 1 / n_labeled if kind == "labeled" else ratio / n_pseudo
            assert weight == pytest.approx(expected)


def test_the_project_plan_draws_labeled_batches_beside_each_pseudo_batch_at_full_weight():
    plan, steps = _step_weights("project", "ssl", batch_size=6, scales=(1.0, 1.0))
    assert len(steps) == 2                                         # ceil(12 / 6): the pseudo-labels set the epoch
    for step in steps:
        labeled = [w for (kind, _), w in step.items() if kind == "labeled"]
        assert sum(labeled) == pytest.approx(1.0)                  # CE(pseudo) + 1 · CE(labeled), batch of 6
        assert sum(w for (kind, _), w in step.items() if kind == "pseudo") == pytest.approx(1.0)


def test_cpl_drops_the_short_pseudo_batch_and_sizes_the_labeled_batch_by_the_ratio():
    plan, steps = _step_weights("cpl", "ssl", batch_size=5)
    assert plan.steps_per_epoch == len(steps) == 2                  # 12 // 5, drop_last
    assert plan.labeled_batch() == 8                                # clamp(5 · 4/12, 8, 256)
    sizes = [sum(kind == "labeled" for kind, _ in step) for step in steps]
    assert sizes == [4, 4]   # a pass over the 4 labeled images per step (the sampler reshuffles when it runs out)
    big = PLANS["cpl"](["pseudo", "labeled"], [100, 400], [1.0, 1.0], 64, "ssl")
    assert big.labeled_batch() == 256                               # clamp(64 · 4, 8, 256)


def test_a_grip_step_loss_equals_the_reference_formula_in_value_and_gradient():
    """The trainer's step loss (Σ scale · mean loss per term) against GRIP's per-example formula."""
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(size=(N_PSEUDO + N_LABELED, C)), requires_grad=True)
    targets = torch.tensor(rng.integers(0, C, N_PSEUDO + N_LABELED))
    one_hot = F.one_hot(targets, C).double()
    plan = PLANS["grip"](["pseudo", "labeled"], [N_PSEUDO, N_LABELED], [1.0, 1.0], 16, "ssl")
    (step,) = list(plan.epoch(np.random.default_rng(1)))
    offsets = {0: 0, 1: N_PSEUDO}
    loss = sum(scale * candidate_loss(logits[offsets[i] + torch.as_tensor(rows)], one_hot[offsets[i] + torch.as_tensor(rows)])
               for i, rows, scale in step)
    per_example = F.cross_entropy(logits, targets, reduction="none")
    reference = (N_LABELED / N_PSEUDO) * per_example[N_PSEUDO:].mean() + per_example[:N_PSEUDO].mean()
    assert loss.item() == pytest.approx(reference.item(), rel=1e-12)
    (gradient,) = torch.autograd.grad(loss, logits)
    (expected,) = torch.autograd.grad(reference, logits)
    assert torch.allclose(gradient, expected, atol=1e-12)
    # before/after: the project's rule weighs each of the 4 labels 1/4; GRIP's weighs each (4/12)/4
    assert gradient[N_PSEUDO:].abs().sum() < 0.5 * gradient[:N_PSEUDO].abs().sum()


def test_grip_holds_out_exactly_20_percent_with_its_fixed_seed():
    grip = PROTOCOLS["grip"]
    kept = grip.kept_rows(50, round_k=10)
    assert len(kept) == 40 and len(set(kept.tolist())) == 40
    np.testing.assert_array_equal(kept, np.sort(np.random.RandomState(0).choice(50, 40, replace=False)))
    assert len(grip.kept_rows(50, round_k=9)) == 50                 # K < 10: no pseudo-label hold-out
    assert len(grip.kept_rows(7, round_k=None)) == 5                 # labeled images: always, int(0.8 · 7)
    assert len(PROTOCOLS["cpl"].kept_rows(50, round_k=16)) == 50 == len(PROTOCOLS["project"].kept_rows(50, 16))


def test_held_out_rows_never_reach_training(tiny_clip):
    """Poison the rows GRIP holds out (NaN features): training stays finite only if none is used."""
    pool = make_pool(tiny_clip, per_class=10)
    n = len(pool.true_labels)
    held = np.setdiff1d(np.arange(n), PROTOCOLS["grip"].kept_rows(n, round_k=10))
    assert len(held) == n // 5
    features = pool.features.copy()
    features[held] = np.nan
    one_hot = np.eye(len(NAMES), dtype=np.float32)[pool.true_labels]
    terms = [LossTerm("pseudo", features, one_hot, 1.0)]
    config = parse_params({"method": "fpl", "protocol": "grip", "train": {"epochs": 2, "ctx_init": "a photo of a"}})
    kept_terms, held_out = PROTOCOLS["grip"].training_terms(terms, round_k=10)
    assert held_out == len(held)
    learner = learner_factory(tiny_clip, config)()
    history = fit_prompt(learner, kept_terms, config.train, 0, DEVICE, protocol=PROTOCOLS["grip"])
    assert np.isfinite(history).all() and torch.isfinite(learner.ctx).all()
    poisoned = fit_prompt(learner_factory(tiny_clip, config)(), terms, config.train, 0, DEVICE,
                          protocol=PROTOCOLS["project"])   # the same rows without a hold-out meet the poison
    assert not np.isfinite(poisoned).all()


def test_reference_schedules_step_once_per_epoch_and_start_at_zero():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    scheduler = _schedule(optimizer, warmup_epochs=5, epochs=150, steps_per_epoch=3, per_epoch=True)
    rates = []
    for _ in range(150 * 3):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    per_epoch = rates[::3]
    assert rates[:3] == [0.0, 0.0, 0.0] and per_epoch[1] == pytest.approx(0.02) and per_epoch[5] == pytest.approx(0.1)
    assert all(rates[3 * e] == rates[3 * e + 2] for e in range(150))  # constant within an epoch
    assert per_epoch[-1] < 1e-4


def test_a_protocol_fills_the_recipe_and_templates_only_where_left_null():
    grip = parse_params({"protocol": "grip"})
    assert (grip.train.optimizer, grip.train.lr, grip.train.weight_decay, grip.train.batch_size, grip.train.epochs,
            grip.train.warmup_epochs, grip.train.ctx_init, grip.train.n_ctx) == ("sgd", 0.1, 0.1, 16, 150, 5, "", 16)
    assert grip.clip.templates == ["a photo of a {}"]
    cpl = parse_params({"protocol": "cpl", "train": {"lr": 0.5, "epochs": None}, "clip": {"templates": ["{}"]}})
    assert (cpl.train.lr, cpl.train.epochs, cpl.train.batch_size, cpl.clip.templates) == (0.5, 50, 64, ["{}"])
    project = parse_params({})
    assert (project.train.optimizer, project.train.lr, project.train.ctx_init) == ("adam", 0.01, "a photo of a")


def test_grip_protocol_runs_grips_rounds_on_ssl_with_its_hold_out_and_beats_zero_shot(tiny_clip):
    from pipeline.methods.catalog import build_method
    from pipeline.training.loop import run_method
    from tests.training.test_training import accuracy, handcrafted_weights

    pool = make_pool(tiny_clip, per_class=20, labeled_per_class=5)
    config = parse_params({"method": "grip", "paradigm": "ssl", "protocol": "grip",
                           "pseudolabel": {"rounds": 2},
                           "train": {"epochs": 6, "warmup_epochs": 1, "lr": 0.02, "ctx_init": "a photo of a"}})
    zero_shot = handcrafted_weights(tiny_clip)
    method = build_method(config)
    result = run_method(method, learner_factory(tiny_clip, config), pool, zero_shot,
                        method.pseudo_label(pool, zero_shot), 0, DEVICE)
    # round 1: K = floor(90/2/6) = 7 < 10, so only the labeled images (30 -> 24) are held out; round 2: K = 15
    assert [r.held_out for r in result.rounds] == [6, 6 + (6 * 15 - int(6 * 15 * 0.8))]
    assert accuracy(pool.features, pool.true_labels, result.class_weights) > accuracy(
        pool.features, pool.true_labels, zero_shot)


def test_cpl_protocol_trains_cpl_on_trzsl_with_its_labeled_batches_and_beats_zero_shot(tiny_clip):
    from pipeline.methods.catalog import build_method
    from pipeline.training.loop import run_method
    from tests.training.test_training import accuracy, handcrafted_weights

    pool = make_pool(tiny_clip, per_class=20, allowed=[3, 4, 5])
    pool.labeled[np.isin(pool.true_labels, [0, 1, 2])] = True      # seen classes labeled, as TRZSL has it
    config = parse_params({"method": "cpl", "paradigm": "trzsl", "protocol": "cpl", "pseudolabel": {"rounds": 2},
                           "train": {"epochs": 6, "warmup_epochs": 1, "batch_size": 8, "ctx_init": "a photo of a"}})
    zero_shot = handcrafted_weights(tiny_clip)
    method = build_method(config)
    result = run_method(method, learner_factory(tiny_clip, config), pool, zero_shot,
                        method.pseudo_label(pool, zero_shot), 0, DEVICE)
    assert [r.held_out for r in result.rounds] == [0, 0]
    assert accuracy(pool.features, pool.true_labels, result.class_weights) > accuracy(
        pool.features, pool.true_labels, zero_shot)
