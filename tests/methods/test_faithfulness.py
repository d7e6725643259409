"""The reference protocols follow the authors' code to the last tie (issue 27, docs/faithfulness.md):
hand-worked cases for GRIP/CPL's K schedule, CPL's intra boundary and pool ties, CoOpPLL's numerics,
the post-step update of stateful losses on images and CoOp's word-count context length. The
project's own rules stay as they were."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.clip.prompts import PromptLearner
from pipeline.config.params import parse_params
from pipeline.config.protocols import PROTOCOLS
from pipeline.core.candidates import LOGIT_SCALE
from pipeline.methods.base import LossTerm
from pipeline.methods.catalog import build_method
from pipeline.pseudolabel.rules import assign_to_pools, assign_to_pools_reference, grip_k, intra_instance_sets, quantile_exact
from pipeline.training.checkpoints import Checkpoints
from pipeline.training.loop import fit_prompt
from pipeline.training.losses import build_loss, rc_confidence

DEVICE = torch.device("cpu")


# --- 1. the K schedule -----------------------------------------------------------------------------

def test_fgvc_rounds_3_6_9_take_19_39_59_under_the_reference_schedule_and_20_40_60_under_the_projects():
    # FGVC-Aircraft: |U| = 6,667, C = 100, R = 10. int(6667 / 10) = 666; 3 · 666 / 100 = 19.98 -> 19,
    # where 3 · 666.7 / 100 = 20.001 -> 20.
    assert [grip_k(t, 6667, 100, 10, inner_floor=True) for t in (3, 6, 9)] == [19, 39, 59]
    assert [grip_k(t, 6667, 100, 10) for t in (3, 6, 9)] == [20, 40, 60]
    assert grip_k(10, 6667, 100, 10, inner_floor=True) == 66 == grip_k(11, 6667, 100, 10, inner_floor=True)
    assert PROTOCOLS["grip"].k_inner_floor and PROTOCOLS["cpl"].k_inner_floor
    assert not PROTOCOLS["project"].k_inner_floor


@pytest.mark.parametrize("protocol,k", [("grip", 9), ("project", 10)])
def test_grip_under_a_protocol_takes_its_k(protocol, k):
    # |U| = 67, C = 2, round 3 of 10: int(3 · int(6.7) / 2) = int(9) = 9, int(3 · 6.7 / 2) = int(10.05) = 10.
    probs = np.random.default_rng(0).dirichlet(np.ones(2), size=67).astype(np.float32)
    method = build_method(parse_params({"method": "grip", "protocol": protocol}))
    chosen = method.select(probs, 3, None, np.arange(2))
    assert np.bincount(chosen.labels, minlength=2).tolist() == [k, k]


@pytest.mark.parametrize("protocol,k,rules", [("cpl", 9, "reference"), ("project", 10, "exact")])
def test_cpl_under_a_protocol_uses_its_k_and_pool_rules(monkeypatch, protocol, k, rules):
    import pipeline.methods.cpl as cpl

    seen = {}
    monkeypatch.setattr(cpl, "select_cpl", lambda probs, alpha, beta, caps, soft, rules: seen.update(
        caps=caps.tolist(), rules=rules))
    method = build_method(parse_params({"method": "cpl", "protocol": protocol}))
    method.select(np.full((67, 2), 0.5, np.float32), 3, None, np.arange(2))
    assert seen == {"caps": [k, k], "rules": rules}


# --- 2. CPL's intra-instance boundary ----------------------------------------------------------------

# Five images, α = 0.5: (N − 1)·α = 2, so τ₁ is the median top posterior, image 2's 0.70 itself.
BOUNDARY = np.array([[0.90, 0.05, 0.03, 0.02],
                     [0.80, 0.10, 0.06, 0.04],
                     [0.70, 0.15, 0.10, 0.05],
                     [0.60, 0.25, 0.10, 0.05],
                     [0.50, 0.30, 0.15, 0.05]], dtype=np.float32)


def test_an_image_whose_top_posterior_is_tau_keeps_its_second_class_under_the_exact_boundary():
    f32 = np.float32
    assert quantile_exact(BOUNDARY.max(axis=1), 0.5) == float(f32(0.70))
    # The authors' rule, cumsum > τ₁: image 2's running sum passes 0.70 only at its second class
    # (0.85), so the set is {0, 1}. `cumsum − p` lands above τ₁ in float32 and drops class 1:
    assert f32(f32(f32(0.70) + f32(0.15)) - f32(0.15)) > f32(0.70)
    exact = intra_instance_sets(BOUNDARY, 0.5, exact_boundary=True)
    today = intra_instance_sets(BOUNDARY, 0.5)
    assert exact[2].tolist() == [True, True, False, False]
    assert today[2].tolist() == [True, False, False, False]
    # Elsewhere the two agree: image 3 (0.60, then 0.85 > 0.70) keeps {0, 1}, images 0 and 1 only their top.
    assert (exact[[0, 1, 3, 4]] == today[[0, 1, 3, 4]]).all()
    assert exact[3].tolist() == [True, True, False, False] and exact[0].sum() == exact[1].sum() == 1


def test_quantile_exact_is_numpys_between_order_statistics():
    values = np.random.default_rng(3).random(201)
    for q in (0.1, 0.25, 0.333, 0.9):
        assert quantile_exact(values, q) == pytest.approx(float(np.quantile(values, q)), abs=1e-15)
    assert quantile_exact(values, 0.25) == np.sort(values)[50]  # (201 − 1) · 0.25 = 50


# --- 3. CPL's pool ties --------------------------------------------------------------------------------

# Caps [1, 1, 0]. Step 1: image 0 and image 2 ask class 1 (2 evicts 0: p 0.9 > 0.6), image 1 takes class 0
# with p 0.4. Step 2: image 0 asks class 0 with the same p 0.4: a tie with the incumbent, image 1.
TIE = np.array([[0.4, 0.6, 0.0],
                [0.4, 0.3, 0.3],
                [0.1, 0.9, 0.0]], dtype=np.float32)
TIE_CAPS = np.array([1, 1, 0])


def test_a_tie_keeps_the_incumbent_under_the_reference_pools_and_the_lower_index_under_the_projects():
    everything = np.ones(TIE.shape, dtype=bool)
    # The incumbent stays; image 0 runs on to class 2, whose cap is 0: it has no class.
    assert assign_to_pools_reference(TIE, everything, TIE_CAPS).tolist() == [-1, 0, 1]
    # The project's rule: the lower image wins the tie and image 1, evicted, finds no class.
    assert assign_to_pools(TIE, everything, TIE_CAPS).tolist() == [0, -1, 1]


def test_float32_one_minus_p_merges_posteriors_closer_than_its_resolution_into_a_tie():
    # Image 0's p for class 0 is 1e-8 above image 1's; in float32, 1 − p is the same number.
    probs = np.array([[0.10000001, 0.89999999], [0.10, 0.0], [0.0, 1.0]])
    assert np.float32(1) - np.float32(probs[0, 0]) == np.float32(1) - np.float32(probs[1, 0])
    everything = np.ones(probs.shape, dtype=bool)
    caps = np.array([1, 1])
    # Image 0 asks class 1 first and is evicted by image 2 (p 1.0); by then image 1 holds class 0.
    assert assign_to_pools_reference(probs, everything, caps).tolist() == [-1, 0, 1]
    assert assign_to_pools(probs, everything, caps).tolist() == [0, -1, 1]  # exact p: image 0 is stronger


def test_without_ties_the_reference_pools_are_the_projects_stable_assignment():
    rng = np.random.default_rng(7)
    compared = 0
    while compared < 10:
        n, c = int(rng.integers(50, 300)), int(rng.integers(3, 12))
        probs = rng.dirichlet(np.ones(c), size=n).astype(np.float32)
        mask = rng.random((n, c)) < 0.6
        mask[np.arange(n), probs.argmax(axis=1)] = True
        caps = rng.integers(0, n // c + 3, size=c)
        keys = np.where(mask, np.float32(1) - probs, np.nan)
        if any(len(np.unique(k[~np.isnan(k)])) < (~np.isnan(k)).sum() for k in keys.T):
            continue                              # a class with two equal float32 keys: a tie
        np.testing.assert_array_equal(assign_to_pools_reference(probs, mask, caps), assign_to_pools(probs, mask, caps))
        compared += 1


def test_duplicated_images_change_some_assignments_under_the_reference_ties():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(10), size=50).astype(np.float32)[rng.integers(0, 50, 200)]
    everything = np.ones(probs.shape, dtype=bool)
    reference = assign_to_pools_reference(probs, everything, np.full(10, 12))
    project = assign_to_pools(probs, everything, np.full(10, 12))
    assert (reference >= 0).sum() == (project >= 0).sum() == 120   # both fill every pool
    assert 0 < (reference != project).sum() < 20                    # and differ only where images tie


# --- 4. CoOpPLL's numerics ---------------------------------------------------------------------------------

def _batch(seed=0, n=6, c=5):
    """Logits at CLIP's scale (std 5); row 0's candidates sit 120 below its best class, so their mass
    underflows in float32."""
    generator = torch.Generator().manual_seed(seed)
    logits = 5 * torch.randn(n, c, generator=generator)
    mask = (torch.rand(n, c, generator=generator) < 0.5).float()
    mask[torch.arange(n), logits.argmax(dim=1)] = 1
    mask[0] = torch.tensor([1.0, 1.0, 0, 0, 0])
    logits[0] = torch.tensor([-60.0, -61.0, 60.0, 0.0, 1.0])
    return logits, mask


def test_cc_reference_is_coopplls_formula_and_caps_an_underflowed_row_at_minus_log_1e7():
    logits, mask = _batch()
    theirs = -torch.log((F.softmax(logits, dim=1) * mask).sum(dim=1) + 1e-7).mean()  # CC.py:19
    ours = build_loss("cc", mask, numerics="reference")(logits, torch.arange(len(mask)))
    assert torch.equal(ours, theirs)
    row0 = build_loss("cc", mask[:1], numerics="reference")(logits[:1], torch.arange(1))
    assert row0.item() == pytest.approx(-np.log(1e-7), rel=1e-6)            # 16.118: capped
    exact = build_loss("cc", mask[:1])(logits[:1], torch.arange(1))
    assert exact.item() == pytest.approx(120 - np.log1p(np.exp(-1)), rel=1e-5)  # 119.69: the exact value


def test_lws_reference_is_coopplls_loss_and_update():
    logits, mask = _batch(1)
    rows = torch.arange(len(mask))
    loss = build_loss("lws", mask, numerics="reference", non_candidate_weight=1.0)
    confidence = loss.confidence.clone()
    sm = F.softmax(logits, dim=1)
    l1 = confidence * mask * -torch.log(sm + 1e-8)                              # LWS.py:58-60
    l2 = confidence * (1 - mask) * -torch.log(1 - sm + 1e-8)                    # LWS.py:62-64
    assert torch.allclose(loss(logits, rows), l1.sum() / len(l1) + l2.sum() / len(l2), rtol=1e-6)
    loss.update(logits, rows)
    w1 = sm * mask / (sm * mask + 1e-8).sum(dim=1, keepdim=True)               # LWS.py:71-90
    w2 = sm * (1 - mask) / (sm * (1 - mask) + 1e-8).sum(dim=1, keepdim=True)
    assert torch.equal(loss.confidence, w1 + w2)
    # Row 0: its candidates' mass underflowed, so their weights are ~0 where the exact update's sum to 1.
    assert loss.confidence[0, :2].sum() < 1e-3
    exact = build_loss("lws", mask)
    exact.update(logits, rows)
    assert exact.confidence[0, :2].sum().item() == pytest.approx(1.0)
    assert not torch.allclose(build_loss("lws", mask)(logits, rows), build_loss("lws", mask, numerics="reference")(
        logits, rows))


def test_rc_reference_renormalises_every_row_and_leaves_an_underflowed_row_below_one():
    logits, mask = _batch(2)
    loss = build_loss("rc", mask, numerics="reference")
    before = loss.confidence.clone()
    rows = torch.tensor([0, 1, 2])
    loss.update(logits[rows], rows)
    theirs = before.clone()                                                     # RC.py:23-31
    theirs[rows] = F.softmax(logits[rows], dim=1) * mask[rows]
    theirs = theirs / (theirs.sum(dim=1, keepdim=True) + 1e-7)
    assert torch.equal(loss.confidence, theirs)
    assert loss.confidence[0].sum() < 0.5                           # underflowed: no mass left
    assert (loss.confidence[3:] < before[3:]).any()                 # the rows not trained were re-divided too
    exact = build_loss("rc", mask)
    exact.update(logits[rows], rows)
    assert exact.confidence[0].sum().item() == pytest.approx(1.0) and torch.equal(exact.confidence[3:], before[3:])


def test_cavl_reference_can_pick_a_non_candidate_when_every_candidates_activation_is_negative():
    logits = torch.tensor([[-2.0, -3.0, 0.5], [4.0, 2.0, 3.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    from pipeline.training.losses import cavl_targets, cavl_targets_reference

    # Row 0: activations z|1 − z| are −6 and −12 on the candidates, 0 on the masked class 2.
    assert cavl_targets_reference(logits, mask).tolist() == [2, 2]
    assert cavl_targets(logits, mask).tolist() == [0, 2]


def test_pll_numerics_is_a_checked_param_that_reaches_the_loss_term():
    from types import SimpleNamespace

    from pipeline.core.candidates import Candidates
    from pipeline.core.errors import PipelineError

    config = parse_params({"method": "pll", "paradigm": "candidates", "train": {"pll_numerics": "reference"}})
    pool = SimpleNamespace(features=np.zeros((3, 4), np.float32), images_of=lambda rows: None)
    sets = Candidates(np.arange(3), np.zeros(3, int), np.ones((3, 2), np.float32), np.ones(3, np.float32))
    (term,) = build_method(config).loss_terms(pool, sets)
    assert term.loss_options["numerics"] == "reference"
    assert parse_params({}).train.pll_numerics == "exact"
    with pytest.raises(PipelineError, match="pll_numerics"):
        parse_params({"train": {"pll_numerics": "approximate"}})


# --- 5. stateful losses on images: updated after the step ----------------------------------------------

def test_rc_on_images_is_updated_with_the_post_step_logits_of_the_steps_own_views(tiny_clip, tmp_path):
    from tests.training.test_visual import NAMES, _image_learner

    factory, train = _image_learner(tiny_clip, epochs=1, batch_size=32, warmup_epochs=0, lr=0.5)
    masks = np.zeros((24, len(NAMES)), np.float32)
    masks[:, :2] = 1
    masks[np.arange(24), np.arange(24) % len(NAMES)] = 1
    term = LossTerm("pseudo", np.zeros((24, 1), np.float32), masks, 1.0, loss="rc", images=np.arange(24))
    learner = factory(3)
    checkpoints = Checkpoints(tmp_path, every=1)
    fit_prompt(learner, [term], train, seed=5, device=DEVICE, checkpoints=checkpoints, checkpoint_key="k")
    saved = checkpoints.load("k")[0]["loss.0.confidence"]

    order = np.random.default_rng(5).permutation(24)   # the one step's rows, in the plan's order

    def confidence_from(model) -> torch.Tensor:
        model.train()
        model.generator.manual_seed(3)          # the step's own views: the first draws of seed 3
        with torch.no_grad():
            logits = LOGIT_SCALE * model.encode(order) @ model().T
        confidence = torch.empty(24, len(NAMES))
        confidence[order] = rc_confidence(logits, torch.tensor(masks[order]))
        return confidence

    assert torch.allclose(saved, confidence_from(learner), atol=1e-5)            # post-step parameters
    assert not torch.allclose(saved, confidence_from(factory(3)), atol=1e-3)     # not the pre-step ones


# --- 6. CoOp's context length --------------------------------------------------------------------------

def test_cooped_word_count_gives_itap_of_a_three_context_vectors_and_the_same_prompt(tiny_clip):
    names = ["red circle", "blue square"]
    words = PromptLearner(tiny_clip.model, tiny_clip.tokenizer, names, ctx_init="itap of a", context_from="words")
    tokens = PromptLearner(tiny_clip.model, tiny_clip.tokenizer, names, ctx_init="itap of a")
    assert words.n_ctx == 3 and tokens.n_ctx == 4
    with torch.no_grad():
        handcrafted = F.normalize(tiny_clip.model.encode_text(
            tiny_clip.tokenizer([f"itap of a {name}." for name in names])).float(), dim=-1)
        assert torch.allclose(words(), handcrafted, atol=1e-5)   # the 4th token stays, frozen, before the class
        assert torch.allclose(tokens(), handcrafted, atol=1e-5)
    big = PromptLearner(tiny_clip.model, tiny_clip.tokenizer, names, ctx_init="a_photo_of_a", context_from="words")
    assert big.n_ctx == 4                                          # CoOp reads "_" as a space
    assert PROTOCOLS["grip"].context_from == PROTOCOLS["cpl"].context_from == "words"
    assert PROTOCOLS["project"].context_from == "tokens"
