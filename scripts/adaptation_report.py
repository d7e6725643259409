"""Tables for docs/results.md from `scripts/adaptation_study.py` and `scripts/methods_direct.py` outputs.

    python scripts/adaptation_report.py studies/adaptation results/adaptation results/adaptation_runs.json

Writes `<out>.md` (markdown tables), `<out>_diagnostics.json` (every variant's diagnostics, to keep
with the repository) and `<out>_per_class.png` (AiR's images-per-class ablation: test accuracy of
adapted AiR and the auxiliary classifier's training-pool accuracy against M).
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
    by_seed = defaultdict(dict)  # a 128-image variant's first 32 images are the 32-image variant's: count a seed once
    for name, result in variants.items():
        captions, seed, made = name.split("-")
        if str(per_class) in result["by_images_per_class"]:
            by_seed[captions][seed] = result["by_images_per_class"][str(per_class)]
    groups = {captions: list(rows.values()) for captions, rows in by_seed.items()}
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


def _per_class_runs(rows: list[dict]) -> dict[int, list[float]]:
    """Test accuracy of plain adapted AiR (domain captions, no other override) by images per class M."""
    by_m = defaultdict(list)
    for row in rows:
        extra = [o for o in row["overrides"] if not o.startswith(("seed=", "@per_class=", "@synthetic=", "method="))]
        synthetic = next((o for o in row["overrides"] if o.startswith("@synthetic=")), "")
        if extra or "method=air" not in row["overrides"] or "/domain-" not in synthetic:
            continue
        m = int(next(o for o in row["overrides"] if o.startswith("@per_class=")).split("=")[1])
        by_m[m].append(row["metrics"]["accuracy"])
    return dict(sorted(by_m.items()))


def per_class_section(rows: list[dict], variants: dict[str, dict], png: Path) -> list[str]:
    """The paper's ablation on our world: test accuracy of adapted AiR-GRIP against M (3 seeds), next to
    the auxiliary classifier's own training-pool accuracy for the same images (every prefix of 128)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    accuracy = _per_class_runs(rows)
    auxiliary = defaultdict(list)
    for name, result in variants.items():
        if name.startswith("domain-") and name.endswith("-128"):
            for m, row in result["by_images_per_class"].items():
                auxiliary[int(m)].append(row["train_pool_accuracy"]["auxiliary_prototype_keepall"])
    text = next(iter(variants.values()))["by_images_per_class"]["16"]["train_pool_accuracy"]["text"]
    lines = ["| synthetic images per class M | seeds | adapted AiR-GRIP test accuracy | auxiliary classifier, "
             "training pool (analysis only) |", "| --- | --- | --- | --- |"]
    for m in sorted(set(accuracy) | set(auxiliary)):
        lines.append(f"| {m} | {len(accuracy.get(m, []))} | {_stat(accuracy.get(m, []))} | {_stat(auxiliary.get(m, []))} |")

    figure, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for axis, data, title in ((axes[0], accuracy, "adapted AiR-GRIP, test accuracy"),
                              (axes[1], auxiliary, "auxiliary classifier, training pool")):
        ms = sorted(data)
        mean = [100 * np.mean(data[m]) for m in ms]
        std = [100 * np.std(data[m], ddof=1) if len(data[m]) > 1 else 0 for m in ms]
        axis.errorbar(ms, mean, yerr=std, marker="o", capsize=3, label="mean ± sd over seeds")
        for m in ms:
            axis.scatter([m] * len(data[m]), [100 * v for v in data[m]], s=8, color="grey", zorder=3)
        axis.set_xscale("log", base=2)
        axis.set_xticks(ms, [str(m) for m in ms])
        axis.set_xlabel("synthetic images per class M")
        axis.set_ylabel("accuracy (%)")
        axis.set_title(title, fontsize=10)
    axes[1].axhline(100 * text, color="black", linestyle="--", linewidth=1, label="zero-shot text classifier")
    axes[1].legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(png, dpi=120)
    plt.close(figure)
    return lines


def main(study: str, out: str, run_files: list[str]) -> None:
    variants = {path.parent.name: json.loads(path.read_text()) for path in sorted(Path(study).glob("*/diagnostics.json"))}
    rows = [row for name in run_files for row in json.loads(Path(name).read_text())]
    md = ["## Domain gap and training-pool accuracy (analysis only)", "", *diagnostics_table(variants, 32), ""]
    for name, result in variants.items():
        if len(result["by_images_per_class"]) > 1:
            md += [f"## Images per class ({name})", "", *prefix_table(result), ""]
    run_lines, groups = runs_table(rows)
    md += ["## Prompt training runs", "", *run_lines, ""]
    md += ["## Images per class: AiR's ablation (domain captions; seeds 0-2 each set the adapter, the images "
           "and the training)", "", *per_class_section(rows, variants, Path(f"{out}_per_class.png")), ""]
    Path(f"{out}.md").write_text("\n".join(md) + "\n")
    Path(f"{out}_diagnostics.json").write_text(json.dumps(variants, indent=1) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
