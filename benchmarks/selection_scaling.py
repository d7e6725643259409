"""How pseudo-label selection scales with the pool: balanced top-K (FPL, CoFT, GRIP) and CPL's candidate
sets and pools, in seconds and peak memory, against the sorting definition of balanced top-K where
that fits.

    python benchmarks/selection_scaling.py                                   # N in {20k, 100k, 1M} x C in {100, 1000}
    python benchmarks/selection_scaling.py --sizes 20000x100 100000x100

Posteriors are the softmax of 5 · N(0, 1) logits (seeded, float32, made a chunk of rows at a time).
Balanced top-K runs with k = 16 and over GRIP's schedule (K_t for t = 1..R, the R calls' total);
`select_balanced_by_sorting` runs on the same inputs while N·C <= --sort-limit (past that it needs
tens of GB and minutes) and the table says whether both took the same (image, class) pairs. CPL:
its sets (intra ∩ inter, α = 0.75, β = 1 - 2/C) and its pools with caps k. Peak memory is what
tracemalloc saw numpy allocate during the calls, beyond the posteriors; a selection's Candidates
carry one-hot weights (selected x C float32), so a GRIP round that selects the whole pool peaks at
least at the size of the posteriors.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from pipeline.pseudolabel.rules import (
    assign_to_pools,
    grip_k,
    inter_instance_sets,
    intra_instance_sets,
    select_balanced,
    select_balanced_by_sorting,
    softmax,
)

SORTING_BYTES_PER_PAIR = 16   # the int64 tie-break and lexsort's int64 order, beside the negated posteriors


def posteriors(n: int, c: int, seed: int, rows_per_chunk: int = 10_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    probs = np.empty((n, c), dtype=np.float32)
    for start in range(0, n, rows_per_chunk):
        rows = slice(start, min(start + rows_per_chunk, n))
        probs[rows] = softmax(5 * rng.standard_normal((rows.stop - start, c), dtype=np.float32))
    return probs


def measured(calls):
    """Run the calls in turn: their results, total seconds and peak bytes allocated during any of them."""
    tracemalloc.start()
    results, seconds, peak = [], 0.0, 0
    for call in calls:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        started = time.perf_counter()
        results.append(_kept(call()))
        seconds += time.perf_counter() - started
        peak = max(peak, tracemalloc.get_traced_memory()[1] - baseline)
    tracemalloc.stop()
    return results, seconds, peak


def timed(calls):
    """The same without tracemalloc, whose bookkeeping would slow the sorting rule's Python loop."""
    started = time.perf_counter()
    results = [_kept(call()) for call in calls]
    return results, time.perf_counter() - started


def _kept(result):
    """What the comparison needs: a selection's (rows, labels), not its selected x C weights (10 of
    those at 1M x 1000 would not fit in memory)."""
    return (result.rows, result.labels) if hasattr(result, "rows") else result


def same_pairs(a, b) -> bool:
    return np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def row(size: str, rule: str, schedule: str, seconds: float, peak: int, sorting: str = "", identical: str = ""):
    print(f"{size:<13}{rule:<17}{schedule:<12}{seconds:>9.2f}{peak / 2**20:>10.1f}   {sorting:<26}{identical}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=[f"{n}x{c}" for n in (20_000, 100_000, 1_000_000)
                                                        for c in (100, 1000)], help="N x C pairs, e.g. 20000x100")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=10, help="GRIP's R")
    parser.add_argument("--sort-limit", type=float, default=1e8, help="largest N·C the sorting rule runs at")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"{'N x C':<13}{'rule':<17}{'schedule':<12}{'new s':>9}{'peak MB':>10}   {'sorting s':<26}identical")
    for size in args.sizes:
        n, c = (int(part) for part in size.lower().split("x"))
        probs = posteriors(n, c, args.seed)
        print(f"# {size}: posteriors {probs.nbytes / 2**20:.0f} MB", flush=True)
        schedules = {f"k={args.k}": [args.k],
                     f"GRIP x{args.rounds}": [grip_k(t, n, c, args.rounds) for t in range(1, args.rounds + 1)]}
        for schedule, ks in schedules.items():
            new, seconds, peak = measured([lambda k=k: select_balanced(probs, k) for k in ks])
            if n * c <= args.sort_limit:
                reference, sorting_seconds = timed([lambda k=k: select_balanced_by_sorting(probs, k) for k in ks])
                identical = "yes" if all(map(same_pairs, new, reference)) else "no"
                row(size, "balanced top-K", schedule, seconds, peak, f"{sorting_seconds:.2f}", identical)
            else:
                needs = n * c * (SORTING_BYTES_PER_PAIR + probs.itemsize) / 2**30   # tracemalloc: 20 B at float32
                row(size, "balanced top-K", schedule, seconds, peak, f"skipped (needs ~{needs:.1f} GB)")
            del new
        (sets,), seconds, peak = measured([lambda: intra_instance_sets(probs, 0.75)
                                           & inter_instance_sets(probs, max(0.0, 1 - 2 / c))])
        row(size, "CPL sets", "", seconds, peak)
        _, seconds, peak = measured([lambda: assign_to_pools(probs, sets, np.full(c, args.k))])
        row(size, "CPL pools", f"k={args.k}", seconds, peak)
        del sets, probs


if __name__ == "__main__":
    main()
