"""A cached-feature training step against its floor, as the class count grows.

A prompt-training step on cached image features must run the text tower over the C class prompts
(forward and backward); everything else (indexing the batch's features, the B×C logits, the loss,
the optimiser step on the context, the scheduler) is overhead. This prints, per C, the seconds of a
step of `pipeline.training.loop.fit_prompt` (the pipeline's own loop, one epoch of pseudo-labels) and of
the floor: `learner()` forward + backward and nothing else, measured side by side in one run, and
their ratio (goal ≤ 1.1).

    python benchmarks/training_step_floor.py                         # demo-clip text tower, C = 24, 102, 1000
    python benchmarks/training_step_floor.py --arch ViT-B-32 --classes 24 102
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from pipeline.clip.models import load_clip
from pipeline.clip.prompts import PromptLearner
from pipeline.config.params import TrainParams
from pipeline.methods.base import LossTerm
from pipeline.training.loop import fit_prompt

CPU = torch.device("cpu")


def floor_step(learner: PromptLearner) -> None:
    learner.ctx.grad = None
    learner().sum().backward()


def measure(arch: str, classes: int, steps: int, batch_size: int, repeats: int) -> tuple[float, float]:
    clip = load_clip(arch, "random", CPU)
    names = [f"class number {c}" for c in range(classes)]
    learner = PromptLearner(clip.model, clip.tokenizer, names, ctx_init="a photo of a")
    rng = np.random.default_rng(0)
    n = steps * batch_size
    features = rng.standard_normal((n, clip.model.visual.output_dim)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    weights = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]
    term = LossTerm("pseudo", features, weights, 1.0)
    train = TrainParams(optimizer="adam", lr=0.01, momentum=0.9, weight_decay=5e-4, epochs=1, warmup_epochs=0,
                        batch_size=batch_size, n_ctx=16, ctx_init="a photo of a")
    floor_step(learner)  # warm-up: allocator, kernels
    fit_prompt(learner, [term], train, seed=0, device=CPU)
    ours, floor = [], []
    for _ in range(repeats):  # interleaved, so drifting machine load hits both arms alike
        start = time.perf_counter()
        fit_prompt(learner, [term], train, seed=0, device=CPU)
        ours.append((time.perf_counter() - start) / steps)
        start = time.perf_counter()
        for _ in range(steps):
            floor_step(learner)
        floor.append((time.perf_counter() - start) / steps)
    return float(np.median(ours)), float(np.median(floor))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="demo-clip")
    parser.add_argument("--classes", type=int, nargs="+", default=[24, 102, 1000])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.arch} text tower, batch {args.batch_size}, {args.steps} steps x {args.repeats} repeats, "
          f"{torch.get_num_threads()} threads")
    print(f"{'C':>6} {'step s':>10} {'floor s':>10} {'ratio':>7}")
    for classes in args.classes:
        ours, floor = measure(args.arch, classes, args.steps, args.batch_size, args.repeats)
        print(f"{classes:>6} {ours:>10.4f} {floor:>10.4f} {ours / floor:>7.3f}")


if __name__ == "__main__":
    main()
