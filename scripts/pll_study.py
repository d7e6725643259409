"""Candidate-label prompt learning on the demo world: every partial-label loss with and without prompt
alignment, at several partial rates q and seeds, beside zero-shot CLIP.

Runs the library calls of `pseudolabel` and `train` in one process, on the cached features of the
default run (`dvc repro` first): the training pool is the candidate-label papers' 16 shots per class
(drawn from the 100 per class of the demo world with the run's seed), the test split is the default
one. Seed s draws the shots, the candidate sets (`candidate_seed: s`) and the prompt's training order.
One JSON line per run is appended to OUT (a finished run is not repeated), so an interrupted study
resumes. The recipe is the project's `train:` section of params.yaml (chosen on a labelled source
split), only the pll keys change, unless `--set key=value` changes it for every run.

    python scripts/pll_study.py results/pll_runs.jsonl                 # 4 losses x 2 x 4 rates x 3 seeds
    python scripts/pll_study.py results/pll_runs.jsonl --report results/pll   # table (.md) and plot (.png)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml
from methods_direct import _override  # scripts/ is on the path when a script runs: one KEY=VALUE parser

LOSSES = ("cc", "rc", "lws", "cavl")


def _key(row: dict) -> tuple:
    return row["loss"], row["align"], row["partial_rate"], row["seed"]


def _shots(train_labels: np.ndarray, n_classes: int, shots: int, seed: int) -> np.ndarray:
    """Rows of `shots` training images per class, drawn with the run's seed (CoOp's few-shot draw)."""
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(train_labels == c), shots, replace=False)
                                   for c in range(n_classes)]))


def teacher_accuracy(seeds: list[int], rates: list[float], shots: int) -> dict[float, float]:
    """Per q, the share of training shots whose handcrafted-prompt argmax within the candidate set is
    the true class (the alignment target's top class; analysis only), mean over seeds."""
    from pipeline.datasets.candidate_sets import draw_candidate_masks
    from pipeline.pseudolabel.rules import text_posterior
    from pipeline.workspace import load_workspace

    workspace = load_workspace(with_synthetic=False)
    train = workspace.split("train")
    labels = workspace.manifest.loc[train, "label"].to_numpy(np.int64)
    n_classes = len(workspace.class_names)
    result = {}
    for rate in rates:
        shares = []
        for seed in seeds:
            rows = _shots(labels, n_classes, shots, seed)
            masks = draw_candidate_masks(labels[rows], n_classes, rate, seed)
            probs = text_posterior(workspace.real[train][rows], workspace.zero_shot_weights)
            shares.append(float((np.where(masks, probs, -1).argmax(axis=1) == labels[rows]).mean()))
        result[rate] = 100 * float(np.mean(shares))
    return result


def run_study(out: Path, seeds: list[int], rates: list[float], shots: int, overrides: list[str]) -> None:
    import torch

    from pipeline.clip.models import load_clip
    from pipeline.clip.prompts import PromptLearner
    from pipeline.config.params import parse_params
    from pipeline.core.pool import Pool
    from pipeline.datasets.candidate_sets import draw_candidate_masks
    from pipeline.evaluation.metrics import accuracy, predict
    from pipeline.methods.catalog import build_method
    from pipeline.training.loop import run_method
    from pipeline.workspace import load_workspace

    base = yaml.safe_load(open("params.yaml"))
    for assignment in overrides:
        _override(base, assignment)
    workspace = load_workspace(with_synthetic=False)
    train, test = workspace.split("train"), workspace.split("test")
    train_labels = workspace.manifest.loc[train, "label"].to_numpy(np.int64)
    test_labels = workspace.manifest.loc[test, "label"].to_numpy(np.int64)
    n_classes = len(workspace.class_names)
    device = torch.device("cpu")
    done = {_key(json.loads(line)) for line in out.read_text().splitlines()} if out.exists() else set()
    zero_shot = accuracy(test_labels, predict(workspace.real[test], workspace.zero_shot_weights))
    clip = None
    for seed in seeds:
        shot_rows = _shots(train_labels, n_classes, shots, seed)
        for rate in rates:
            masks = draw_candidate_masks(train_labels[shot_rows], n_classes, rate, seed)
            pool = Pool(workspace.real[train][shot_rows], train_labels[shot_rows], np.zeros(len(shot_rows), bool),
                        np.arange(n_classes), n_classes, candidate_sets=masks,
                        zero_shot_weights=workspace.zero_shot_weights)
            for loss in LOSSES:
                for align in (False, True):
                    row = {"loss": loss, "align": align, "partial_rate": rate, "seed": seed}
                    if _key(row) in done:
                        continue
                    data = {**base, "method": "pll", "paradigm": "candidates", "seed": seed,
                            "train": {**base["train"], "pll_loss": loss, "align": align}}
                    params = parse_params(data)
                    clip = clip or load_clip(params.clip.arch, params.clip.pretrained, device)
                    method = build_method(params)
                    started = time.perf_counter()
                    candidates = method.pseudo_label(pool, workspace.zero_shot_weights)
                    result = run_method(method, lambda: PromptLearner(
                        clip.model, clip.tokenizer, workspace.class_names, params.train.n_ctx, params.train.ctx_init,
                        seed), pool, workspace.zero_shot_weights, candidates, seed, device)
                    row.update(accuracy=accuracy(test_labels, predict(workspace.real[test], result.class_weights)),
                               zero_shot=zero_shot, mean_set_size=candidates.mean_set_size(), shots=shots,
                               numerics=params.train.pll_numerics,
                               overrides=overrides, seconds=round(time.perf_counter() - started, 1))
                    print(json.dumps(row), flush=True)
                    with out.open("a") as handle:
                        handle.write(json.dumps(row) + "\n")


def report(runs: Path, prefix: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame([json.loads(line) for line in runs.read_text().splitlines()])
    frame["accuracy"] *= 100
    stats = frame.groupby(["loss", "align", "partial_rate"])["accuracy"].agg(["mean", "std", "count"]).reset_index()
    rates = sorted(frame["partial_rate"].unique())
    zero_shot = 100 * frame["zero_shot"].iloc[0]
    sizes = frame.groupby("partial_rate")["mean_set_size"].mean()
    recipe = ", ".join(frame["overrides"].iloc[0]) if "overrides" in frame and frame["overrides"].iloc[0] else "params.yaml"
    # Runs from before `train.pll_numerics` existed computed the exact mathematics, today's default.
    numerics = sorted(set(frame["numerics"].fillna("exact")) if "numerics" in frame else {"exact"})
    lines = [f"Test accuracy (%) of method pll on the demo world, {frame['shots'].iloc[0]} shots per class, "
             f"recipe: {recipe}, loss numerics (train.pll_numerics): {' and '.join(numerics)}, "
             f"mean ± std over seeds ({', '.join(map(str, sorted(frame['seed'].unique())))}); "
             f"zero-shot CLIP: {zero_shot:.1f}.", "",
             "| loss | alignment | " + " | ".join(f"q = {q} (set size {sizes[q]:.1f})" for q in rates) + " |",
             "| --- | --- | " + " | ".join("---" for _ in rates) + " |"]
    for loss in LOSSES:
        for align in (False, True):
            cells = []
            for q in rates:
                match = stats[(stats["loss"] == loss) & (stats["align"] == align) & (stats["partial_rate"] == q)]
                cells.append("—" if match.empty else
                             f"{match['mean'].iloc[0]:.1f} ± {match['std'].iloc[0]:.1f} (n={match['count'].iloc[0]})")
            lines.append(f"| {loss.upper()} | {'yes' if align else 'no'} | " + " | ".join(cells) + " |")
    lines += ["", "Gain of alignment (aligned − plain, mean over seeds, paired by seed):", "",
              "| loss | " + " | ".join(f"q = {q}" for q in rates) + " |", "| --- | " + " | ".join("---" for _ in rates) + " |"]
    paired = frame.pivot_table(index=["loss", "partial_rate", "seed"], columns="align", values="accuracy").dropna()
    paired["gain"] = paired[True] - paired[False]
    gains = paired.groupby(["loss", "partial_rate"])["gain"].agg(["mean", "min", "max"])
    for loss in LOSSES:
        cells = []
        for q in rates:
            cells.append(f"{gains.loc[(loss, q), 'mean']:+.1f} [{gains.loc[(loss, q), 'min']:+.1f}, "
                         f"{gains.loc[(loss, q), 'max']:+.1f}]" if (loss, q) in gains.index else "—")
        lines.append(f"| {loss.upper()} | " + " | ".join(cells) + " |")
    teacher = teacher_accuracy(sorted(frame["seed"].unique()), rates, int(frame["shots"].iloc[0]))
    lines += ["", "The alignment target's top class (handcrafted prompt, restricted to the set) is the true class "
              "for " + ", ".join(f"{teacher[q]:.1f}% (q = {q})" for q in rates) + " of the training shots "
              "(analysis only; the zero-shot classifier over all classes: "
              f"{zero_shot:.1f}% on the test split)."]
    prefix.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(LOSSES), figsize=(4 * len(LOSSES), 3.4), sharey=True)
    for axis, loss in zip(axes, LOSSES):
        for align, style in ((False, "--o"), (True, "-s")):
            part = stats[(stats["loss"] == loss) & (stats["align"] == align)].sort_values("partial_rate")
            axis.errorbar(part["partial_rate"], part["mean"], yerr=part["std"].fillna(0), fmt=style, capsize=3,
                          label="aligned" if align else "plain")
        axis.axhline(zero_shot, color="grey", linestyle=":", label="zero-shot")
        axis.set_title(loss.upper())
        axis.set_xlabel("partial rate q")
        axis.set_xticks(rates)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(prefix.with_suffix(".png"), dpi=110)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.1, 0.3, 0.5, 0.7])
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change params.yaml for every run (e.g. train.optimizer=sgd); use another OUT per recipe")
    parser.add_argument("--report", type=Path, help="write PREFIX.md and PREFIX.png from OUT instead of running")
    arguments = parser.parse_args()
    if arguments.report:
        report(arguments.out, arguments.report)
    else:
        run_study(arguments.out, arguments.seeds, arguments.rates, arguments.shots, arguments.set)
