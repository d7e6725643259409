"""Throughput of the image-space trainer against the bare image tower on the same model and batch.

`bare`: `VisualLearner` forward + backward on a batch already normalised on the device, nothing else.
`trainer`: `fit_prompt` with an `ImageSpaceLearner` (visual prompt, handcrafted text): rows from the
pixel cache, to the device, augmentation, normalisation, forward, loss, backward, optimiser step,
scheduler. Goal: trainer / bare >= 0.8 (decoding, augmentation and the loss do not starve the model).
The multimodal row adds the text tower's pass per step (a real cost of that learner, not starvation).

    python benchmarks/image_space_training.py                    # demo-clip (ResNet, 32 px) and ViT-B-32 (224 px)
    python benchmarks/image_space_training.py --archs ViT-B-32 --device cuda --batch-size 128
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from pipeline.clip.models import load_clip
from pipeline.clip.pixels import PixelSpec
from pipeline.config.params import parse_params
from pipeline.methods.base import LossTerm, one_hot
from pipeline.training.learners import make_learner_factory
from pipeline.training.loop import fit_prompt

WEIGHTS = {"demo-clip": "data/demo/demo-clip.safetensors"}
NAMES = [f"class {i}" for i in range(24)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare(learner, spec, store, batch_size, steps, device) -> float:
    batch = spec.normalise(torch.from_numpy(store[:batch_size]).to(device))
    for _ in range(2):  # warm-up
        learner.visual(batch).sum().backward()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            features = learner.visual(batch)
        features.float().sum().backward()
    _sync(device)
    return steps * batch_size / (time.perf_counter() - start)


def trainer(factory, config, n_images, steps, device) -> float:
    labels = np.arange(n_images) % len(NAMES)
    terms = [LossTerm("pseudo", np.zeros((n_images, 1), np.float32), one_hot(labels, len(NAMES)), 1.0,
                      images=np.arange(n_images))]
    train = config.train.model_copy(update={"epochs": 1})
    fit_prompt(factory(0), terms[:1], train.model_copy(update={"epochs": 1}), 0, device)  # warm-up
    _sync(device)
    start = time.perf_counter()
    fit_prompt(factory(0), terms, train, 0, device)
    _sync(device)
    return n_images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["demo-clip", "ViT-B-32"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device {device}, batch {args.batch_size}, {args.steps} steps per arm, {torch.get_num_threads()} threads")
    print(f"{'arch':10} {'learner':11} {'bare img/s':>11} {'trainer img/s':>14} {'ratio':>6}")
    for arch in args.archs:
        clip = load_clip(arch, WEIGHTS.get(arch, "random"), device)
        spec = PixelSpec.from_preprocess(clip.preprocess)
        n_images = args.batch_size * args.steps
        store = np.random.default_rng(0).integers(0, 256, (n_images, spec.size, spec.size, 3), dtype=np.uint8)
        for prompt in ("visual", "multimodal"):
            config = parse_params({"train": {"prompt": prompt, "batch_size": args.batch_size, "epochs": 1,
                                             "warmup_epochs": 0}})
            factory = make_learner_factory(config, clip, NAMES, np.eye(len(NAMES), clip.model.visual.output_dim,
                                                                         dtype=np.float32), store, device)
            base = bare(factory(0), spec, store, args.batch_size, args.steps, device)
            full = trainer(factory, config, n_images, args.steps, device)
            print(f"{arch:10} {prompt:11} {base:11.1f} {full:14.1f} {full / base:6.2f}", flush=True)


if __name__ == "__main__":
    main()
