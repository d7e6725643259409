"""Prompt training on cached image features, and the methods' pseudo-labelling rounds around it.

The image tower is frozen and training uses no augmentation (as in GRIP), so a step needs only the
cached image features of its batch and one pass of the text tower over the C class prompts. The
loss is `CE(pseudo-labels) + w · CE(labeled images) + β · CE(synthetic images)`; the last term is
AiR's and the second exists in SSL and TRZSL.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.auxiliary import auxiliary_posterior
from pipeline.params import Params, TrainParams
from pipeline.prompts import LOGIT_SCALE, PromptLearner
from pipeline.pseudolabels import Selection, fuse, n_rounds, rule_for, select, text_posterior

log = logging.getLogger(__name__)


@dataclass
class Pool:
    """Training-split features with what each method may know about them."""

    features: np.ndarray          # [N, d] L2-normalised real training images
    true_labels: np.ndarray       # [N] for analysis only (pseudo-label accuracy), never for training
    labeled: np.ndarray           # [N] bool: the paradigm lets training use the true label
    allowed_classes: np.ndarray   # classes pseudo-labels may take
    synthetic_features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    synthetic_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    prototypes: Optional[np.ndarray] = None

    @property
    def unlabeled(self) -> np.ndarray:
        return np.flatnonzero(~self.labeled)


@dataclass
class PseudoLabels:
    """Selected pseudo-labels as indices into `Pool.features` and global class ids."""

    rows: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray

    def accuracy(self, true_labels: np.ndarray) -> float:
        return float((true_labels[self.rows] == self.labels).mean()) if len(self.rows) else float("nan")


def method_posterior(pool: Pool, class_weights: np.ndarray, params: Params) -> np.ndarray:
    """Posterior over the allowed classes for the unlabeled pool: text, or AiR's fused one."""
    features = pool.features[pool.unlabeled]
    allowed = pool.allowed_classes
    probs = text_posterior(features, class_weights[allowed])
    if params.method == "air":
        if pool.prototypes is None:
            raise ValueError("method air needs auxiliary prototypes")
        aux = auxiliary_posterior(features, pool.prototypes[allowed], params.auxiliary.temperature)
        probs = fuse(probs, aux, params.pseudolabel.fusion_lambda)
    return probs


def pseudo_label(pool: Pool, class_weights: np.ndarray, params: Params, round_index: int = 1) -> PseudoLabels:
    """One round of the method's selection rule, mapped back to pool rows and global class ids."""
    rule = rule_for(params.method, params.pseudolabel.selection)
    rounds = n_rounds(params.method, params.pseudolabel.selection, params.pseudolabel.rounds)
    probs = method_posterior(pool, class_weights, params)
    chosen: Selection = select(probs, rule, params.pseudolabel.k, round_index, rounds)
    return PseudoLabels(pool.unlabeled[chosen.rows], pool.allowed_classes[chosen.labels], chosen.confidence)


def _schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    """Linear warm-up, then cosine decay to zero."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    """Optimiser steps in one pass over `n_examples` (the last batch may be short)."""
    return math.ceil(n_examples / batch_size)


def fit_prompt(learner: PromptLearner, pool: Pool, pseudo: PseudoLabels, params: TrainParams, seed: int,
               synthetic_weight: float, device: torch.device,
               on_epoch: Callable[[int, float], None] | None = None) -> list[float]:
    """Train the learner's context; returns the mean loss of every epoch.

    An epoch is one pass over the pseudo-labels; the labeled and synthetic terms draw batches of the
    same size at random. Without pseudo-labels (GRIP's first round on a small pool) the first
    non-empty source sets the epoch; with no source at all nothing is trained.
    """
    rng = np.random.default_rng(seed)
    to = lambda array, dtype=torch.float32: torch.tensor(array, dtype=dtype, device=device)  # noqa: E731
    labeled_rows = np.flatnonzero(pool.labeled)
    sources = [(to(pool.features[pseudo.rows]), to(pseudo.labels, torch.long), 1.0)]
    if len(labeled_rows) and params.labeled_weight > 0:
        sources.append((to(pool.features[labeled_rows]), to(pool.true_labels[labeled_rows], torch.long),
                        params.labeled_weight))
    if len(pool.synthetic_labels) and synthetic_weight > 0:
        sources.append((to(pool.synthetic_features), to(pool.synthetic_labels, torch.long), synthetic_weight))
    sources = [s for s in sources if len(s[1])]
    if not sources:
        return []
    main_size = len(sources[0][1])
    epoch_steps = steps_per_epoch(main_size, params.batch_size)

    if params.optimizer == "sgd":
        optimizer = torch.optim.SGD(learner.parameters(), lr=params.lr, momentum=params.momentum,
                                    weight_decay=params.weight_decay)
    else:
        optimizer = torch.optim.Adam(learner.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    scheduler = _schedule(optimizer, params.warmup_epochs * epoch_steps, params.epochs * epoch_steps)

    history = []
    learner.train()
    for epoch in range(params.epochs):
        order = rng.permutation(main_size)
        total = 0.0
        for step in range(epoch_steps):
            weights = learner()
            batch = order[step * params.batch_size:(step + 1) * params.batch_size]
            loss = 0.0
            for index, (features, labels, weight) in enumerate(sources):
                rows = batch if index == 0 else rng.integers(0, len(labels), len(batch))
                rows = torch.as_tensor(rows, device=device)
                logits = LOGIT_SCALE * features[rows] @ weights.T
                loss = loss + weight * F.cross_entropy(logits, labels[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item()
        history.append(total / epoch_steps)
        if on_epoch is not None:
            on_epoch(epoch, history[-1])
    learner.eval()
    return history


@dataclass
class RoundResult:
    round_index: int
    k: int
    n_pseudo_labels: int
    pseudo_label_accuracy: float
    final_loss: float


@dataclass
class MethodResult:
    class_weights: np.ndarray                  # final text classifier [C, d]
    context: dict[str, torch.Tensor] | None    # learned context vectors (None for zero-shot)
    pseudo: PseudoLabels                       # pseudo-labels the final prompt was trained on
    rounds: list[RoundResult]


def run_method(make_learner: Callable[[], PromptLearner], pool: Pool, zero_shot_weights: np.ndarray,
               first_round: PseudoLabels, params: Params, device: torch.device,
               on_epoch: Callable[[int, int, float], None] | None = None) -> MethodResult:
    """Train per the method: once on `first_round`, or for IFPL / GRIP / AiR-with-GRIP re-label and
    train a freshly initialised prompt every round."""
    if params.method == "zeroshot":
        return MethodResult(zero_shot_weights, None, first_round, [])
    rounds = n_rounds(params.method, params.pseudolabel.selection, params.pseudolabel.rounds)
    synthetic_weight = params.train.synthetic_weight if params.method == "air" else 0.0
    pseudo, results, learner, weights = first_round, [], None, zero_shot_weights
    for round_index in range(1, rounds + 1):
        if round_index > 1:
            pseudo = pseudo_label(pool, weights, params, round_index)
        learner = make_learner()
        history = fit_prompt(learner, pool, pseudo, params.train, params.seed + round_index, synthetic_weight,
                             device, None if on_epoch is None else (lambda e, l, r=round_index: on_epoch(r, e, l)))
        with torch.no_grad():
            weights = learner().cpu().numpy()
        results.append(RoundResult(round_index, _round_k(pseudo, pool), len(pseudo.rows),
                                   pseudo.accuracy(pool.true_labels), history[-1] if history else float("nan")))
        log.info("round %d/%d: %d pseudo-labels (%.1f%% right), final loss %.4f", round_index, rounds,
                 results[-1].n_pseudo_labels, 100 * results[-1].pseudo_label_accuracy, results[-1].final_loss)
    return MethodResult(weights, learner.context_state(), pseudo, results)


def _round_k(pseudo: PseudoLabels, pool: Pool) -> int:
    """The largest number of pseudo-labels any class received this round."""
    return int(np.bincount(pseudo.labels, minlength=1).max()) if len(pseudo.labels) else 0
