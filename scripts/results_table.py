"""Aggregate `dvc exp show --json` into a Markdown table: mean ± std over seeds per configuration.

    dvc exp show --json > /tmp/exps.json && python scripts/results_table.py /tmp/exps.json

Rows are grouped by the params that differ between experiments (except `seed`), by paradigm and then
by the headline metric (accuracy, or TRZSL's harmonic mean); each cell is the mean ± sample standard
deviation over the seeds found, with the seed count.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict


def flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def experiments(table: list) -> list[tuple[dict, dict]]:
    rows = []
    for commit in table:
        for exp in commit.get("experiments") or []:
            for revision in exp.get("revs", []):
                data = revision.get("data") or {}
                params = flatten(data.get("params", {}).get("params.yaml", {}).get("data", {}))
                metrics = data.get("metrics", {}).get("metrics.json", {}).get("data", {})
                if metrics:
                    rows.append((params, metrics))
    return rows


# Metrics shown, in order; all but the set size are shares, printed in %.
METRICS = ("accuracy", "harmonic_mean", "seen_accuracy", "unseen_accuracy", "pseudo_label_accuracy",
           "candidate_coverage", "mean_candidate_set_size")
PERCENT = set(METRICS) - {"mean_candidate_set_size"}


def cell(values: list[float], scale: float = 100.0) -> str:
    values = [scale * v for v in values if v is not None]
    if not values:
        return "–"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    digits = 1 if scale == 100.0 else 2
    return f"{statistics.mean(values):.{digits}f} ± {spread:.{digits}f}"


def main(path: str) -> None:
    rows = experiments(json.load(open(path)))
    keys = sorted({k for params, _ in rows for k in params})
    varying = [k for k in keys if k != "seed" and len({json.dumps(p.get(k)) for p, _ in rows}) > 1]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for params, metrics in rows:
        groups[tuple(json.dumps(params.get(k)) for k in varying)].append(metrics)
    metric_names = [m for m in METRICS if any(m in r for _, r in rows)]
    print("| " + " | ".join(varying + metric_names + ["seeds"]) + " |")
    print("|" + "---|" * (len(varying) + len(metric_names) + 1))

    def headline(results: list[dict]) -> float:  # accuracy (UL, SSL) or harmonic mean (TRZSL)
        return statistics.mean([r.get("accuracy") or r.get("harmonic_mean") or 0 for r in results])

    paradigm = varying.index("paradigm") if "paradigm" in varying else None
    for group, results in sorted(groups.items(), key=lambda item: (
            "" if paradigm is None else item[0][paradigm], -headline(item[1]))):
        print("| " + " | ".join([json.loads(v) if isinstance(json.loads(v), str) else v for v in group]
                                + [cell([r.get(m) for r in results], 100.0 if m in PERCENT else 1.0)
                                   for m in metric_names]
                                + [str(len(results))]) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
