"""Aggregate `dvc exp show --json` into a Markdown table: mean ± std over seeds per configuration.

    dvc exp show --json > /tmp/exps.json && python scripts/results_table.py /tmp/exps.json
    python scripts/results_table.py /tmp/exps.json --direct results/methods_direct_h200.json

`--direct FILE` adds the rows of `scripts/methods_direct.py`; where a configuration and seed were also
run as a DVC experiment, the experiment's row is kept and both are printed as a cross-check. The
table itself is `pipeline.experiments.tables.markdown_table` (also behind `python -m pipeline.experiments.matrix`).
"""

from __future__ import annotations

import json
import sys

from pipeline.experiments.tables import experiments, flatten, markdown_table


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
    print(markdown_table(rows), end="")


if __name__ == "__main__":
    arguments = sys.argv[1:]
    main(arguments[0], [arguments[i + 1] for i, a in enumerate(arguments) if a == "--direct"])
