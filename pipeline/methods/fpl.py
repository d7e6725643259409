"""FPL: fixed pseudo-labels from zero-shot CLIP, balanced top-K with fallback, one round."""

from pipeline.methods.base import Method, register
from pipeline.pseudolabel.rules import select_balanced


@register
class FPL(Method):
    name = "fpl"
    summary = "balanced top-K with fallback (pseudolabel.k per class), one label per image; one round"

    def select(self, probs, round_index, previous, allowed_classes):
        return select_balanced(probs, self.params.pseudolabel.k)
