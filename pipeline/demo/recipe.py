"""Choose the prompt-training recipe on a labelled *source* split of the demo world, never the target.

The demo CLIP is already 100% right on the source domain with "a photo of a {c}.", so clean source
labels cannot tell recipes apart. The search therefore gives the learner the kind of labels it gets
on the target: a share of the training labels is wrong the way pseudo-labels there are wrong
(another shape of the same colour). A recipe is scored by the accuracy of its prompt on held-out,
correctly labelled source images. Measured: training on such labels first drags the prompt away
from the right shapes (the loss asks for less confident predictions); only a recipe that converges
on the whole noisy set brings it back, so a schedule that stops early scores low.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from pipeline.clip.features import encode_images
from pipeline.clip.models import Clip
from pipeline.clip.prompts import PromptLearner
from pipeline.config.params import TrainParams
from pipeline.core.candidates import Candidates
from pipeline.datasets.demo import demo_dataset
from pipeline.demo import world
from pipeline.evaluation.metrics import accuracy, predict
from pipeline.methods.base import LossTerm
from pipeline.training.loop import fit_prompt, steps_per_epoch

log = logging.getLogger(__name__)

# (optimizer, learning rate) pairs, crossed with epochs and batch sizes.
OPTIMIZERS = (("sgd", 0.002), ("sgd", 0.02), ("sgd", 0.1), ("adam", 0.002), ("adam", 0.01))
EPOCHS = (5, 20, 50)
BATCH_SIZES = (32, 128)


@dataclass(frozen=True)
class SourceSplit:
    train_features: np.ndarray
    train_labels: np.ndarray      # with `noise` of them replaced by a same-colour wrong shape
    clean_train_labels: np.ndarray
    val_features: np.ndarray
    val_labels: np.ndarray


def same_colour_confusions(labels: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """Replace `rate` of the labels by another shape of the same colour, chosen uniformly."""
    rng = np.random.default_rng(seed)
    n_colours, n_shapes = len(world.COLOURS), len(world.SHAPES)
    noisy = labels.copy()
    flip = np.flatnonzero(rng.random(len(labels)) < rate)
    shapes = labels[flip] // n_colours
    other = (shapes + rng.integers(1, n_shapes, len(flip))) % n_shapes
    noisy[flip] = other * n_colours + labels[flip] % n_colours
    return noisy


def source_split(clip: Clip, device: torch.device, train_per_class: int = 100, val_per_class: int = 50,
                 noise: float = 0.5, seed: int = 2024) -> SourceSplit:
    """Render and encode a labelled source-domain split (seeded apart from every other demo render)."""
    knobs = world.SOURCE.model_copy(update={"seed": seed, "images_per_class": train_per_class,
                                            "test_images_per_class": val_per_class})
    frame = demo_dataset(knobs).frame
    features = encode_images(clip, frame, batch_size=256, num_workers=0, device=device, desc="source split")
    train = (frame["split"] == "train").to_numpy()
    labels = frame["label"].to_numpy(dtype=np.int64)
    return SourceSplit(features[train], same_colour_confusions(labels[train], noise, seed), labels[train],
                       features[~train], labels[~train])


def candidate_recipes(base: TrainParams) -> list[TrainParams]:
    return [base.model_copy(update={"optimizer": opt, "lr": lr, "epochs": epochs, "batch_size": batch})
            for (opt, lr), epochs, batch in itertools.product(OPTIMIZERS, EPOCHS, BATCH_SIZES)]


def score_recipe(clip: Clip, split: SourceSplit, recipe: TrainParams, seed: int, device: torch.device
                 ) -> dict[str, float]:
    """Train the recipe's context (its `ctx_init` or `n_ctx` random vectors) on the noisy source
    labels; return the held-out source accuracy and the last epoch's loss."""
    n = len(split.train_labels)
    labels = Candidates.single(np.arange(n), split.train_labels, len(world.class_names()), np.ones(n, np.float32))
    learner = PromptLearner(clip.model, clip.tokenizer, world.class_names(), recipe.n_ctx, recipe.ctx_init,
                            seed).to(device)
    history = fit_prompt(learner, [LossTerm("noisy source", split.train_features, labels.weights, 1.0)],
                         recipe, seed, device)
    with torch.no_grad():
        weights = learner().cpu().numpy()
    return {"val_accuracy": accuracy(split.val_labels, predict(split.val_features, weights)),
            "final_loss": history[-1]}


def search(clip: Clip, base: TrainParams, device: torch.device, seeds: tuple[int, ...] = (0,),
           noise: float = 0.5, tolerance: float = 0.005) -> tuple[pd.DataFrame, TrainParams]:
    """Score every candidate recipe (mean over `seeds`); choose the cheapest (fewest optimiser steps)
    whose held-out accuracy is within `tolerance` of the best."""
    split = source_split(clip, device, noise=noise)
    recipes = candidate_recipes(base)
    rows = []
    for index, recipe in enumerate(recipes):
        scores = [score_recipe(clip, split, recipe, seed, device) for seed in seeds]
        row = {"optimizer": recipe.optimizer, "lr": recipe.lr, "epochs": recipe.epochs,
               "batch_size": recipe.batch_size,
               "steps": recipe.epochs * steps_per_epoch(len(split.train_labels), recipe.batch_size),
               "val_accuracy": float(np.mean([s["val_accuracy"] for s in scores])),
               "final_loss": float(np.mean([s["final_loss"] for s in scores]))}
        rows.append(row)
        log.info("recipe %d/%d %s", index + 1, len(recipes), row)
    table = pd.DataFrame(rows)
    best = choose(table, tolerance)
    table["chosen"] = table.index == best
    return table.sort_values("val_accuracy", ascending=False, kind="stable").reset_index(drop=True), recipes[best]


def choose(table: pd.DataFrame, tolerance: float) -> int:
    """Row of the cheapest recipe (fewest steps; then the more accurate) within `tolerance` of the best."""
    good = table[table["val_accuracy"] >= table["val_accuracy"].max() - tolerance]
    return int(good.sort_values(["steps", "val_accuracy"], ascending=[True, False], kind="stable").index[0])
