"""CPL's candidate sets and pools on a hand-worked example and on random matrices; the one loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.core.candidates import Candidates, candidate_loss
from pipeline.methods.cpl import resolve_beta
from pipeline.pseudolabel.rules import assign_to_pools, cpl_pool_caps, inter_instance_sets, intra_instance_sets, select_cpl

# 6 images x 3 classes (the same matrix as test_pseudolabels), worked on paper below.
PROBS = np.array([
    [0.90, 0.05, 0.05],
    [0.80, 0.15, 0.05],
    [0.70, 0.20, 0.10],
    [0.10, 0.60, 0.30],
    [0.05, 0.15, 0.80],
    [0.50, 0.10, 0.40],
])


def sets(mask):
    return [set(np.flatnonzero(row).tolist()) for row in mask]


def test_intra_instance_sets_by_hand():
    # Top posteriors [.9 .8 .7 .6 .8 .5]: their 0.5-quantile is tau = (.7 + .8) / 2 = .75. A class is
    # kept while the mass ranked above it is <= tau: image 2 keeps 0 (.7 <= .75) and then class 1.
    assert sets(intra_instance_sets(PROBS, 0.5)) == [{0}, {0}, {0, 1}, {1, 2}, {2}, {0, 2}]


def test_inter_instance_sets_by_hand():
    # Column medians: class 0 (.5 + .7) / 2 = .6, class 1 (.15 + .15) / 2 = .15, class 2 (.1 + .3) / 2 = .2
    assert sets(inter_instance_sets(PROBS, 0.5)) == [{0}, {0, 1}, {0, 1}, {1, 2}, {1, 2}, {2}]


def test_pools_by_hand_with_eviction():
    mask = intra_instance_sets(PROBS, 0.5) & inter_instance_sets(PROBS, 0.5)
    assert sets(mask) == [{0}, {0}, {0, 1}, {1, 2}, {2}, {2}]
    # Room for 2: image 2 loses class 0 to images 0 and 1 and falls back to class 1.
    assert assign_to_pools(PROBS, mask, np.array([2, 2, 2])).tolist() == [0, 0, 1, 1, 2, 2]
    # Room for 1: image 1 is refused by class 0; image 2 enters class 1 and is evicted by image 3
    # (.6 > .2); image 5 is refused by class 2 (.4 < .8). Three images end in no pool.
    assert assign_to_pools(PROBS, mask, np.array([1, 1, 1])).tolist() == [0, -1, -1, 1, 2, -1]


def test_select_cpl_soft_first_round_then_binary():
    soft = select_cpl(PROBS, 0.5, 0.5, np.array([2, 2, 2]), soft=True)
    assert soft.rows.tolist() == [0, 1, 2, 3, 4, 5] and soft.labels.tolist() == [0, 0, 1, 1, 2, 2]
    np.testing.assert_allclose(soft.weights[2], [0.7 / 0.9, 0.2 / 0.9, 0.0], rtol=1e-6)
    np.testing.assert_allclose(soft.weights[3], [0.0, 0.6 / 0.9, 0.3 / 0.9], rtol=1e-6)
    np.testing.assert_allclose(soft.confidence, [0.9, 0.8, 0.2, 0.6, 0.8, 0.4], rtol=1e-6)
    hard = select_cpl(PROBS, 0.5, 0.5, np.array([2, 2, 2]), soft=False)
    assert hard.weights[2].tolist() == [1.0, 1.0, 0.0] and hard.mean_set_size() == pytest.approx(8 / 6)
    true = np.array([0, 0, 0, 2, 2, 0])
    assert hard.accuracy(true) == pytest.approx(3 / 6) and hard.coverage(true) == pytest.approx(5 / 6)


def test_pool_caps_grow_from_what_each_pool_filled():
    assert cpl_pool_caps(4, None, 3).tolist() == [4, 4, 4]
    # The fullest pool held 5, the target is 8: every pool grows by 3, capped at 8.
    assert cpl_pool_caps(8, np.array([5, 3, 0]), 3).tolist() == [8, 6, 3]


def test_beta_auto_times_m():
    assert resolve_beta("auto*2", 24) == pytest.approx(1 - 2 / 24) and resolve_beta(0.8, 10) == 0.8
    assert resolve_beta("auto*3.0", 4) == pytest.approx(0.25) and resolve_beta("auto*9", 4) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_pools_on_random_matrices(seed):
    rng = np.random.default_rng(seed)
    n, c = 200, 7
    probs = rng.dirichlet(np.full(c, 0.3), size=n)
    alpha, beta = rng.uniform(0.2, 0.9), rng.uniform(0.3, 0.95)
    intra = intra_instance_sets(probs, alpha)
    assert intra[np.arange(n), probs.argmax(axis=1)].all()  # the top class is always in the intra set
    mask = intra & inter_instance_sets(probs, beta)
    caps = rng.integers(0, 15, c)
    assigned = assign_to_pools(probs, mask, caps)
    placed = np.flatnonzero(assigned >= 0)
    assert mask[placed, assigned[placed]].all()                           # only into a candidate class
    assert (np.bincount(assigned[placed], minlength=c) <= caps).all()     # pools <= K_t
    assert not np.any(assigned[~mask.any(axis=1)] >= 0)                   # empty sets drop out
    # Stable: no image prefers a class (ranks it above where it ended) that has room, or that holds
    # a less confident image; so no image could move and be better off.
    counts = np.bincount(assigned[placed], minlength=c)
    weakest = np.full(c, np.inf)
    for image in placed:
        weakest[assigned[image]] = min(weakest[assigned[image]], probs[image, assigned[image]])
    for image in range(n):
        mine = probs[image, assigned[image]] if assigned[image] >= 0 else -1.0
        better = np.flatnonzero(mask[image] & (probs[image] > mine))
        for label in better:
            assert counts[label] == caps[label], (image, label)
            assert weakest[label] >= probs[image, label], (image, label)
    # Asking in another order ends in the same pools (no ties in p here, so the index tie-break is idle).
    order = rng.permutation(n)
    assert assign_to_pools(probs[order], mask[order], caps).tolist() == assigned[order].tolist()


def test_candidate_loss_is_cross_entropy_for_singletons_and_cc_for_sets():
    torch.manual_seed(0)
    logits = (5 * torch.randn(8, 6)).requires_grad_()
    labels = torch.randint(0, 6, (8,))
    one_hot = F.one_hot(labels, 6).float()
    # Singletons: the value and the gradient of cross-entropy, bit for bit.
    ours, = torch.autograd.grad(candidate_loss(logits, one_hot), logits)
    theirs, = torch.autograd.grad(F.cross_entropy(logits, labels), logits)
    assert torch.equal(candidate_loss(logits, one_hot), F.cross_entropy(logits, labels)) and torch.equal(ours, theirs)
    logits = logits.detach()
    mask = one_hot.clone()
    mask[:, 0] = 1.0
    expected = -torch.log((F.softmax(logits, dim=1) * mask).sum(dim=1)).mean()
    assert torch.allclose(candidate_loss(logits, mask), expected, atol=1e-6)
    # A huge logit gap does not underflow to log(0).
    extreme = torch.tensor([[200.0, -200.0, 0.0]])
    assert torch.isfinite(candidate_loss(extreme, torch.tensor([[0.0, 1.0, 0.0]])))


def test_single_label_candidates():
    single = Candidates.single(np.array([3, 1]), np.array([2, 0]), 4, np.array([0.5, 0.9]))
    assert single.sets() == [[2], [0]] and single.mean_set_size() == 1.0
    true = np.array([0, 0, 0, 2])
    assert single.accuracy(true) == 1.0 and single.coverage(true) == 1.0


def test_candidate_sets_round_trip_through_pseudolabels_parquet(tmp_path, monkeypatch):
    from pipeline.core import paths
    from pipeline.core.artifacts import write_table
    from pipeline.pseudolabel.store import pseudo_labels_frame, read_pseudo_labels

    monkeypatch.chdir(tmp_path)
    soft = select_cpl(PROBS, 0.5, 0.5, np.array([2, 2, 2]), soft=True)
    pool_ids = np.array([f"img-{i}" for i in range(len(PROBS))])
    frame = pseudo_labels_frame(pool_ids, soft)
    assert frame["candidates"].tolist()[2] == [0, 1] and frame["pseudo_label"].tolist()[2] == 1
    write_table(paths.PSEUDOLABELS, frame)
    back = read_pseudo_labels(pool_ids, 3)
    np.testing.assert_array_equal(back.weights, soft.weights)
    np.testing.assert_array_equal(back.rows, soft.rows)
    np.testing.assert_array_equal(back.labels, soft.labels)
