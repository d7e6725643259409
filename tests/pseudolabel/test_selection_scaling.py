"""The scalable selections equal their definitions: balanced top-K equals the sorting walk
(`select_balanced_by_sorting`), the pools equal the sequential heap version they replaced (copied
here as the reference), and the chunked CPL sets equal the whole-matrix computation. Tiny chunks and
preference lists (the `tight` fixture) run the chunking, refill and tie paths on small matrices."""

from __future__ import annotations

import heapq
import subprocess
import sys
from collections import deque
from pathlib import Path

import numpy as np
import pytest

from pipeline.pseudolabel import rules as pseudolabels
from pipeline.pseudolabel.rules import (
    assign_to_pools,
    inter_instance_sets,
    intra_instance_sets,
    select_balanced,
    select_balanced_by_sorting,
)

# (CHUNK_ELEMENTS, PREFERENCE_WIDTH): the defaults, then one row or one class per chunk and lists
# of one to three classes, so that images run out of their lists and refill many times.
TIGHT = [(pseudolabels.CHUNK_ELEMENTS, pseudolabels.PREFERENCE_WIDTH), (1, 1), (7, 2), (40, 3)]


@pytest.fixture(params=TIGHT, ids=lambda p: f"chunk{p[0]}-width{p[1]}")
def tight(request, monkeypatch):
    chunk, width = request.param
    monkeypatch.setattr(pseudolabels, "CHUNK_ELEMENTS", chunk)
    monkeypatch.setattr(pseudolabels, "PREFERENCE_WIDTH", width)


def heap_pools(probs, mask, caps):
    """The replaced `assign_to_pools`, verbatim: one image at a time, a min-heap per class."""
    n = len(probs)
    preference = [np.flatnonzero(mask[i])[np.argsort(-probs[i, mask[i]], kind="stable")] for i in range(n)]
    asked = np.zeros(n, dtype=np.int64)
    pools: list[list[tuple[float, int]]] = [[] for _ in range(probs.shape[1])]  # min-heaps of (p, -image)
    waiting = deque(i for i in range(n) if len(preference[i]))
    while waiting:
        image = waiting.popleft()
        while asked[image] < len(preference[image]):
            label = int(preference[image][asked[image]])
            asked[image] += 1
            entry = (float(probs[image, label]), -image)
            pool = pools[label]
            if len(pool) < caps[label]:
                heapq.heappush(pool, entry)
                break
            if pool and entry > pool[0]:
                evicted = heapq.heapreplace(pool, entry)
                waiting.append(-evicted[1])
                break
    assigned = np.full(n, -1, dtype=np.int64)
    for label, pool in enumerate(pools):
        for _, negative in pool:
            assigned[-negative] = label
    return assigned


def whole_intra(probs, alpha):
    """The replaced `intra_instance_sets`: one argsort of the whole matrix."""
    tau = float(np.quantile(probs.max(axis=1), alpha))
    order = np.argsort(-probs, axis=1, kind="stable")
    sorted_probs = np.take_along_axis(probs, order, axis=1)
    before = np.cumsum(sorted_probs, axis=1) - sorted_probs
    keep_sorted = before <= tau
    keep_sorted[:, 0] = True
    mask = np.zeros_like(keep_sorted)
    np.put_along_axis(mask, order, keep_sorted, axis=1)
    return mask


def whole_inter(probs, beta):
    """The replaced `inter_instance_sets`: one quantile over the whole first axis."""
    return probs >= np.quantile(probs, beta, axis=0, keepdims=True)


def posteriors(rng, n, c, kind, dtype):
    """Random posteriors; every kind but "smooth" is full of ties."""
    probs = rng.dirichlet(np.full(c, 0.5), size=n) if n else np.zeros((0, c))
    if kind == "one decimal":
        probs = probs.round(1)
    elif kind == "two decimals":
        probs = probs.round(2)
    elif kind == "repeated rows" and n:
        probs = probs[rng.integers(0, max(1, n // 3), n)]
    elif kind == "repeated columns":
        probs = probs[:, rng.integers(0, max(1, c // 2), c)]
    elif kind == "constant":
        probs = np.full((n, c), 1.0 / c)
    return probs.astype(dtype)


KINDS = ["smooth", "one decimal", "two decimals", "repeated rows", "repeated columns", "constant"]
SHAPES = [(0, 3), (1, 1), (6, 1), (1, 7), (3, 10), (12, 40), (40, 5), (90, 7), (120, 24)]


def same_selection(probs, k):
    new, definition = select_balanced(probs, k), select_balanced_by_sorting(probs, k)
    return (np.array_equal(new.rows, definition.rows) and np.array_equal(new.labels, definition.labels)
            and np.array_equal(new.confidence, definition.confidence))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_balanced_top_k_equals_the_sorting_walk(tight, dtype):
    rng = np.random.default_rng(0)
    mismatches = []
    for n, c in SHAPES:
        for kind in KINDS:
            probs = posteriors(rng, n, c, kind, dtype)
            for k in sorted({0, 1, 2, 3, n // max(c, 1), n // max(c, 1) + 1, n + 1}):
                if not same_selection(probs, k):
                    mismatches.append((n, c, kind, k))
    assert mismatches == []


def test_balanced_top_k_takes_the_same_pairs_as_the_walk_by_hand():
    probs = np.array([[0.5, 0.5, 0.0],   # a tie: class 0 (lower index) first
                      [0.5, 0.5, 0.0],   # the same row: image 0 goes first into class 0
                      [0.2, 0.2, 0.6]])
    # Walk: (0,0) .5, (0,1) image taken, (1,0) class full (k=1), (1,1) .5, then (2,2) .6 came first.
    chosen = select_balanced(probs, 1)
    assert chosen.rows.tolist() == [0, 1, 2] and chosen.labels.tolist() == [0, 1, 2]
    assert select_balanced(probs, 2).labels.tolist() == [0, 0, 2]
    assert select_balanced(probs[:, :1], 2).rows.tolist() == [0, 1]       # C = 1: the best k images


@pytest.mark.parametrize("seed", range(4))
def test_pools_equal_the_heap_assignment(tight, seed):
    rng = np.random.default_rng(seed)
    mismatches = []
    for n, c in SHAPES:
        for kind in KINDS:
            for density in (0.1, 0.5, 1.0):
                dtype = (np.float32, np.float64)[int(rng.integers(2))]
                probs = posteriors(rng, n, c, kind, dtype)
                mask = rng.random((n, c)) < density
                mask[rng.random(n) < 0.1] = False                   # some images have no candidate at all
                caps = rng.integers(0, max(2, 2 * n // max(c, 1)), c)  # zero caps included
                if not np.array_equal(assign_to_pools(probs, mask, caps), heap_pools(probs, mask, caps)):
                    mismatches.append((n, c, kind, density, seed))
    assert mismatches == []


def test_no_mask_means_every_class(tight):
    rng = np.random.default_rng(5)
    probs = posteriors(rng, 90, 7, "two decimals", np.float32)
    caps = np.array([0, 3, 30, 1, 12, 5, 200])
    everything = np.ones(probs.shape, dtype=bool)
    assigned = assign_to_pools(probs, None, caps)
    assert np.array_equal(assigned, heap_pools(probs, everything, caps))
    assert not (assigned == 0).any() and np.bincount(assigned[assigned >= 0], minlength=7).tolist()[:2] == [0, 3]


def test_first_columns_are_a_stable_sort_prefix():
    rng = np.random.default_rng(3)
    key = -rng.random((200, 9)).round(1)                   # many equal keys per row
    for allowed in (None, rng.random(key.shape) < 0.7, rng.random(key.shape) < 0.1):  # dense, sparse
        ranked = np.where(allowed, key, np.inf) if allowed is not None else key
        for width in (1, 2, 5, 9):
            expected = np.argsort(ranked, axis=1, kind="stable")[:, :width]
            expected[np.take_along_axis(ranked, expected, axis=1) == np.inf] = -1
            assert np.array_equal(pseudolabels._first_columns(key, width, allowed), expected), width


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunked_cpl_sets_equal_the_whole_matrix(tight, dtype):
    rng = np.random.default_rng(1)
    for n, c in [(1, 1), (5, 1), (3, 10), (60, 7), (200, 24)]:
        for kind in KINDS:
            probs = posteriors(rng, n, c, kind, dtype)
            for alpha, beta in [(0.0, 1.0), (0.5, 0.5), (0.75, max(0.0, 1 - 2 / c)), (1.0, 0.0), (0.3, 0.97)]:
                assert np.array_equal(intra_instance_sets(probs, alpha), whole_intra(probs, alpha)), (n, c, kind)
                assert np.array_equal(inter_instance_sets(probs, beta), whole_inter(probs, beta)), (n, c, kind)


def test_benchmark_runs_and_finds_the_rules_identical():
    script = Path(__file__).parents[2] / "benchmarks" / "selection_scaling.py"
    result = subprocess.run([sys.executable, str(script), "--sizes", "300x7", "--rounds", "3"],
                            capture_output=True, text=True, check=True)
    balanced = [line for line in result.stdout.splitlines() if "balanced top-K" in line]
    assert len(balanced) == 2 and all(line.endswith("yes") for line in balanced), result.stdout
    assert sum("CPL" in line for line in result.stdout.splitlines()) == 2, result.stdout
