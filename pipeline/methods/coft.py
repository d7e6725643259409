"""CoFT (Wang et al., arXiv 2602.04337), reconstructed from its abstract (no code is public, and only the
abstract and the introduction's opening could be read; docs/coft.md measures where it loses;
`../shared/METHODS.md`), with DeFT's public mechanism for the negative prompt. Three rounds:

1. **warm-up**: positive and negative text prompts (`DualPromptLearner`) and a residual visual
   adapter train on high-confidence zero-shot labels (the `pseudolabel.k` most confident per class):
   CE on the positive prompt plus the negative prompt's yes/no loss, which also reaches the adapter
   (the negative prompt regularises it);
2. **phase 1** (parameter-efficient): labels re-estimated by the warm-up model; an image is *clean*
   when its label's positive similarity beats its negative one, `cos(f, t⁺_ŷ) > cos(f, t⁻_ŷ)` (no
   hand-set threshold); fresh prompts and adapter train on the clean images only;
3. **phase 2** (full fine-tuning): the phase-1 model labels every image; the labels kept are those
   of the co-filter (`coft.cofilter`: `agree` = the phase-1 model and the frozen zero-shot model
   agree and the negative prompt calls the label clean; `clean` = the latter alone); the whole
   image tower fine-tunes on them against the phase-1 prompts, held fixed (CE on the positive ones).

The result is the phase-2 tower with the phase-1 positive prompts. Each round's cleanliness
precision / recall against the true labels goes to rounds.json (analysis only, never used).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from pipeline.core.candidates import LOGIT_SCALE, Candidates
from pipeline.methods.base import Method, register
from pipeline.pseudolabel.rules import select_all, select_balanced, softmax

WARMUP, PEFT, FINETUNE = "warm-up", "phase 1", "phase 2"


@register
class CoFT(Method):
    name = "coft"
    summary = ("positive + negative prompts and an adapter (warm-up, then on the images the negative prompt "
               "calls clean), then the image tower fine-tuned on co-filtered labels")
    selection_rule = False

    def __init__(self, params):
        super().__init__(params)
        self._analysis: dict[int, dict] = {}

    def rounds(self) -> int:
        return 3

    def phase(self, round_index: int) -> str:
        return (WARMUP, PEFT, FINETUNE)[round_index - 1]

    def trains_image_tower(self) -> bool:
        return True

    def learner_spec(self, round_index, class_weights):
        from pipeline.training.learners import LearnerSpec

        if self.phase(round_index) == FINETUNE:  # both prompts of phase 1 held fixed: 2C rows, as its output
            return LearnerSpec(prompt="visual", visual_tokens=0, full_finetune=True, fixed_text=class_weights,
                               contrast=self.uses_contrast())
        return LearnerSpec(prompt="text", visual_adapter=self.params.coft.adapter, negative_prompt=True,
                           descriptions=self.uses_descriptions())

    def round_recipe(self, round_index):
        """Phase 2 fine-tunes the tower for `coft.finetune_epochs` (null: train.epochs), its warm-up capped."""
        train, epochs = self.params.train, self.params.coft.finetune_epochs
        if self.phase(round_index) != FINETUNE or epochs is None:
            return train
        return train.model_copy(update={"epochs": epochs, "warmup_epochs": min(train.warmup_epochs, epochs - 1)})

    def uses_contrast(self) -> bool:
        return False

    def uses_descriptions(self) -> bool:
        return False

    def select(self, probs, round_index, previous, allowed_classes):
        """Round 1's labels (the pseudolabel stage): `coft.warmup: confident`, the `pseudolabel.k` most
        confident zero-shot argmax labels per class (FPL's rule); `pool`, every image's zero-shot label,
        the noisy set on which DeFT's dual prompts learn what a wrong label looks like."""
        if self.params.coft.warmup == "pool":
            return select_all(probs)
        return select_balanced(probs, self.params.pseudolabel.k)

    def pseudo_label(self, pool, class_weights, round_index=1, previous=None):
        if class_weights.shape[0] != 2 * pool.n_classes:  # the zero-shot classifier: round 1's rule
            return super().pseudo_label(pool, class_weights, round_index, previous)
        unlabeled, allowed = pool.unlabeled, pool.allowed_classes
        features = pool.features[unlabeled]
        positive = features @ class_weights[:pool.n_classes][allowed].T
        negative = features @ class_weights[pool.n_classes:][allowed].T
        probs = softmax(LOGIT_SCALE * positive)
        labels = probs.argmax(axis=1)
        rows = np.arange(len(unlabeled))
        clean = positive[rows, labels] > negative[rows, labels]
        right = allowed[labels] == pool.true_labels[unlabeled]  # analysis only
        keep = clean
        share = self.params.coft.phase1_share
        if self.phase(round_index) == PEFT and share is not None:   # only the most confident clean ones
            candidates = np.flatnonzero(clean)
            chosen = select_balanced(probs[candidates], int(share * len(rows) / len(allowed)))
            keep = np.zeros(len(rows), dtype=bool)
            keep[candidates[chosen.rows]] = True
            labels = labels.copy()
            labels[candidates[chosen.rows]] = chosen.labels   # GRIP's balanced rule: a full class passes it on
        if self.phase(round_index) == FINETUNE and self.params.coft.cofilter == "agree":
            frozen = pool.features if pool.frozen_features is None else pool.frozen_features
            zero_shot = (frozen[unlabeled] @ pool.zero_shot_weights[allowed].T).argmax(axis=1)
            keep = clean & (labels == zero_shot)
        kept_right = allowed[labels[keep]] == pool.true_labels[unlabeled][keep]
        self._analysis[round_index] = {
            "label_accuracy": float(right.mean()),
            "clean_share": float(clean.mean()),
            "clean_precision": float(right[clean].mean()) if clean.any() else float("nan"),
            "clean_recall": float(clean[right].mean()) if right.any() else float("nan"),
            "kept_share": float(keep.mean()),
            "kept_precision": float(kept_right.mean()) if keep.any() else float("nan"),
        }
        chosen = Candidates.single(rows[keep], labels[keep], len(allowed), probs[rows[keep], labels[keep]])
        return pool.to_pool_coordinates(chosen)

    def analysis(self, round_index):
        return self._analysis.get(round_index)

    def loss_terms(self, pool, targets, round_index=1):
        """The dual-prompt loss on every term; in phase 2 (fixed prompts) its negative part is off."""
        weight = 0.0 if self.phase(round_index) == FINETUNE else self.params.coft.negative_weight
        options = {"negative_weight": weight, "seed": self.params.seed + round_index,
                   "negatives": self.params.coft.negatives}
        return [replace(term, loss="dual", loss_options=options)
                for term in super().loss_terms(pool, targets, round_index)]
