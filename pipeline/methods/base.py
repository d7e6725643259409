"""What a method is: one object that says how it labels, for how many rounds, and what it trains on.

Stages and the training loop ask the method built from `params.method`, never its name. A method
registers itself with `@register`; `pipeline.methods` imports every module of this package, so
adding a method means adding a file here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from pipeline.core.candidates import Candidates
from pipeline.core.pool import Pool
from pipeline.core.terms import LossTerm
from pipeline.pseudolabel.rules import text_posterior

if TYPE_CHECKING:
    from pipeline.config.params import Params
    from pipeline.training.learners import LearnerSpec




class Method:
    """Base: text posterior, one round, loss on the pseudo-labels plus the paradigm's labeled images."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    trains: ClassVar[bool] = True             # False: the zero-shot classifier is the result
    needs_prototypes: ClassVar[bool] = False  # reads the auxiliary stage's synthetic prototypes
    reads_synthetic_images: ClassVar[bool] = False  # False: the experiment adapts and generates nothing
    needs_candidate_sets: ClassVar[bool] = False  # reads the candidates paradigm's label sets
    selection_rule: ClassVar[bool] = True     # may serve as AiR's `pseudolabel.selection`
    paradigms: ClassVar[tuple[str, ...]] = ("ul", "ssl", "trzsl")  # where the method has a meaning

    def __init__(self, params: "Params"):
        self.params = params

    def rounds(self) -> int:
        return 1

    def posterior(self, pool: Pool, class_weights: np.ndarray) -> np.ndarray:
        """Posterior over `pool.allowed_classes` for the unlabeled images, from the class weights."""
        return text_posterior(pool.features[pool.unlabeled], class_weights[pool.allowed_classes])

    def select(self, probs: np.ndarray, round_index: int, previous: Candidates | None,
               allowed_classes: np.ndarray) -> Candidates:
        """The rule, in the posterior's coordinates. `previous` is last round's answer (pool coordinates)."""
        raise NotImplementedError

    def pseudo_label(self, pool: Pool, class_weights: np.ndarray, round_index: int = 1,
                     previous: Candidates | None = None) -> Candidates:
        """One round: posterior, rule, then back to pool rows and global classes."""
        probs = self.posterior(pool, class_weights)
        return pool.to_pool_coordinates(self.select(probs, round_index, previous, pool.allowed_classes))

    def round_recipe(self, round_index: int):
        """The `train` recipe a round trains with: `params.train`'s, unless a method's phases differ."""
        return self.params.train

    def learner_spec(self, round_index: int, class_weights: np.ndarray) -> "LearnerSpec":
        """What the round trains (`class_weights`: the previous round's output): `params.train`'s."""
        from pipeline.training.learners import LearnerSpec

        return LearnerSpec.from_train(self.params.train)

    def trains_image_tower(self) -> bool:
        """Whether any round runs the image tower (the train stage then builds the pixel store)."""
        from pipeline.training.learners import LearnerSpec

        return self.trains and LearnerSpec.from_train(self.params.train).image_space

    def analysis(self, round_index: int) -> dict | None:
        """The method's own diagnostics of the round's selection, for rounds.json (analysis only)."""
        return None

    def loss_terms(self, pool: Pool, targets: Candidates, round_index: int = 1) -> list[LossTerm]:
        terms = [LossTerm("pseudo", pool.features[targets.rows], targets.weights, 1.0,
                          images=pool.images_of(targets.rows))]
        labeled = np.flatnonzero(pool.labeled)
        weight = self.params.train.labeled_weight
        if len(labeled) and weight > 0:
            terms.append(LossTerm("labeled", pool.features[labeled],
                                  one_hot(pool.true_labels[labeled], pool.n_classes), weight,
                                  images=pool.images_of(labeled)))
        return terms


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    weights = np.zeros((len(labels), n_classes), dtype=np.float32)
    weights[np.arange(len(labels)), labels] = 1.0
    return weights


_REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    if cls.name in _REGISTRY:
        raise ValueError(f"method {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def registry() -> dict[str, type[Method]]:
    return dict(_REGISTRY)
