"""Prompt learning with candidate labels (Zhang et al. 2024, "Tuning Vision-Language Models with
Candidate Labels by Prompt Alignment"): every training image comes with a set of candidate classes
that holds its true one (`paradigm: candidates`); the prompt trains on all of them with a
partial-label loss (`train.pll_loss`), optionally aligned with the handcrafted prompt (`train.align`).
"""

from __future__ import annotations

import numpy as np

from pipeline.core.candidates import Candidates
from pipeline.methods.base import LossTerm, Method, register
from pipeline.pseudolabel.rules import text_posterior


@register
class PLL(Method):
    name = "pll"
    summary = ("the given candidate sets with a partial-label loss (train.pll_loss: cc | rc | lws | cavl), "
               "aligned with the handcrafted prompt's posterior when train.align")
    selection_rule = False
    paradigms = ("candidates",)
    needs_candidate_sets = True

    def pseudo_label(self, pool, class_weights, round_index=1, previous=None):
        """Every training image with its candidate set (nothing is selected); the assigned class, for
        the reports only, is the candidate the zero-shot classifier prefers."""
        if pool.candidate_sets is None:
            raise ValueError("method pll needs the candidates paradigm's label sets (paradigm: candidates)")
        masks = pool.candidate_sets
        probs = text_posterior(pool.features, class_weights)
        labels = np.where(masks, probs, -1.0).argmax(axis=1)
        rows = np.arange(len(masks))
        return Candidates(rows, labels, masks.astype(np.float32), probs[rows, labels].astype(np.float32))

    def loss_terms(self, pool, targets: Candidates, round_index: int = 1) -> list[LossTerm]:
        train = self.params.train
        teacher = None
        if train.align:
            teacher = text_posterior(pool.features[targets.rows], pool.zero_shot_weights).astype(np.float32)
        return [LossTerm("candidates", pool.features[targets.rows], targets.weights, 1.0, loss=train.pll_loss,
                         teacher=teacher, teacher_mix=train.align_mix,
                         loss_options={"non_candidate_weight": train.lws_weight, "numerics": train.pll_numerics},
                         images=pool.images_of(targets.rows))]
