"""The candidates paradigm and the partial-label losses: candidate draws, each loss against its
definition, RC's and LWS's updates, prompt alignment, the params that configure them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from pipeline.config.params import DatasetParams, ParadigmParams, parse_params
from pipeline.core.errors import PipelineError
from pipeline.datasets.candidate_sets import candidate_masks, candidate_table, draw_candidate_masks
from pipeline.methods.catalog import check_method
from pipeline.training.losses import (
    LOSSES,
    aligned,
    alignment_loss,
    alignment_target,
    build_loss,
    cavl_targets,
    lws_weights,
    rc_confidence,
)

N_CLASSES = 10


def batch(seed=0, n=16, classes=N_CLASSES, partial_rate=0.3):
    generator = torch.Generator().manual_seed(seed)
    logits = 20 * torch.randn(n, classes, generator=generator)
    labels = torch.randint(0, classes, (n,), generator=generator)
    masks = torch.tensor(draw_candidate_masks(labels.numpy(), classes, partial_rate, seed), dtype=torch.float32)
    return logits, labels, masks


@pytest.mark.parametrize("partial_rate", [0.0, 0.1, 0.3, 0.5, 0.7])
def test_drawn_sets_hold_the_true_label_and_have_the_expected_mean_size(partial_rate):
    labels = np.random.default_rng(1).integers(0, N_CLASSES, 10_000)
    masks = draw_candidate_masks(labels, N_CLASSES, partial_rate, seed=7)
    assert masks[np.arange(len(labels)), labels].all()
    expected = 1 + partial_rate * (N_CLASSES - 1)
    assert abs(masks.sum(axis=1).mean() - expected) <= 0.02 * expected
    assert np.array_equal(masks, draw_candidate_masks(labels, N_CLASSES, partial_rate, seed=7))
    if partial_rate:
        assert not np.array_equal(masks, draw_candidate_masks(labels, N_CLASSES, partial_rate, seed=8))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_with_single_label_sets_each_loss_is_cross_entropy_on_the_true_label(name):
    logits, labels, _ = batch(partial_rate=0.0)
    one_hot = F.one_hot(labels, N_CLASSES).float()
    rows = torch.arange(len(labels))
    loss = build_loss(name, one_hot, non_candidate_weight=0.0)  # options a loss does not use are ignored
    if name == "lws":  # its weights start at 1/C; after one update the candidate term is CE exactly
        loss.update(logits, rows)
    assert torch.allclose(loss(logits, rows), F.cross_entropy(logits, labels), atol=1e-5)


def test_lws_adds_the_non_candidate_term_by_its_weight():
    logits, labels, masks = batch()
    rows = torch.arange(len(labels))
    probs = F.softmax(logits, dim=1)
    plain = build_loss("lws", masks, non_candidate_weight=0.0)
    weighted = build_loss("lws", masks, non_candidate_weight=2.0)
    for loss in (plain, weighted):
        loss.update(logits, rows)
    weights = lws_weights(logits, masks)
    others = -(weights * (1 - masks) * torch.log1p(-probs.clamp(max=1 - 1e-7))).sum(dim=1).mean()
    assert torch.allclose(weighted(logits, rows) - plain(logits, rows), 2.0 * others, atol=1e-5)
    # each half of the weights is a distribution: over the candidates and over the others
    assert torch.allclose((weights * masks).sum(dim=1), torch.ones(len(labels)), atol=1e-5)


def test_cc_is_minus_log_of_the_candidate_mass():
    logits, _, masks = batch(seed=3)
    rows = torch.arange(len(masks))
    expected = -torch.log((F.softmax(logits.double(), dim=1) * masks).sum(dim=1)).mean()
    assert torch.allclose(build_loss("cc", masks)(logits, rows).double(), expected, atol=1e-5)


def test_rc_weights_stay_a_distribution_over_the_candidates_and_move_to_the_posterior():
    logits, labels, masks = batch(seed=4, partial_rate=0.5)
    rc = build_loss("rc", masks)
    rows = torch.arange(len(labels))
    assert torch.allclose(rc.confidence, masks / masks.sum(dim=1, keepdim=True))  # uniform at first
    before = rc(logits, rows)
    first = rows[:8]
    rc.update(logits[:8], first)
    confidence = rc.confidence
    assert torch.allclose(confidence.sum(dim=1), torch.ones(len(labels)), atol=1e-6)
    assert (confidence[masks == 0] == 0).all()
    posterior = F.softmax(logits, dim=1) * masks
    assert torch.allclose(confidence[:8], posterior[:8] / posterior[:8].sum(dim=1, keepdim=True), atol=1e-6)
    assert torch.allclose(confidence[8:], masks[8:] / masks[8:].sum(dim=1, keepdim=True))  # untouched rows
    # the updated weights follow the model, so its own loss on them drops
    assert rc(logits, rows) < before
    assert torch.equal(rc_confidence(logits, masks).argmax(dim=1), (logits.masked_fill(masks == 0, -1e9)).argmax(dim=1))


def test_updates_stay_exact_when_the_candidates_mass_underflows():
    logits = torch.tensor([[200.0, 0.0, 1.0, 0.0]])   # softmax gives the candidates (1, 2) ~1e-87: 0 in float32
    masks = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    expected = torch.softmax(torch.tensor([[0.0, 1.0]]), dim=1)
    assert torch.allclose(rc_confidence(logits, masks)[:, 1:3], expected)
    assert torch.allclose(lws_weights(logits, masks), torch.tensor([[1.0, expected[0, 0], expected[0, 1], 0.0]]))
    teacher = torch.tensor([[1.0, 0.0, 0.0, 0.0]])      # no teacher mass on any candidate: uniform over them
    assert torch.allclose(alignment_target(teacher, teacher, masks, 0.0), torch.tensor([[0.0, 0.5, 0.5, 0.0]]))


def test_cavl_targets_are_the_candidate_with_the_largest_activation_value():
    logits = torch.tensor([[3.0, -5.0, 0.5, 2.0], [-2.0, -3.0, 0.9, 4.0]])
    masks = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    # z|1-z|: row 0 -> [6, -30, .25, (2)] -> class 0; row 1 -> [-6, -12, ...]: the best candidate, never a non-candidate
    assert cavl_targets(logits, masks).tolist() == [0, 0]


@pytest.mark.parametrize("mix", [0.0, 0.5])
def test_alignment_target_is_zero_outside_the_candidates_and_sums_to_one(mix):
    logits, _, masks = batch(seed=5, partial_rate=0.4)
    teacher = F.softmax(torch.randn(*masks.shape), dim=1)
    target = alignment_target(teacher, F.softmax(logits, dim=1), masks, mix)
    assert (target[masks == 0] == 0).all()
    assert torch.allclose(target.sum(dim=1), torch.ones(len(masks)), atol=1e-6)
    if mix == 0.0:
        assert torch.allclose(target, teacher * masks / (teacher * masks).sum(dim=1, keepdim=True), atol=1e-6)


def test_aligned_loss_has_the_pll_scale_and_mixes_both_gradients():
    logits, _, masks = batch(seed=6)
    logits.requires_grad_(True)
    rows = torch.arange(len(masks))
    teacher = F.softmax(torch.randn(*masks.shape), dim=1)
    pll = build_loss("cc", masks)(logits, rows)
    align = alignment_loss(logits, alignment_target(teacher, F.softmax(logits.detach(), dim=1), masks, 0.0))
    total = aligned(pll, align)
    assert torch.allclose(total, 2 * pll)
    grad_total, = torch.autograd.grad(total, logits, retain_graph=True)
    grad_pll, = torch.autograd.grad(pll, logits, retain_graph=True)
    grad_align, = torch.autograd.grad(align, logits)
    assert torch.allclose(grad_total, grad_pll + (pll / align).detach() * grad_align, atol=1e-6)
    wrapped = build_loss("cc", masks, teacher=teacher)
    assert torch.allclose(wrapped(logits, rows), total)


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5])
def test_partial_rate_outside_zero_one_is_rejected_with_its_key(rate):
    with pytest.raises(PipelineError, match=r"paradigm_options\.partial_rate"):
        parse_params({"method": "pll", "paradigm": "candidates", "paradigm_options": {"partial_rate": rate}})


def test_methods_and_paradigms_must_fit():
    assert parse_params({"method": "pll", "paradigm": "candidates"}).train.pll_loss == "cc"
    assert parse_params({"method": "zeroshot", "paradigm": "candidates"}).method == "zeroshot"
    with pytest.raises(PipelineError, match=r"method 'grip' does not run under paradigm 'candidates'; "
                                            r"methods that do: pll, zeroshot"):
        check_method(parse_params({"method": "grip", "paradigm": "candidates"}))
    with pytest.raises(PipelineError, match=r"method 'pll' does not run under paradigm 'ul'"):
        check_method(parse_params({"method": "pll"}))
    with pytest.raises(PipelineError, match=r"candidates_file is read only under paradigm: candidates"):
        parse_params({"paradigm_options": {"candidates_file": "sets.csv"}})
    with pytest.raises(PipelineError, match=r"train.pll_loss: unknown pll_loss 'pico'; choose one of: cc, rc, lws, cavl"):
        parse_params({"method": "pll", "paradigm": "candidates", "train": {"pll_loss": "pico"}})


def manifest(root):
    rows = []
    for split in ("train", "test"):
        for label, name in enumerate(["cat", "dog", "fox"]):
            for index in range(2):
                rows.append({"id": f"{split}/{name}/{index}.png", "path": str(root / split / name / f"{index}.png"),
                             "split": split, "label": label})
    return pd.DataFrame(rows)


def test_candidates_file_gives_the_sets_by_relative_path_or_id(tmp_path):
    frame = manifest(tmp_path)
    lines = ["path,candidates", "train/cat/0.png,cat", "train/cat/1.png,cat;dog", "train/dog/0.png,dog ; fox",
             "train/dog/1.png,dog", "train/fox/0.png,fox;cat;dog", "train/fox/1.png,fox"]
    (tmp_path / "sets.csv").write_text("\n".join(lines) + "\n")
    options = ParadigmParams(candidates_file=str(tmp_path / "sets.csv"))
    table = candidate_table(frame, ["cat", "dog", "fox"], options, DatasetParams(name="folder", root=str(tmp_path)))
    assert table["candidates"].tolist() == [[0], [0, 1], [1, 2], [1], [0, 1, 2], [2]]
    masks = candidate_masks(table, frame.loc[frame["split"] == "train", "id"].to_numpy()[::-1], 3)
    assert masks.sum(axis=1).tolist() == [1, 3, 1, 2, 2, 1]

    parquet = tmp_path / "sets.parquet"
    pd.DataFrame({"path": ["train/cat/0.png"], "candidates": [["cat", "dog"]]}).to_parquet(parquet)
    with pytest.raises(PipelineError, match=r"5 of 6 training images have no row \(first: 'train/cat/1.png'\)"):
        candidate_table(frame, ["cat", "dog", "fox"], ParadigmParams(candidates_file=str(parquet)),
                        DatasetParams(name="folder", root=str(tmp_path)))


@pytest.mark.parametrize("row, message", [
    ("train/cat/1.png,cat;wolf", r"sets.csv line 3 \('train/cat/1.png'\): unknown class 'wolf'; known classes include 'cat'"),
    ("train/cat/1.png, ; ", r"sets.csv line 3 \('train/cat/1.png'\): empty candidate set"),
    ("test/cat/1.png,cat", r"sets.csv line 3 \('test/cat/1.png'\): not a training image"),
    ("train/cat/0.png,dog", r"sets.csv line 3 \('train/cat/0.png'\): the image has a second row"),
])
def test_a_bad_candidates_file_row_is_named(tmp_path, row, message):
    (tmp_path / "sets.csv").write_text(f"path,candidates\ntrain/cat/0.png,cat\n{row}\n")
    with pytest.raises(PipelineError, match=message):
        candidate_table(manifest(tmp_path), ["cat", "dog", "fox"],
                        ParadigmParams(candidates_file=str(tmp_path / "sets.csv")),
                        DatasetParams(name="folder", root=str(tmp_path)))
