"""The suite-of-worlds study (issue 25): the UL methods in the easy, default and hard demo worlds over
study seeds, visual prompts, SSL/TRZSL in the default world and the candidate-label study in the easy
world, each a full `dvc repro` at `params.yaml`'s recipe (no epoch or round cuts).

    python scripts/worlds_study.py run                  # everything missing, most important cells first
    python scripts/worlds_study.py run --only air       # cells whose name contains "air"
    python scripts/worlds_study.py report               # docs/worlds.md and docs/worlds.png from the record

A study seed s sets `seed = adapt.seed = generate.seed = dataset.demo.seed = s`
(`pipeline.experiments.matrix.STUDY_SEED_KEYS`). Runs happen one at a time in a clone of the current commit
(`studies/worlds/project`, DVC's run cache shares the stages cells have in common) and each finished
run appends one JSON line to `results/worlds/runs.jsonl`: the cell, its overrides, the commit, the
metrics, the synthetic images' diagnostics and the pseudo-labels' accuracy. That file is the record: a
run already in it is never repeated, so the study resumes across sessions, and the report reads only it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config.params import parse_params  # noqa: E402
from pipeline.experiments.matrix import STUDY_SEED_KEYS, assign  # noqa: E402

RECORD = ROOT / "results" / "worlds" / "runs.jsonl"
WORK = ROOT / "studies" / "worlds" / "project"
WORLDS = ("easy", "default", "hard")
SEEDS = (0, 1, 2)

# The UL methods (text prompts, protocol project): name -> overrides.
METHODS = {
    "zeroshot": {"method": "zeroshot"},
    "upl": {"method": "upl"},
    "grip": {"method": "grip"},
    "cpl": {"method": "cpl"},
    "air_grip": {"method": "air", "pseudolabel.selection": "grip"},
    "air_grip_unadapted": {"method": "air", "pseudolabel.selection": "grip", "adapt.enabled": False},
    "air_cpl": {"method": "air", "pseudolabel.selection": "cpl"},
    "air_cpl_unadapted": {"method": "air", "pseudolabel.selection": "cpl", "adapt.enabled": False},
    "coft": {"method": "coft"},
    "coft_plus": {"method": "coft_plus"},
}
BASELINES = ("zeroshot", "upl", "grip", "cpl", "coft", "coft_plus")
VISUAL = {"grip_visual": {"method": "grip", "train.prompt": "visual"},
          "air_grip_visual": {"method": "air", "pseudolabel.selection": "grip", "train.prompt": "visual"}}
PARADIGM_METHODS = {name: METHODS[name] for name in ("grip", "cpl", "air_grip")}
PLL_LOSSES = ("cc", "rc", "lws", "cavl")
RATES = (0.3, 0.5)


def cells() -> list[dict]:
    """Every run of the study, most important first: the UL methods in the default world, then the
    other worlds, then SSL/TRZSL, the candidate-label study and visual prompts (the slowest)."""
    out = []

    def add(group: str, name: str, world: str, seed: int, overrides: dict) -> None:
        seeded = {key: seed for key in STUDY_SEED_KEYS}
        out.append({"group": group, "cell": name, "world": world, "seed": seed,
                    "overrides": {"dataset.demo.preset": world, **seeded, **overrides}})

    for world in ("default", "easy", "hard"):
        for seed in SEEDS:
            for name, overrides in METHODS.items():
                add("ul", name, world, seed, {"paradigm": "ul", **overrides})
    for paradigm in ("ssl", "trzsl"):
        for seed in SEEDS:
            for name, overrides in PARADIGM_METHODS.items():
                add(paradigm, name, "default", seed, {"paradigm": paradigm, **overrides})
    for rate in RATES:
        for seed in SEEDS:
            add("candidates", "zeroshot", "easy", seed, {"paradigm": "candidates", "method": "zeroshot",
                                                          "paradigm_options.partial_rate": rate,
                                                          "paradigm_options.candidate_seed": seed})
            for loss in PLL_LOSSES:
                for align in (False, True):
                    add("candidates", f"pll_{loss}{'_aligned' if align else ''}", "easy", seed,
                        {"paradigm": "candidates", "method": "pll", "train.pll_loss": loss, "train.align": align,
                         "paradigm_options.partial_rate": rate, "paradigm_options.candidate_seed": seed})
    for world in WORLDS:
        for seed in SEEDS:
            for name, overrides in VISUAL.items():
                add("visual", name, world, seed, {"paradigm": "ul", **overrides})
    return out


def run_key(cell: dict) -> str:
    return json.dumps(cell["overrides"], sort_keys=True)


# A cell whose method was mended: {cell: the mend's commit}. Its rows from before that commit are
# history, not results; they stay in the record and the cell runs again. None yet: issue 26's CoFT
# variants left the defaults as they were (docs/coft.md).
MENDED: dict[str, str] = {}


def _current(row: dict) -> bool:
    mend = MENDED.get(row["cell"]) if row["group"] in ("ul", "visual") else None
    if mend is None:
        return True
    return subprocess.run(["git", "merge-base", "--is-ancestor", mend, row["commit"]], cwd=ROOT).returncode == 0


def recorded(include_superseded: bool = False) -> list[dict]:
    if not RECORD.exists():
        return []
    rows = [json.loads(line) for line in RECORD.read_text().splitlines() if line.strip()]
    return rows if include_superseded else [row for row in rows if _current(row)]


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _work_clone(commit: str, work: Path = WORK) -> Path:
    if not (work / ".git").exists():
        work.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(work)], check=True)
    subprocess.run(["git", "fetch", "--quiet", str(ROOT), commit], cwd=work, check=True)
    subprocess.run(["git", "checkout", "--quiet", "--force", commit], cwd=work, check=True)
    return work


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def run_cell(cell: dict, commit: str, work: Path = WORK) -> dict:
    """`dvc repro` of the committed params.yaml with the cell's overrides, in the work clone `work`."""
    work = _work_clone(commit, work)
    base = yaml.safe_load(_git("show", f"{commit}:params.yaml"))
    for key, value in cell["overrides"].items():
        assign(base, key, value)
    parse_params(base, f"cell {cell['cell']}")
    (work / "params.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    bin_dir = Path(sys.executable).parent
    started = time.perf_counter()
    done = subprocess.run([str(bin_dir / "dvc"), "repro"], cwd=work, capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"dvc repro failed for {cell['cell']} {cell['world']} seed {cell['seed']}:\n"
                         f"{(done.stdout + done.stderr)[-4000:]}")
    diagnostics = _read(work / "diagnostics.json") or {}
    rounds = _read(work / "data" / "train" / "rounds.json") or {}
    fidelity = diagnostics.get("class_fidelity", {})
    return {**cell, "commit": commit, "seconds": round(seconds, 1), "metrics": _read(work / "metrics.json"),
            "diagnostics": {"frechet": diagnostics.get("domain_gap", {}).get("frechet"),
                            "frechet_floor": diagnostics.get("domain_gap", {}).get("frechet_floor"),
                            "fidelity": fidelity.get("synthetic"), "fidelity_unadapted": fidelity.get("unadapted"),
                            "fidelity_kept": fidelity.get("kept"),
                            "train_pool_accuracy": diagnostics.get("train_pool_accuracy")},
            "pseudo_label_accuracy": rounds.get("pseudo_label_accuracy"),
            "n_pseudo_labels": rounds.get("n_pseudo_labels"),
            "rounds": [{key: value for key, value in entry.items() if key in ROUND_KEYS}
                       for entry in (rounds.get("members") or [[]])[0]]}


# What the record keeps of each round of data/train/rounds.json (the first ensemble member's).
ROUND_KEYS = ("round_index", "k", "n_pseudo_labels", "pseudo_label_accuracy", "final_loss", "analysis")


def run(only: str | None, max_runs: int | None) -> None:
    if _git("status", "--porcelain", "--untracked-files=no"):
        raise SystemExit("commit your changes first: the study runs the committed code and params.yaml")
    commit = _git("rev-parse", "HEAD")
    done = {run_key(row) for row in recorded()}
    todo = [cell for cell in cells() if run_key(cell) not in done and (only is None or only in cell["cell"])]
    print(f"{len(cells())} runs in the study, {len(done)} recorded, {len(todo)} to run now", flush=True)
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    for index, cell in enumerate(todo[:max_runs]):
        print(f"[{index + 1}/{len(todo)}] {cell['group']} {cell['cell']} world={cell['world']} seed={cell['seed']} ...",
              flush=True)
        row = run_cell(cell, commit)
        with RECORD.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        accuracy = (row["metrics"] or {}).get("accuracy", (row["metrics"] or {}).get("harmonic_mean"))
        print(f"    accuracy {accuracy} in {row['seconds']:.0f} s", flush=True)


# ---------------------------------------------------------------------------------------------- report

def _mean_std(values: list[float]) -> str:
    values = [100 * v for v in values if v is not None]
    if not values:
        return "–"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {spread:.1f} (n={len(values)})"


def _headline(row: dict) -> float | None:
    metrics = row.get("metrics") or {}
    return metrics.get("harmonic_mean") if row["group"] == "trzsl" else metrics.get("accuracy")


def _by(rows: list[dict], group: str, world: str) -> dict[str, dict[int, dict]]:
    table: dict[str, dict[int, dict]] = {}
    for row in rows:
        if row["group"] == group and row["world"] == world:
            table.setdefault(row["cell"], {})[row["seed"]] = row
    return table


def _paired(table: dict, a: str, b: str, value=_headline) -> str:
    """a − b per seed present in both, as 'mean ± std [per-seed values]'."""
    seeds = sorted(set(table.get(a, {})) & set(table.get(b, {})))
    diffs = [100 * (value(table[a][s]) - value(table[b][s])) for s in seeds
             if value(table[a][s]) is not None and value(table[b][s]) is not None]
    if not diffs:
        return "–"
    spread = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    return f"{statistics.mean(diffs):+.1f} ± {spread:.1f} [{', '.join(f'{d:+.1f}' for d in diffs)}]"


def _by_rate(rows: list[dict], rate: float) -> dict[str, dict[int, dict]]:
    table: dict[str, dict[int, dict]] = {}
    for row in rows:
        if row["group"] == "candidates" and row["overrides"]["paradigm_options.partial_rate"] == rate:
            table.setdefault(row["cell"], {})[row["seed"]] = row
    return table


def _pool(row: dict, part: str) -> float | None:
    return ((row.get("diagnostics") or {}).get("train_pool_accuracy") or {}).get(part)


def _diffs(table: dict, a: str, b: str, value=_headline) -> list[float]:
    """a − b in points for every seed present in both."""
    seeds = sorted(set(table.get(a, {})) & set(table.get(b, {})))
    return [100 * (value(table[a][s]) - value(table[b][s])) for s in seeds]


def _mean(table: dict, name: str) -> float | None:
    values = [_headline(r) for r in table.get(name, {}).values()]
    return 100 * statistics.mean(values) if values else None


def _verdict(met: bool | None) -> str:
    return "**not measured yet**" if met is None else ("**met**" if met else "**missed**")


def goals(tables: dict, candidates: dict) -> list[str]:
    """Issue 25's five goals, each a verdict with the numbers it rests on (a missing cell leaves it open)."""
    out = []
    for base in ("grip", "cpl"):
        gaps = [_diffs(tables[w], f"air_{base}", f"air_{base}_unadapted") for w in WORLDS]
        full = all(len(g) == len(SEEDS) for g in gaps)
        means = [statistics.mean(g) if g else float("nan") for g in gaps]
        average = statistics.mean(means) if full else None
        out.append(f"- Adapted AiR on {base.upper()} ≥ unadapted + 2 points over the worlds and ≥ 0 in each: "
                   f"{_verdict(None if not full else average >= 2 and min(means) >= 0)} — "
                   + ", ".join(f"{w} {m:+.1f}" for w, m in zip(WORLDS, means))
                   + (f"; average {average:+.1f}" if full else ""))
    for base in ("grip", "cpl"):
        parts = []
        for world in WORLDS:
            pairs = [(a, tables[world][f"air_{base}_unadapted"][seed])
                     for seed, a in sorted(tables[world].get(f"air_{base}", {}).items())
                     if a.get("rounds") and tables[world].get(f"air_{base}_unadapted", {}).get(seed, {}).get("rounds")]
            if pairs:
                first = [100 * (a["rounds"][0]["pseudo_label_accuracy"] - u["rounds"][0]["pseudo_label_accuracy"])
                         for a, u in pairs]
                last = [100 * (a["rounds"][-1]["pseudo_label_accuracy"] - u["rounds"][-1]["pseudo_label_accuracy"])
                        for a, u in pairs]
                parts.append(f"{world} first {statistics.mean(first):+.1f}, last {statistics.mean(last):+.1f} "
                             f"(n={len(pairs)})")
        if parts:
            out.append(f"  - Where the {base.upper()} gap comes from: pseudo-label accuracy of the first and the last "
                       "round, adapted − unadapted (hidden labels, analysis only; rows recorded with their rounds): "
                       + "; ".join(parts))
    default = tables["default"].get("air_grip", {})
    margins = [100 * (_pool(r, "auxiliary") - _pool(r, "text")) for _, r in sorted(default.items())
               if _pool(r, "text") is not None]
    out.append(f"- Auxiliary − text on the default world's pool ≥ 5 points for every adapter seed: "
               f"{_verdict(None if len(margins) < len(SEEDS) else min(margins) >= 5)} — "
               f"[{', '.join(f'{m:+.1f}' for m in margins)}]")
    fused = {w: [100 * (_pool(r, "fused") - max(_pool(r, "text"), _pool(r, "auxiliary")))
                 for r in tables[w].get("air_grip", {}).values() if _pool(r, "fused") is not None] for w in WORLDS}
    complete = all(len(v) == len(SEEDS) for v in fused.values())
    out.append(f"- Fused ≥ the better of text and auxiliary on the pool, in every world (adapted AiR, mean over "
               f"seeds): {_verdict(None if not complete else all(statistics.mean(v) >= 0 for v in fused.values()))}"
               " — " + ", ".join(f"{w} {statistics.mean(v):+.1f} (worst seed {min(v):+.1f})"
                                  for w, v in fused.items() if v))
    standings = []
    for world in WORLDS:
        baselines = {n: _mean(tables[world], n) for n in BASELINES if _mean(tables[world], n) is not None}
        air = {n: _mean(tables[world], n) for n in ("air_grip", "air_cpl") if _mean(tables[world], n) is not None}
        if baselines and air:
            best, better_air = max(baselines, key=baselines.get), max(air, key=air.get)
            standings.append((world, better_air, air[better_air], best, baselines[best]))
    met = None if len(standings) < len(WORLDS) else all(a >= b for _, _, a, _, b in standings)
    out.append(f"- AiR on its better base is the best UL method in every world: {_verdict(met)} — "
               + "; ".join(f"{w}: {an} {a:.1f} vs {bn} {b:.1f}" for w, an, a, bn, b in standings))
    if any(candidates.values()):
        gains = {(loss, rate): _diffs(candidates[rate], f"pll_{loss}_aligned", f"pll_{loss}")
                 for loss in PLL_LOSSES for rate in RATES}
        zero = {rate: _mean(candidates[rate], "zeroshot") for rate in RATES}
        beaten = {(loss, rate): (_mean(candidates[rate], f"pll_{loss}_aligned") or 0) > (zero[rate] or 100)
                  for loss in PLL_LOSSES for rate in RATES}
        complete = all(len(g) == len(SEEDS) for g in gains.values())
        improved = {key: statistics.mean(g) > 0 for key, g in gains.items() if g}
        out.append("- In the easy world alignment improves every partial-label loss at both rates, and the aligned "
                   f"prompt beats zero-shot: {_verdict(None if not complete else all(improved.values()) and all(beaten.values()))}"
                   " — improved: " + ", ".join(f"{loss}@{rate}" for (loss, rate), up in improved.items() if up)
                   + "; not: " + (", ".join(f"{loss}@{rate}" for (loss, rate), up in improved.items() if not up) or "none")
                   + "; aligned above zero-shot in " + f"{sum(beaten.values())} of {len(beaten)}")
    return out


def report(out_md: Path, out_png: Path) -> None:
    rows = recorded()
    commits = sorted({row["commit"][:7] for row in rows})
    lines = ["# A suite of worlds: the UL methods where their papers make their claims", "",
             "<!-- generated by `python scripts/worlds_study.py report` from results/worlds/runs.jsonl; do not edit -->",
             "",
             f"{len(rows)} of {len(cells())} runs recorded (code at {', '.join(commits) or '–'}). Each cell: a full "
             "`dvc repro` at params.yaml's recipe, mean ± sample std over study seeds "
             "(`seed = adapt.seed = generate.seed = dataset.demo.seed`). Worlds (`dataset.demo.preset`): demo-CLIP "
             "zero-shot ~67% (easy), ~35% (default), ~21% (hard) — `pipeline/demo/presets.yaml`.", ""]
    lines += ["## Target test accuracy, UL, text prompts", "",
              "| method | " + " | ".join(WORLDS) + " |", "|---|" + "---|" * len(WORLDS)]
    tables = {world: _by(rows, "ul", world) for world in WORLDS}
    for name in METHODS:
        lines.append(f"| {name} | " + " | ".join(
            _mean_std([_headline(r) for r in tables[w].get(name, {}).values()]) for w in WORLDS) + " |")
    lines += ["", "## Paired differences per seed (points)", "",
              "| difference | " + " | ".join(WORLDS) + " |", "|---|" + "---|" * len(WORLDS)]
    for a, b in (("air_grip", "air_grip_unadapted"), ("air_cpl", "air_cpl_unadapted"), ("air_grip", "grip"),
                 ("air_cpl", "cpl")):
        lines.append(f"| {a} − {b} | " + " | ".join(_paired(tables[w], a, b) for w in WORLDS) + " |")
    best_line = []
    for world in WORLDS:
        means = {name: statistics.mean([_headline(r) for r in tables[world][name].values()])
                 for name in BASELINES if tables[world].get(name)}
        air = {name: statistics.mean([_headline(r) for r in tables[world][name].values()])
               for name in ("air_grip", "air_cpl") if tables[world].get(name)}
        if means and air:
            best, better_air = max(means, key=means.get), max(air, key=air.get)
            best_line.append(f"{better_air} − {best}: {_paired(tables[world], better_air, best)}")
        else:
            best_line.append("–")
    lines.append("| AiR (better base) − best baseline | " + " | ".join(best_line) + " |")
    lines += ["", "## AiR's parts on the training pool (hidden labels, analysis only)", "",
              "Accuracy of the text classifier, the auxiliary classifier and their fusion on the training pool, "
              "and the synthetic images' class fidelity (label-free) and Fréchet distance to the target training images.",
              "", "| world | run | text | auxiliary | fused | fused − max(text, aux) | fidelity | unadapted fidelity | Fréchet |",
              "|---|---|---|---|---|---|---|---|---|"]
    for world in WORLDS:
        for name in ("air_grip", "air_grip_unadapted"):
            runs = list(tables[world].get(name, {}).values())
            if not runs:
                continue
            margin = [_pool(r, "fused") - max(_pool(r, "text"), _pool(r, "auxiliary")) for r in runs
                      if _pool(r, "fused") is not None]
            lines.append(f"| {world} | {name} | {_mean_std([_pool(r, 'text') for r in runs])} | "
                         f"{_mean_std([_pool(r, 'auxiliary') for r in runs])} | {_mean_std([_pool(r, 'fused') for r in runs])} | "
                         f"{_mean_std(margin)} | {_mean_std([r['diagnostics']['fidelity'] for r in runs])} | "
                         f"{_mean_std([r['diagnostics']['fidelity_unadapted'] for r in runs])} | "
                         + (f"{statistics.mean([r['diagnostics']['frechet'] for r in runs]):.3f} |"
                            if all(r["diagnostics"]["frechet"] is not None for r in runs) else "– |"))
    for group, title in (("ssl", "SSL (default world)"), ("trzsl", "TRZSL (default world, harmonic mean)")):
        table = _by(rows, group, "default")
        if table:
            lines += ["", f"## {title}", "", "| method | accuracy |", "|---|---|"]
            lines += [f"| {name} | {_mean_std([_headline(r) for r in table[name].values()])} |" for name in table]
    candidates = {rate: _by_rate(rows, rate) for rate in RATES}
    if any(candidates.values()):
        lines += ["", "## Candidate labels (easy world)", "",
                  "| method | " + " | ".join(f"q = {rate}" for rate in RATES) + " |", "|---|" + "---|" * len(RATES)]
        names = sorted({name for table in candidates.values() for name in table}, key=lambda n: (n != "zeroshot", n))
        for name in names:
            lines.append(f"| {name} | " + " | ".join(
                _mean_std([_headline(r) for r in candidates[rate].get(name, {}).values()]) for rate in RATES) + " |")
        lines += ["", "Paired per seed, aligned − not aligned (points):", "",
                  "| loss | " + " | ".join(f"q = {rate}" for rate in RATES) + " |", "|---|" + "---|" * len(RATES)]
        for loss in PLL_LOSSES:
            lines.append(f"| {loss} | " + " | ".join(
                _paired(candidates[rate], f"pll_{loss}_aligned", f"pll_{loss}") for rate in RATES) + " |")
    visual = {world: _by(rows, "visual", world) for world in WORLDS}
    if any(visual.values()):
        lines += ["", "## Visual prompts (UL)", "", "| method | " + " | ".join(WORLDS) + " |", "|---|" + "---|" * 3]
        for name in VISUAL:
            lines.append(f"| {name} | " + " | ".join(
                _mean_std([_headline(r) for r in visual[w].get(name, {}).values()]) for w in WORLDS) + " |")
        lines.append("| air_grip_visual − grip_visual (paired) | " + " | ".join(
            _paired(visual[w], "air_grip_visual", "grip_visual") for w in WORLDS) + " |")
    lines += ["", "## The issue's goals, read from the tables above", ""] + goals(tables, candidates)
    lines += ["", "![accuracy per world](worlds.png)", ""]
    out_md.write_text("\n".join(lines))
    _figure(tables, out_png)
    print(out_md.read_text())


def _figure(tables: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name in METHODS if any(tables[w].get(name) for w in WORLDS)]
    figure, axis = plt.subplots(figsize=(10, 4))
    width = 0.8 / max(1, len(names))
    for index, name in enumerate(names):
        means, spreads = [], []
        for world in WORLDS:
            values = [100 * _headline(r) for r in tables[world].get(name, {}).values()]
            means.append(statistics.mean(values) if values else 0.0)
            spreads.append(statistics.stdev(values) if len(values) > 1 else 0.0)
        axis.bar([w + index * width for w in range(len(WORLDS))], means, width, yerr=spreads, label=name, capsize=2)
    axis.set_xticks([w + 0.4 - width / 2 for w in range(len(WORLDS))], WORLDS)
    axis.set_ylabel("target test accuracy (%)")
    axis.legend(ncol=5, fontsize=7, loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["run", "report"])
    parser.add_argument("--only", help="run only cells whose name contains this")
    parser.add_argument("--max-runs", type=int, help="stop after this many runs")
    args = parser.parse_args()
    if args.action == "run":
        run(args.only, args.max_runs)
    else:
        report(ROOT / "docs" / "worlds.md", ROOT / "docs" / "worlds.png")


if __name__ == "__main__":
    main()
