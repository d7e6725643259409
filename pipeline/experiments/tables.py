"""Results tables from `dvc exp show --json`: mean ± sample standard deviation over seeds.

Rows are grouped by the params that differ between the experiments given (except `seed`), ordered
by paradigm and then by the headline metric (accuracy, or TRZSL's harmonic mean).
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict

# Metrics shown, in order; all but the set size are shares, printed in %.
METRICS = ("accuracy", "harmonic_mean", "seen_accuracy", "unseen_accuracy", "pseudo_label_accuracy",
           "candidate_coverage", "mean_candidate_set_size")
PERCENT = set(METRICS) - {"mean_candidate_set_size"}


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
    """(flat params, metrics) of every finished experiment in `dvc exp show --json` output. A queued,
    running or failed one is skipped: dvc shows it with the metrics of the workspace it started from."""
    rows = []
    for commit in table:
        for exp in commit.get("experiments") or []:
            if (exp.get("executor") or {}).get("state", "success") != "success":
                continue
            for revision in exp.get("revs", []):
                data = revision.get("data") or {}
                params = flatten(data.get("params", {}).get("params.yaml", {}).get("data", {}))
                metrics = data.get("metrics", {}).get("metrics.json", {}).get("data", {})
                if metrics:
                    rows.append((params, metrics))
    return rows


def cell(values: list[float], scale: float = 100.0) -> str:
    values = [scale * v for v in values if v is not None]
    if not values:
        return "–"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    digits = 1 if scale == 100.0 else 2
    return f"{statistics.mean(values):.{digits}f} ± {spread:.{digits}f}"


def markdown_table(rows: list[tuple[dict, dict]], columns: list[str] | None = None) -> str:
    """One line per configuration; `columns` fixes the param columns and the row order (default: the
    params that vary, rows by paradigm and then best first)."""
    if not rows:
        return "(no experiments with metrics)\n"
    keys = sorted({k for params, _ in rows for k in params})
    varying = columns or [k for k in keys if k != "seed" and len({json.dumps(p.get(k)) for p, _ in rows}) > 1]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for params, metrics in rows:
        groups[tuple(json.dumps(params.get(k)) for k in varying)].append(metrics)
    metric_names = [m for m in METRICS if any(m in r for _, r in rows)]
    lines = ["| " + " | ".join(varying + metric_names + ["seeds"]) + " |",
             "|" + "---|" * (len(varying) + len(metric_names) + 1)]

    def headline(results: list[dict]) -> float:  # accuracy (UL, SSL) or harmonic mean (TRZSL)
        return statistics.mean([r.get("accuracy") or r.get("harmonic_mean") or 0 for r in results])

    paradigm = varying.index("paradigm") if "paradigm" in varying else None
    order = (lambda item: item[0]) if columns else (lambda item: (
        "" if paradigm is None else item[0][paradigm], -headline(item[1])))
    for group, results in sorted(groups.items(), key=order):
        values = [json.loads(v) if isinstance(json.loads(v), str) else v for v in group]  # strings unquoted
        lines.append("| " + " | ".join(values
                                       + [cell([r.get(m) for r in results], 100.0 if m in PERCENT else 1.0)
                                          for m in metric_names]
                                       + [str(len(results))]) + " |")
    return "\n".join(lines) + "\n"
