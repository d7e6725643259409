"""Choose image-space augmentation for the demo world on a labelled *source* split, never the target.

As `python scripts/demo_models.py recipe` does for the text recipe: a labelled source-domain split whose
training labels are half wrong the way target pseudo-labels are (another shape of the same colour);
a visual (padding) prompt trains on them with each augmentation, and is scored by its accuracy on
held-out, correctly labelled source images. Prints the table and writes results/augment_source_split.csv.

    python scripts/augment_source_split.py [--epochs 5] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import pandas as pd
import torch

from pipeline.clip.models import load_clip
from pipeline.clip.pixels import PixelSpec, pixel_cache
from pipeline.config.params import load_params
from pipeline.datasets.demo import demo_dataset
from pipeline.demo import world
from pipeline.demo.recipe import same_colour_confusions
from pipeline.methods.base import LossTerm, one_hot
from pipeline.training.learners import encode_store, make_learner_factory
from pipeline.training.loop import fit_prompt

CHOICES = {"none": ("none", [1.0, 1.0]), "crop 0.08-1 + flip": ("crop_flip", [0.08, 1.0]),
           "crop 0.25-1 + flip": ("crop_flip", [0.25, 1.0]), "crop 0.5-1 + flip": ("crop_flip", [0.5, 1.0]),
           "crop 0.8-1 + flip": ("crop_flip", [0.8, 1.0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--noise", type=float, default=0.5)
    args = parser.parse_args()
    device = torch.device("cpu")
    params = load_params()
    clip = load_clip(params.clip.arch, params.clip.pretrained, device)
    spec = PixelSpec.from_preprocess(clip.preprocess)
    knobs = world.SOURCE.model_copy(update={"seed": 2024, "images_per_class": 100, "test_images_per_class": 50})
    frame = demo_dataset(knobs).frame
    with tempfile.TemporaryDirectory() as cache:
        store = pixel_cache(frame, spec, cache, "source split")
    train = np.flatnonzero((frame["split"] == "train").to_numpy())
    val = np.flatnonzero((frame["split"] == "test").to_numpy())
    labels = frame["label"].to_numpy(dtype=np.int64)
    names = world.class_names()
    noisy = same_colour_confusions(labels[train], args.noise, 2024)
    term = LossTerm("noisy source", np.zeros((len(train), 1), np.float32), one_hot(noisy, len(names)), 1.0,
                    images=train)
    zero_shot = make_learner_factory(params, clip, names, np.zeros((len(names), 1)), None, device)(0)().detach().numpy()
    rows = []
    for name, (augment, scale) in CHOICES.items():
        for seed in args.seeds:
            config = params.model_copy(update={"train": params.train.model_copy(update={
                "prompt": "visual", "augment": augment, "crop_scale": scale, "epochs": args.epochs})})
            learner = make_learner_factory(config, clip, names, zero_shot, store, device)(seed)
            fit_prompt(learner, [term], config.train, seed, device)
            features = encode_store(learner.visual, spec, store[val], device)
            accuracy = float(((features @ zero_shot.T).argmax(axis=1) == labels[val]).mean())
            rows.append({"augmentation": name, "seed": seed, "val_accuracy": accuracy})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows).groupby("augmentation", sort=False)["val_accuracy"].agg(["mean", "std"]).reset_index()
    print(table.to_string(index=False))
    table.to_csv("results/augment_source_split.csv", index=False)


if __name__ == "__main__":
    main()
