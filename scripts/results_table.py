"""Aggregate `dvc exp show --json` into a Markdown table: mean ± std over seeds per configuration.

    dvc exp show --json > /tmp/exps.json && python scripts/results_table.py /tmp/exps.json
    python scripts/results_table.py /tmp/exps.json --direct results/methods_direct_h200.json

`--direct FILE` adds the rows of `scripts/methods_direct.py`; where a configuration and seed were also
run as a DVC experiment, the experiment's row is kept and both are printed as a cross-check.

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


def direct_rows(path: str, existing: list[tuple[dict, dict]]) -> list[tuple[dict, dict]]:
    seen = {json.dumps(params, sort_keys=True): metrics for params, metrics in existing}
    rows = []
    for row in json.load(open(path)):
        params = flatten(row["params"])
        twin = seen.get(json.dumps(params, sort_keys=True))
        if twin is None:
            rows.append((params, row["metrics"]))
        else:
            headline = "accuracy" if "accuracy" in twin else "harmonic_mean"
            print(f"cross-check {','.join(row['overrides'])}: DVC {100 * twin[headline]:.1f}, "
                  f"direct {100 * row['metrics'][headline]:.1f} ({headline})", file=sys.stderr)
    return rows


def main(path: str, direct: list[str]) -> None:
    rows = experiments(json.load(open(path)))
    for extra in direct:
        rows += direct_rows(extra, rows)
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
    arguments = sys.argv[1:]
    direct = [arguments[i + 1] for i, a in enumerate(arguments) if a == "--direct"]
    main(arguments[0], direct)
