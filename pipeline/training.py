"""Prompt training on cached image features, the method's pseudo-labelling rounds around it, and
the prompt ensemble.

The image tower is frozen and training uses no augmentation (as in GRIP), so a step needs only the
cached image features of its batch and one pass of the text tower over the C class prompts. The
loss is the sum of the method's terms (`pipeline.methods`), each `scale · loss` with the term's
partial-label loss (`pipeline.partial_labels`; the candidate loss unless the method says otherwise):
the pseudo-labels (or candidate sets), the paradigm's labeled images, AiR's synthetic images.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from pipeline.batching import PLANS
from pipeline.candidates import LOGIT_SCALE, Candidates
from pipeline.devices import rebalance_threads
from pipeline.methods import LossTerm, Method
from pipeline.params import TrainParams
from pipeline.partial_labels import build_loss
from pipeline.pool import Pool
from pipeline.prompts import PromptLearner
from pipeline.protocols import PROTOCOLS, Protocol, get_protocol

log = logging.getLogger(__name__)


def _schedule(optimizer: torch.optim.Optimizer, warmup_epochs: int, epochs: int, steps_per_epoch: int,
              per_epoch: bool = False):
    """Linear warm-up, then cosine decay to zero: per optimiser step, or (GRIP's and CPL's
    `utils/schedulers.py`) one factor per epoch, `e / warmup` in warm-up (so epoch 0 learns nothing)."""
    if per_epoch:
        def factor(step: int) -> float:
            epoch = step // steps_per_epoch
            if epoch < warmup_epochs:
                return epoch / warmup_epochs
            return 0.5 * (1 + math.cos(math.pi * (epoch - warmup_epochs) / max(1, epochs - warmup_epochs)))
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    warmup_steps, total_steps = warmup_epochs * steps_per_epoch, epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    """Optimiser steps in one pass over `n_examples` (the last batch may be short)."""
    return math.ceil(n_examples / batch_size)


def fit_prompt(learner: PromptLearner, terms: list[LossTerm], params: TrainParams, seed: int,
               device: torch.device, on_epoch: Callable[[int, float], None] | None = None,
               protocol: Protocol = PROTOCOLS["project"], paradigm: str = "ul") -> list[float]:
    """Train the learner's context on the loss terms; returns the mean loss of every epoch.

    The protocol's plan (`pipeline.batching`) says which rows of which term each step trains on and
    at what scale; under the project's, an epoch is one pass over the first non-empty term (the
    pseudo-labels, or with none yet, as in GRIP's first round on a small pool, the next source) and
    the other terms draw batches of the same size at random. With no non-empty term nothing is trained.

    A loss with per-image state (RC, LWS) is updated with the logits its rows get from the prompt
    after the optimiser step; those are the next step's logits (same parameters), so the update
    reads them from the next step's text-tower pass instead of running one more.
    """
    rng = np.random.default_rng(seed)
    to = lambda array: torch.tensor(array, dtype=torch.float32, device=device)  # noqa: E731
    used = [term for term in terms if len(term.weights) and term.scale > 0]
    if not used:
        return []
    sources = [(to(term.features), _term_loss(term, to)) for term in used]
    plan = PLANS[protocol.batching]([t.name for t in used], [len(t.weights) for t in used], [t.scale for t in used],
                                    params.batch_size, paradigm)
    epoch_steps = plan.steps_per_epoch

    if params.optimizer == "sgd":
        optimizer = torch.optim.SGD(learner.parameters(), lr=params.lr, momentum=params.momentum,
                                    weight_decay=params.weight_decay)
    else:
        optimizer = torch.optim.Adam(learner.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    scheduler = _schedule(optimizer, params.warmup_epochs, params.epochs, epoch_steps, protocol.schedule == "epoch")

    history, pending = [], []
    learner.train()
    for epoch in range(params.epochs):
        rebalance_threads()
        total = 0.0
        for step_rows in plan.epoch(rng):
            class_weights = learner()
            with torch.no_grad():
                for features, term_loss, rows in pending:
                    term_loss.update(LOGIT_SCALE * features[rows] @ class_weights.T, rows)
            pending = []
            loss = 0.0
            for index, rows, scale in step_rows:
                features, term_loss = sources[index]
                rows = torch.as_tensor(rows, device=device)
                logits = LOGIT_SCALE * features[rows] @ class_weights.T
                loss = loss + scale * term_loss(logits, rows)
                if term_loss.stateful:
                    pending.append((features, term_loss, rows))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if protocol.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(learner.parameters(), protocol.clip_grad_norm)
            optimizer.step()
            scheduler.step()
            total += loss.item()
        history.append(total / epoch_steps)
        if on_epoch is not None:
            on_epoch(epoch, history[-1])
    learner.eval()
    return history


def _term_loss(term: LossTerm, to: Callable[[np.ndarray], torch.Tensor]):
    teacher = None if term.teacher is None else to(term.teacher)
    return build_loss(term.loss, to(term.weights), teacher, term.teacher_mix, **(term.loss_options or {}))


@dataclass
class RoundResult:
    round_index: int
    k: int
    n_pseudo_labels: int
    pseudo_label_accuracy: float
    candidate_coverage: float
    mean_candidate_set_size: float
    final_loss: float
    held_out: int = 0      # pseudo-labeled and labeled rows the protocol kept out of training


@dataclass
class MethodResult:
    class_weights: np.ndarray                  # final text classifier [C, d]
    context: dict[str, torch.Tensor] | None    # learned context vectors (None for zero-shot)
    pseudo: Candidates                         # pseudo-labels the final prompt was trained on
    rounds: list[RoundResult]


def run_method(method: Method, make_learner: Callable[[], PromptLearner], pool: Pool,
               zero_shot_weights: np.ndarray, first_round: Candidates, seed: int, device: torch.device,
               on_epoch: Callable[[int, int, float], None] | None = None) -> MethodResult:
    """Train per the method: each of its rounds re-labels with the prompt just trained (the first
    round's labels come from the pseudolabel stage) and trains a freshly initialised prompt."""
    if not method.trains:
        return MethodResult(zero_shot_weights, None, first_round, [])
    rounds = method.rounds()
    protocol = get_protocol(method.params.protocol)
    pseudo, results, learner, weights = first_round, [], None, zero_shot_weights
    for round_index in range(1, rounds + 1):
        if round_index > 1:
            pseudo = method.pseudo_label(pool, weights, round_index, previous=pseudo)
        learner = make_learner()
        terms, held_out = protocol.training_terms(method.loss_terms(pool, pseudo), _round_k(pseudo))
        history = fit_prompt(learner, terms, method.params.train, seed + round_index, device,
                             None if on_epoch is None else (lambda e, l, r=round_index: on_epoch(r, e, l)),
                             protocol, method.params.paradigm)
        with torch.no_grad():
            weights = learner().cpu().numpy()
        results.append(RoundResult(round_index, _round_k(pseudo), len(pseudo), pseudo.accuracy(pool.true_labels),
                                   pseudo.coverage(pool.true_labels), pseudo.mean_set_size(),
                                   history[-1] if history else float("nan"), held_out))
        log.info("round %d/%d: %d pseudo-labels (%.1f%% right, true class in the set %.1f%%, %.2f per set, "
                 "%d rows held out), final loss %.4f", round_index, rounds, results[-1].n_pseudo_labels,
                 100 * results[-1].pseudo_label_accuracy, 100 * results[-1].candidate_coverage,
                 results[-1].mean_candidate_set_size, held_out, results[-1].final_loss)
    return MethodResult(weights, learner.context_state(), pseudo, results)


def member_seed(seed: int, member: int) -> int:
    """Seed of ensemble member m: member 0 keeps `seed`, so an ensemble of one is the plain run, and
    the members of different seeds do not overlap (stride 100,003)."""
    return seed + member * 100_003


@dataclass
class EnsembleResult:
    members: list[MethodResult]

    @property
    def class_weights(self) -> np.ndarray:
        """Mean of the members' class weights: `100 · f W̄ᵀ` is exactly the mean of their logits."""
        return np.mean([m.class_weights for m in self.members], axis=0).astype(np.float32)


def run_ensemble(method: Method, make_learner: Callable[[int], PromptLearner], pool: Pool,
                 zero_shot_weights: np.ndarray, first_round: Candidates, device: torch.device,
                 on_epoch: Callable[[int, int, int, float], None] | None = None) -> EnsembleResult:
    """UPL's prompt ensemble, for any method: `train.ensemble` independent runs of the method from
    different seeds (`make_learner(seed)`); the test logits are averaged. A method without training
    has one member."""
    size = method.params.train.ensemble if method.trains else 1
    members = []
    for member in range(size):
        seed = member_seed(method.params.seed, member)
        if size > 1:
            log.info("ensemble member %d/%d (seed %d)", member + 1, size, seed)
        members.append(run_method(method, lambda: make_learner(seed), pool, zero_shot_weights, first_round, seed,
                                  device, None if on_epoch is None else
                                  (lambda r, e, l, m=member: on_epoch(m, r, e, l))))
    return EnsembleResult(members)


def _round_k(pseudo: Candidates) -> int:
    """The largest number of pseudo-labels any class received this round."""
    return int(np.bincount(pseudo.labels, minlength=1).max()) if len(pseudo) else 0
