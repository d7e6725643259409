"""Tables for the README from `scripts/adaptation_study.py` and `scripts/methods_direct.py` outputs.

    python scripts/adaptation_report.py studies/adaptation results/adaptation results/adaptation_runs.json

Writes `<out>.md` (markdown tables) and `<out>_diagnostics.json` (every variant's diagnostics, to keep
with the repository).
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def _stat(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    values = [v * scale for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (1 seed)"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def diagnostics_table(variants: dict[str, dict], per_class: int) -> list[str]:
    groups = defaultdict(list)
    for name, result in variants.items():
        captions, seed, made = name.split("-")
        if str(per_class) in result["by_images_per_class"]:
            groups[captions].append(result["by_images_per_class"][str(per_class)])
    lines = [f"| generator ({per_class} images per class) | seeds | cosine to target (mean) | Fréchet to target "
             "| Fréchet floor (real train vs test) | text classifier | auxiliary (prototype) | auxiliary (paper form, K = M/2) "
             "| fused (λ = 1) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for captions in ("none", "domain", "pseudolabel"):
        rows = groups.get(captions, [])
        if not rows:
            continue
        gap = lambda key: [r["domain_gap"][key] for r in rows]  # noqa: E731
        acc = lambda key: [r["train_pool_accuracy"][key] for r in rows]  # noqa: E731
        half = f"auxiliary_mean_similarity_keep{per_class // 2}"
        label = {"none": "not adapted", "domain": "adapted, domain captions",
                 "pseudolabel": "adapted, pseudo-label captions"}[captions]
        lines.append(f"| {label} | {len(rows)} | {_stat(gap('cosine_mean'), 1, 3)} | {_stat(gap('frechet'), 1, 3)} "
                     f"| {_stat(gap('frechet_floor'), 1, 4)} | {_stat(acc('text'))} "
                     f"| {_stat(acc('auxiliary_prototype_keepall'))} | {_stat(acc(half))} "
                     f"| {_stat(acc('fused_prototype_keepall'))} |")
    return lines


def prefix_table(result: dict) -> list[str]:
    lines = ["| synthetic images per class M | Fréchet to target | auxiliary, prototype of all M | auxiliary, "
             "prototype of K = M/2 nearest | auxiliary, paper form (mean cosine, K = M/2) | paper form, all M |",
             "| --- | --- | --- | --- | --- | --- |"]
    for prefix, row in sorted(result["by_images_per_class"].items(), key=lambda item: int(item[0])):
        acc, half = row["train_pool_accuracy"], int(prefix) // 2
        lines.append(f"| {prefix} | {row['domain_gap']['frechet']:.3f} | {100 * acc['auxiliary_prototype_keepall']:.1f} "
                     f"| {100 * acc[f'auxiliary_prototype_keep{half}']:.1f} "
                     f"| {100 * acc[f'auxiliary_mean_similarity_keep{half}']:.1f} "
                     f"| {100 * acc['auxiliary_mean_similarity_keepall']:.1f} |")
    return lines


def group_key(overrides: list[str]) -> str:
    """The configuration without its seed (a study variant's path names its seed too)."""
    return ",".join(sorted(re.sub(r"/(none|domain|pseudolabel)-\d+-", r"/\1-{seed}-", o).removeprefix(
        "@synthetic=studies/adaptation/") for o in overrides if not o.startswith("seed=")))


def runs_table(rows: list[dict]) -> tuple[list[str], dict]:
    groups = defaultdict(list)
    for row in rows:
        groups[group_key(row["overrides"])].append(row["metrics"])
    lines = ["| configuration | seeds | test accuracy (or H) | pseudo-label accuracy |", "| --- | --- | --- | --- |"]
    for key, metrics in sorted(groups.items()):
        main = "harmonic_mean" if "harmonic_mean" in metrics[0] else "accuracy"
        lines.append(f"| `{key}` | {len(metrics)} | {_stat([m[main] for m in metrics])} "
                     f"| {_stat([m['pseudo_label_accuracy'] for m in metrics])} |")
    return lines, groups


def main(study: str, out: str, run_files: list[str]) -> None:
    variants = {path.parent.name: json.loads(path.read_text()) for path in sorted(Path(study).glob("*/diagnostics.json"))}
    rows = [row for name in run_files for row in json.loads(Path(name).read_text())]
    md = ["## Domain gap and training-pool accuracy (analysis only)", "", *diagnostics_table(variants, 32), ""]
    for name, result in variants.items():
        if len(result["by_images_per_class"]) > 1:
            md += [f"## Images per class ({name})", "", *prefix_table(result), ""]
    run_lines, groups = runs_table(rows)
    md += ["## Prompt training runs", "", *run_lines, ""]
    Path(f"{out}.md").write_text("\n".join(md) + "\n")
    Path(f"{out}_diagnostics.json").write_text(json.dumps(variants, indent=1) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
