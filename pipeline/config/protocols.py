"""Protocols: the experimental rules of a reference codebase, so numbers are comparable with its paper.

`protocol: project | grip | cpl` (params.yaml) picks one; each is one object here that says how the
TRZSL seen classes and SSL labels are drawn, how labeled and pseudo-labeled examples are weighed
and batched, what is held out of training, and the default recipe and templates (every `train.*`
recipe key or `clip.templates` left `null` takes the protocol's value; one you set wins). The table
"Protocols" in docs/protocols.md lists each rule beside the reference file it was read from.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from pipeline.core.terms import LossTerm

RECIPE_KEYS = ("n_ctx", "ctx_init", "optimizer", "lr", "momentum", "weight_decay", "epochs", "warmup_epochs",
               "batch_size", "augment", "crop_scale")


@dataclass(frozen=True)
class Protocol:
    name: str
    reference: str
    class_draw: Literal["legacy", "generator"]  # numpy's legacy global RNG (np.random.seed) or default_rng
    batching: Literal["project", "grip", "cpl"]  # how labeled and pseudo-labeled examples share a step
    holdout: float                              # share of pseudo-labels and of labeled images never trained on
    schedule: Literal["step", "epoch"] = "step"  # LR factor per optimiser step, or per epoch (0 in epoch 0)
    clip_grad_norm: float | None = None         # gradient norm cap per step
    recipe: dict = field(default_factory=dict)  # train.* defaults
    # The authors' exact rules (`docs/faithfulness.md`); the project keeps its own where they differ.
    k_inner_floor: bool = False                 # K_t = floor(t · floor(|U|/R) / C), GRIP's and CPL's code
    cpl_pools: Literal["exact", "reference"] = "exact"  # CPL's intra boundary and pool ties (pseudolabels.py)
    context_from: Literal["tokens", "words"] = "tokens"  # n_ctx of a ctx_init phrase: BPE tokens or CoOp's words
    templates: tuple[str, ...] = ("a photo of a {}.",)

    HOLDOUT_SEED = 0        # GRIP's validation_seed: the held-out rows do not move with the run's seed
    HOLDOUT_MIN_K = 10      # GRIP holds pseudo-labels out only when a class has at least 10

    def seen_classes(self, n_classes: int, fraction: float, seed: int) -> np.ndarray:
        """TRZSL's seen classes in draw order (GRIP's split files list them so): `int(fraction·C)` of C."""
        count = int(fraction * n_classes)
        if self.class_draw == "legacy":
            return np.random.RandomState(seed).choice(n_classes, count, replace=False)  # = np.random.seed(seed)
        return np.random.default_rng(seed).choice(n_classes, count, replace=False)

    def ssl_labeled(self, members_of_class: list[np.ndarray], n_label: int, seed: int) -> np.ndarray:
        """SSL's labeled images: `n_label` of each class's training rows. The legacy draw is GRIP's and
        CPL's: the global generator re-seeded with 0 for every class, whatever the run's seed."""
        if self.class_draw == "legacy":
            return np.concatenate([np.random.RandomState(self.HOLDOUT_SEED).choice(m, n_label, replace=False)
                                   for m in members_of_class])
        rng = np.random.default_rng(seed)
        return np.concatenate([rng.choice(m, n_label, replace=False) for m in members_of_class])

    def kept_rows(self, n: int, round_k: int | None) -> np.ndarray:
        """Rows of a term that train: all, or GRIP's `np.random.seed(0); choice(n, int(0.8 n))`, for the
        labeled images always and for pseudo-labels when K (`round_k`, None for labeled) is >= 10."""
        if not self.holdout or n == 0 or (round_k is not None and round_k < self.HOLDOUT_MIN_K):
            return np.arange(n)
        keep = np.random.RandomState(self.HOLDOUT_SEED).choice(n, int(n * (1 - self.holdout)), replace=False)
        return np.sort(keep)

    def training_terms(self, terms: list["LossTerm"], round_k: int) -> tuple[list["LossTerm"], int]:
        """The terms with the held-out rows removed, and how many rows were held out."""
        kept_terms, held_out = [], 0
        for term in terms:
            if term.name not in ("pseudo", "labeled"):
                kept_terms.append(term)
                continue
            keep = self.kept_rows(len(term.weights), round_k if term.name == "pseudo" else None)
            held_out += len(term.weights) - len(keep)
            kept_terms.append(replace(term, features=term.features[keep], weights=term.weights[keep],
                                      teacher=None if term.teacher is None else term.teacher[keep],
                                      images=None if term.images is None else term.images[keep]))
        return kept_terms, held_out


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol(
        name="project",
        reference="this project: the demo recipe chosen on a labelled source split (pipeline/demo/recipe.py)",
        class_draw="generator", batching="project", holdout=0.0,
        recipe=dict(n_ctx=16, ctx_init="a photo of a", optimizer="adam", lr=0.01, momentum=0.9, weight_decay=5e-4,
                    epochs=50, warmup_epochs=1, batch_size=32,
                    augment="none", crop_scale=[0.08, 1.0]),  # none: chosen on a labelled source split
        templates=("a photo of a {}.",),
    ),
    Protocol(
        name="grip",
        reference="BatsResearch/menghini-neurips23-code (utils/prepare_data.py, methods/main_*.py, "
                  "methods/*/textual_fpl.py, methods_config/grip_textual_config.yml)",
        class_draw="legacy", batching="grip", holdout=0.2, schedule="epoch", k_inner_floor=True,
        context_from="words",
        recipe=dict(n_ctx=16, ctx_init="", optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.1,
                    epochs=150, warmup_epochs=5, batch_size=16,
                    augment="crop_flip", crop_scale=[0.08, 1.0]),  # visual prompts: random resized crop + flip
        templates=("a photo of a {}",),
    ),
    Protocol(
        name="cpl",
        reference="vanillaer/CPL-ICML2024 (methods/*_new/textual_PL.py, scripts/run-textPT_ALL.sh)",
        class_draw="legacy", batching="cpl", holdout=0.0, schedule="epoch", clip_grad_norm=0.8,
        k_inner_floor=True, cpl_pools="reference", context_from="words",
        recipe=dict(n_ctx=16, ctx_init="", optimizer="sgd", lr=0.02, momentum=0.9, weight_decay=0.05,
                    epochs=50, warmup_epochs=2, batch_size=64,
                    augment="crop_flip", crop_scale=[0.08, 1.0]),  # visual prompts: random resized crop + flip
        templates=("a photo of a {}",),
    ),
)}


def get_protocol(name: str) -> Protocol:
    return PROTOCOLS[name]


def resolve(data: dict) -> dict:
    """Raw params with the protocol's recipe and templates filled in where a key is absent or null."""
    # An unknown name is reported by the schema; the project's values keep it the only error.
    protocol = PROTOCOLS.get(data.get("protocol", "project"), PROTOCOLS["project"])
    data = dict(data)
    for section, defaults in (("train", protocol.recipe), ("clip", {"templates": list(protocol.templates)})):
        given = data.get(section) or {}
        if not isinstance(given, dict):
            continue
        data[section] = {**given, **{k: v for k, v in defaults.items() if given.get(k) is None}}
    return data
