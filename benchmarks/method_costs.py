"""What the methods cost: one prompt-training run on cached features (the unit a prompt ensemble
multiplies and a round of GRIP/CPL repeats) and CPL's selection against balanced top-K.

    python benchmarks/method_costs.py                                 # demo CLIP, 24 classes, CPU
    python benchmarks/method_costs.py --arch ViT-B-32 --classes 102 --device cuda   # Flowers102 shape

Features are random unit vectors and the weights random (`pretrained: random`): the cost of a step
does not depend on either. Prints seconds per training run (UPL: k per class; the last GRIP/CPL
round: the whole pool), the implied cost of a 16-member ensemble and of a 10-round run, and the
time of CPL's selection over an |U| x C posterior relative to balanced top-K's.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from pipeline.clip.models import load_clip
from pipeline.clip.prompts import PromptLearner
from pipeline.config.params import TrainParams
from pipeline.core.candidates import Candidates
from pipeline.methods.base import LossTerm
from pipeline.pseudolabel.rules import grip_k, select_balanced, select_cpl
from pipeline.training.loop import fit_prompt


def train_seconds(clip, names: list[str], n: int, recipe: TrainParams, device: torch.device) -> float:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(n, clip.model.visual.output_dim)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    labels = Candidates.single(np.arange(n), rng.integers(0, len(names), n), len(names), np.ones(n))
    learner = PromptLearner(clip.model, clip.tokenizer, names, recipe.n_ctx, recipe.ctx_init).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    fit_prompt(learner, [LossTerm("pseudo", features, labels.weights, 1.0)], recipe, 0, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def selection_seconds(n: int, c: int, rounds: int = 10) -> tuple[float, float]:
    probs = np.random.default_rng(0).dirichlet(np.full(c, 0.1), size=n)
    k = grip_k(rounds, n, c, rounds)
    started = time.perf_counter()
    select_balanced(probs, k)
    balanced = time.perf_counter() - started
    started = time.perf_counter()
    select_cpl(probs, 0.75, 1 - 2 / c, np.full(c, k), soft=False)
    return balanced, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="demo-clip")
    parser.add_argument("--classes", type=int, default=24)
    parser.add_argument("--per-class", type=int, default=100, help="unlabeled images per class (|U| / C)")
    parser.add_argument("--k", type=int, default=16, help="UPL's pseudo-labels per class")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--measure-epochs", type=int, default=None,
                        help="train this many epochs and scale to --epochs (the cost is linear in epochs)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    clip = load_clip(args.arch, "random", device)
    names = [f"class {i}" for i in range(args.classes)]
    measured = args.measure_epochs or args.epochs
    recipe = TrainParams(optimizer="adam", lr=0.01, epochs=measured, batch_size=32, warmup_epochs=1,
                         ctx_init="a photo of a")
    scale = args.epochs / measured
    train_seconds(clip, names, 64, recipe.model_copy(update={"epochs": 1}), device)  # warm-up (kernels, caches)
    upl = scale * train_seconds(clip, names, args.k * args.classes, recipe, device)
    full = scale * train_seconds(clip, names, args.per_class * args.classes, recipe, device)
    print(f"{args.arch}, {args.classes} classes, {args.epochs} epochs of batch 32 on {device}:")
    print(f"  UPL run ({args.k * args.classes} pseudo-labels): {upl:.1f} s; ensemble of 16: {16 * upl / 60:.1f} min")
    print(f"  last GRIP/CPL round ({args.per_class * args.classes} pseudo-labels): {full:.1f} s; "
          f"10 rounds (K grows 1/10 .. 10/10): about {5.5 * full / 60:.1f} min")
    balanced, cpl = selection_seconds(args.per_class * args.classes, args.classes)
    print(f"  selection over {args.per_class * args.classes} x {args.classes}: balanced top-K {balanced:.2f} s, "
          f"CPL {cpl:.2f} s ({cpl / balanced:.1f}x)")


if __name__ == "__main__":
    main()
