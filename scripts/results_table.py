"""Aggregate `dvc exp show --json` into a Markdown table: mean ± std over seeds per configuration.

    dvc exp show --json > /tmp/exps.json && python scripts/results_table.py /tmp/exps.json

Rows are grouped by the params that differ between experiments (except `seed`); each cell is the
mean ± sample standard deviation over the seeds found, with the seed count.
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


def cell(values: list[float]) -> str:
    values = [100 * v for v in values if v is not None]
    if not values:
        return "–"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {spread:.1f}"


def main(path: str) -> None:
    rows = experiments(json.load(open(path)))
    keys = sorted({k for params, _ in rows for k in params})
    varying = [k for k in keys if k != "seed" and len({json.dumps(p.get(k)) for p, _ in rows}) > 1]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for params, metrics in rows:
        groups[tuple(json.dumps(params.get(k)) for k in varying)].append(metrics)
    metric_names = [m for m in ("accuracy", "harmonic_mean", "pseudo_label_accuracy") if any(m in r for _, r in rows)]
    print("| " + " | ".join(varying + metric_names + ["seeds"]) + " |")
    print("|" + "---|" * (len(varying) + len(metric_names) + 1))
    for group, results in sorted(groups.items(), key=lambda item: -statistics.mean(
            [r.get(metric_names[0]) or 0 for r in item[1]])):
        print("| " + " | ".join([json.loads(v) if isinstance(json.loads(v), str) else v for v in group]
                                + [cell([r.get(m) for r in results]) for m in metric_names]
                                + [str(len(results))]) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
