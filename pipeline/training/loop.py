"""Prompt training on cached image features, the method's pseudo-labelling rounds around it, and
the prompt ensemble.

The image tower is frozen and training uses no augmentation (as in GRIP), so a step needs only the
cached image features of its batch and one pass of the text tower over the C class prompts. The
loss is the sum of the method's terms (`pipeline.methods`), each `scale · loss` with the term's
partial-label loss (`pipeline.training.losses`; the candidate loss unless the method says otherwise):
the pseudo-labels (or candidate sets), the paradigm's labeled images, AiR's synthetic images.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from pipeline.config.params import TrainParams
from pipeline.config.protocols import PROTOCOLS, Protocol, get_protocol
from pipeline.core.candidates import LOGIT_SCALE, Candidates
from pipeline.core.pool import Pool
from pipeline.methods.base import LossTerm, Method
from pipeline.runtime.devices import rebalance_threads
from pipeline.training.batching import PLANS
from pipeline.training.checkpoints import Checkpoints, digest, load_optimizer, optimizer_tensors
from pipeline.training.losses import build_loss

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


# `train.optimizer`: each builds the optimiser over the learner's parameter groups.
OPTIMIZERS = {
    "sgd": lambda groups, p: torch.optim.SGD(groups, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay),
    "adam": lambda groups, p: torch.optim.Adam(groups, lr=p.lr, weight_decay=p.weight_decay),
}


def build_optimizer(learner: torch.nn.Module, params: TrainParams) -> torch.optim.Optimizer:
    """`train.optimizer` over the learner's parameter groups (its own per-part learning rates, if any)."""
    groups = learner.parameter_groups(params.lr) if hasattr(learner, "parameter_groups") else learner.parameters()
    return OPTIMIZERS[params.optimizer](groups, params)


def _backward(learner, step_rows, sources, class_weights: torch.Tensor, chunks: int, device: torch.device,
              regulariser, total: float) -> tuple[float, list, list]:
    """One step's losses and gradients, in `chunks` micro-batches whose gradients add up to the whole
    batch's; returns `total` plus the step's loss, and the stateful losses to update after the
    optimiser step (from the next step's logits on cached features; by one more forward on images)."""
    pending, after_step, images = [], [], []
    for chunk in range(chunks):
        loss = 0.0
        for index, rows, scale in step_rows:
            inputs, term_loss = sources[index]
            part = np.array_split(rows, chunks)[chunk] if chunks > 1 else rows
            if not len(part):
                continue
            part = torch.as_tensor(part, device=device)
            views = _augmentation_state(learner) if term_loss.stateful and not inputs.cached else None
            logits = LOGIT_SCALE * inputs(part) @ class_weights.T
            term = scale * term_loss(logits, part)
            loss = loss + (term * (len(part) / len(rows)) if chunks > 1 else term)
            if term_loss.stateful and inputs.cached:
                pending.append((inputs, term_loss, part))
            elif term_loss.stateful:
                after_step.append((inputs, term_loss, part, views))
            if regulariser is not None and not inputs.cached:
                images.append(inputs.images[part.cpu().numpy()])
        if images:
            extra = regulariser(np.concatenate(images))
            loss = loss + extra / chunks if extra is not None else loss
            images = []
        if isinstance(loss, torch.Tensor):
            loss.backward(retain_graph=chunk < chunks - 1)
            total += loss.item()
    return total, pending, after_step


def fit_prompt(learner: torch.nn.Module, terms: list[LossTerm], params: TrainParams, seed: int,
               device: torch.device, on_epoch: Callable[[int, float], None] | None = None,
               protocol: Protocol = PROTOCOLS["project"], paradigm: str = "ul",
               checkpoints: Checkpoints | None = None, checkpoint_key: str | None = None) -> list[float]:
    """Train the learner on the loss terms; returns the mean loss of every epoch.

    The protocol's plan (`pipeline.training.batching`) says which rows of which term each step trains on and
    at what scale; under the project's, an epoch is one pass over the first non-empty term (the
    pseudo-labels, or with none yet, as in GRIP's first round on a small pool, the next source) and
    the other terms draw batches of the same size at random. With no non-empty term nothing is trained.

    A term's image features are its cached features, or, for a learner that encodes images
    (`pipeline.training.learners.ImageSpaceLearner`) and a term with `images`, the learner's features of
    those images, recomputed (and augmented) every step. A step may be split into
    `train.accumulate` micro-batches whose gradients add up to the whole batch's. A learner may add a
    loss on the step's images (`regulariser`) and act after each optimiser step (`after_step`).

    A loss with per-image state (RC, LWS) is updated with the logits its rows get from the learner
    after the optimiser step, as CoOpPLL's `after_update` does: on cached features those are the next
    step's logits (same parameters), so the update reads them from the next step's text-tower pass
    instead of running one more; on images, one more forward (no gradient) of the very views the step
    trained on (the augmentation generator is replayed), with the updated parameters.

    With `checkpoints`, the state after every `checkpoints.every` epochs is saved under
    `checkpoint_key` and a saved state is resumed from, exactly.
    """
    rng = np.random.default_rng(seed)
    to = lambda array: torch.tensor(array, dtype=torch.float32, device=device)  # noqa: E731
    used = [term for term in terms if len(term.weights) and term.scale > 0]
    if not used:
        return []
    encode = getattr(learner, "encode", None)
    regulariser = getattr(learner, "regulariser", None)          # a loss on the step's images (CoFT+'s MoCo)
    after_optimizer_step = getattr(learner, "after_step", None)  # e.g. a momentum encoder's EMA
    sources = [(_term_inputs(term, encode, to), _term_loss(term, to)) for term in used]
    plan = PLANS[protocol.batching]([t.name for t in used], [len(t.weights) for t in used], [t.scale for t in used],
                                    params.batch_size, paradigm)
    epoch_steps = plan.steps_per_epoch

    optimizer = build_optimizer(learner, params)
    scheduler = _schedule(optimizer, params.warmup_epochs, params.epochs, epoch_steps, protocol.schedule == "epoch")
    trainable = [p for group in optimizer.param_groups for p in group["params"]]

    history, pending, start = [], [], 0
    saved = checkpoints.load(checkpoint_key) if checkpoints is not None and checkpoint_key else None
    if saved is not None:
        start, history, pending = _resume(saved, learner, optimizer, scheduler, rng, plan, sources)
        log.info("resuming from the checkpoint after epoch %d/%d", start, params.epochs)
        if on_epoch is not None:
            for epoch, loss in enumerate(history):
                on_epoch(epoch, loss)
    learner.train()
    for epoch in range(start, params.epochs):
        rebalance_threads()
        total = 0.0
        for step_rows in plan.epoch(rng):
            class_weights = learner()
            with torch.no_grad():
                for inputs, term_loss, rows in pending:
                    term_loss.update(LOGIT_SCALE * inputs(rows) @ class_weights.T, rows)
            optimizer.zero_grad(set_to_none=True)
            total, pending, after_step = _backward(learner, step_rows, sources, class_weights, params.accumulate,
                                                   device, regulariser, total)
            if protocol.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(trainable, protocol.clip_grad_norm)
            optimizer.step()
            scheduler.step()
            if after_optimizer_step is not None:
                after_optimizer_step()
            if after_step:
                _update_after_step(learner, after_step)
        history.append(total / epoch_steps)
        if on_epoch is not None:
            on_epoch(epoch, history[-1])
        if checkpoints is not None and checkpoint_key and (
                (epoch + 1) % checkpoints.every == 0 or epoch + 1 == params.epochs):
            _save(checkpoints, checkpoint_key, epoch + 1, history, pending, learner, optimizer, scheduler, rng,
                  plan, sources)
    learner.eval()
    return history


def _augmentation_state(learner) -> torch.Tensor | None:
    generator = getattr(learner, "generator", None)
    return None if generator is None else generator.get_state()


@torch.no_grad()
def _update_after_step(learner, after_step: list) -> None:
    """Stateful losses on images: their rows' logits under the parameters after the step, on the
    step's own views (the augmentation generator replayed from before each encoding, then restored)."""
    class_weights = learner()
    generator = getattr(learner, "generator", None)
    resume = None if generator is None else generator.get_state()
    for inputs, term_loss, rows, views in after_step:
        if views is not None:
            generator.set_state(views)
        term_loss.update(LOGIT_SCALE * inputs(rows) @ class_weights.T, rows)
    if resume is not None:
        generator.set_state(resume)


class _Inputs:
    """Image features of a term's rows: cached, or encoded from its images by the learner."""

    def __init__(self, features: torch.Tensor | None, images: np.ndarray | None, encode):
        self.features, self.images, self.encode = features, images, encode
        self.cached = features is not None

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        if self.cached:
            return self.features[rows]
        return self.encode(self.images[rows.cpu().numpy()])


def _term_inputs(term: LossTerm, encode, to) -> _Inputs:
    if encode is not None and term.images is not None:
        return _Inputs(None, term.images, encode)
    return _Inputs(to(term.features), None, None)


def _save(checkpoints: Checkpoints, key: str, epoch: int, history: list[float], pending: list, learner,
          optimizer, scheduler, rng: np.random.Generator, plan, sources) -> None:
    state = learner.resume_state() if hasattr(learner, "resume_state") else learner.context_state()
    tensors = {f"learner.{name}": value for name, value in state.items()}
    optimizer_state, optimizer_meta = optimizer_tensors(optimizer)
    tensors.update(optimizer_state)
    for index, (_, term_loss) in enumerate(sources):
        tensors.update({f"loss.{index}.{name}": value for name, value in term_loss.state().items()})
    generator = getattr(learner, "generator", None)
    if generator is not None:
        tensors["augment_rng"] = generator.get_state()
    term_of = {id(loss): index for index, (_, loss) in enumerate(sources)}
    for order, (_, term_loss, rows) in enumerate(pending):
        tensors[f"pending.{order}.{term_of[id(term_loss)]}"] = rows.cpu()
    scheduler_state = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    checkpoints.save(key, tensors, {"epoch": epoch, "history": history, "optimizer": optimizer_meta,
                                    "scheduler": scheduler_state, "rng": rng.bit_generator.state,
                                    "plan": plan.state()})


def _resume(saved, learner, optimizer, scheduler, rng: np.random.Generator, plan, sources):
    tensors, state = saved
    learner.load_context({name.removeprefix("learner."): value for name, value in tensors.items()
                          if name.startswith("learner.")})
    load_optimizer(optimizer, tensors, state["optimizer"])
    scheduler.load_state_dict({**state["scheduler"], "lr_lambdas": [None] * len(optimizer.param_groups)})
    rng.bit_generator.state = state["rng"]
    plan.load_state(state["plan"])
    for index, (_, term_loss) in enumerate(sources):
        prefix = f"loss.{index}."
        loss_state = {name.removeprefix(prefix): value for name, value in tensors.items() if name.startswith(prefix)}
        if loss_state:
            term_loss.load_state(loss_state)
    if "augment_rng" in tensors:
        learner.generator.set_state(tensors["augment_rng"])
    pending = []
    for name in sorted((n for n in tensors if n.startswith("pending.")), key=lambda n: int(n.split(".")[1])):
        inputs, term_loss = sources[int(name.split(".")[2])]
        pending.append((inputs, term_loss, tensors[name].to(inputs.features.device)))
    return state["epoch"], list(state["history"]), pending


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
    analysis: dict | None = None  # a method's own diagnostics of its selection (against true labels)


@dataclass
class MethodResult:
    class_weights: np.ndarray                  # final text classifier [C, d]
    context: dict[str, torch.Tensor] | None    # learned context vectors (None for zero-shot)
    pseudo: Candidates                         # pseudo-labels the final prompt was trained on
    rounds: list[RoundResult]
    visual_config: dict | None = None          # how the trained image side is built (None: frozen tower)


def run_method(method: Method, make_learner: Callable[..., torch.nn.Module], pool: Pool,
               zero_shot_weights: np.ndarray, first_round: Candidates, seed: int, device: torch.device,
               on_epoch: Callable[[int, int, float], None] | None = None,
               checkpoints: Checkpoints | None = None) -> MethodResult:
    """Train per the method: each of its rounds re-labels with the model just trained (the first
    round's labels come from the pseudolabel stage) and trains a freshly initialised learner of the
    kind the method asks for (`make_learner(spec)`). A learner that changes the image tower
    re-encodes the pool for the next round's labels."""
    if not method.trains:
        return MethodResult(zero_shot_weights, None, first_round, [])
    rounds = method.rounds()
    protocol = get_protocol(method.params.protocol)
    pseudo, results, learner, weights = first_round, [], None, zero_shot_weights
    for round_index in range(1, rounds + 1):
        if round_index > 1:
            pseudo = method.pseudo_label(pool, weights, round_index, previous=pseudo)
        learner = make_learner(method.learner_spec(round_index, weights))
        terms, held_out = protocol.training_terms(method.loss_terms(pool, pseudo, round_index), _round_k(pseudo))
        recipe = method.round_recipe(round_index)
        key = None if checkpoints is None else _round_key(method, terms, seed, round_index, recipe)
        history = fit_prompt(learner, terms, recipe, seed + round_index, device,
                             None if on_epoch is None else (lambda e, l, r=round_index: on_epoch(r, e, l)),
                             protocol, method.params.paradigm, checkpoints, key)
        with torch.no_grad():
            weights = learner().cpu().numpy()
        if hasattr(learner, "refresh_pool") and round_index < rounds:
            pool = learner.refresh_pool(pool, method.params.auxiliary.keep, method.params.auxiliary.score)
        results.append(RoundResult(round_index, _round_k(pseudo), len(pseudo), pseudo.accuracy(pool.true_labels),
                                   pseudo.coverage(pool.true_labels), pseudo.mean_set_size(),
                                   history[-1] if history else float("nan"), held_out, method.analysis(round_index)))
        log.info("round %d/%d: %d pseudo-labels (%.1f%% right, true class in the set %.1f%%, %.2f per set, "
                 "%d rows held out), final loss %.4f", round_index, rounds, results[-1].n_pseudo_labels,
                 100 * results[-1].pseudo_label_accuracy, 100 * results[-1].candidate_coverage,
                 results[-1].mean_candidate_set_size, held_out, results[-1].final_loss)
    # A learner's rows beyond the C classes are its own (CoFT's negative prompts); the first C classify.
    return MethodResult(weights[:pool.n_classes], learner.context_state(), pseudo, results,
                        getattr(learner, "config", None))


def _round_key(method: Method, terms: list[LossTerm], seed: int, round_index: int, recipe: TrainParams) -> str:
    """Names a round's checkpoint by everything that decides its trajectory."""
    params = method.params
    parts = [method.name, params.protocol, params.paradigm, params.clip.arch, params.clip.pretrained, seed,
             round_index, recipe.model_dump(exclude={"device", "checkpoint_every"})]
    for term in terms:
        parts += [term.name, term.scale, term.loss, term.loss_options, term.teacher_mix, term.weights, term.teacher,
                  term.features if term.images is None else term.images]
    return digest(*parts)


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


def run_ensemble(method: Method, make_learner: Callable[[int], torch.nn.Module], pool: Pool,
                 zero_shot_weights: np.ndarray, first_round: Candidates, device: torch.device,
                 on_epoch: Callable[[int, int, int, float], None] | None = None,
                 checkpoints: Checkpoints | None = None) -> EnsembleResult:
    """UPL's prompt ensemble, for any method: `train.ensemble` independent runs of the method from
    different seeds (`make_learner(seed)`); the test logits are averaged. A method without training
    has one member."""
    size = method.params.train.ensemble if method.trains else 1
    members = []
    for member in range(size):
        seed = member_seed(method.params.seed, member)
        if size > 1:
            log.info("ensemble member %d/%d (seed %d)", member + 1, size, seed)
        members.append(run_method(method, lambda spec, s=seed: make_learner(s, spec), pool, zero_shot_weights, first_round, seed,
                                  device, None if on_epoch is None else
                                  (lambda r, e, l, m=member: on_epoch(m, r, e, l)), checkpoints))
    return EnsembleResult(members)


def _round_k(pseudo: Candidates) -> int:
    """The largest number of pseudo-labels any class received this round."""
    return int(np.bincount(pseudo.labels, minlength=1).max()) if len(pseudo) else 0
