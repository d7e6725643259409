"""CoFT+ (Wang et al., arXiv 2602.04337), reconstructed: CoFT's rounds iterated, a momentum
contrastive term while the image tower fine-tunes, and class descriptions joining the positive prompt.

Rounds: the warm-up, then `coft.iterations` times (phase 1, phase 2); each phase 1 labels with the
model the previous round left (after a phase 2, the fine-tuned tower and its fixed prompts), so the
clean set is re-estimated with a better image side every iteration. Phase 2 adds
`coft.moco_weight · InfoNCE` against a momentum encoder (`pipeline/training/momentum.py`). With
`coft.descriptions_file` (the paper has an LLM write them; offline the file is the interface), each
class's positive prompt averages `ctx {class}.` with `ctx {class}, {description}.` per description.
"""

from __future__ import annotations

from pipeline.methods.base import register
from pipeline.methods.coft import FINETUNE, PEFT, WARMUP, CoFT


@register
class CoFTPlus(CoFT):
    name = "coft_plus"
    summary = ("CoFT iterated coft.iterations times, with a momentum contrastive term in phase 2 and class "
               "descriptions (coft.descriptions_file) in the positive prompt")

    def rounds(self) -> int:
        return 1 + 2 * self.params.coft.iterations

    def phase(self, round_index: int) -> str:
        if round_index == 1:
            return WARMUP
        return PEFT if round_index % 2 == 0 else FINETUNE

    def uses_contrast(self) -> bool:
        return self.params.coft.moco_weight > 0

    def uses_descriptions(self) -> bool:
        return self.params.coft.descriptions_file is not None
