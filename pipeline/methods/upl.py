"""UPL (Huang et al. 2022): the k most confident argmax pseudo-labels per class, one round."""

from pipeline.methods.base import Method, register
from pipeline.pseudolabel.rules import select_upl


@register
class UPL(Method):
    name = "upl"
    summary = "argmax pseudo-labels, the pseudolabel.k most confident per class, no fallback; one round"

    def select(self, probs, round_index, previous, allowed_classes):
        return select_upl(probs, self.params.pseudolabel.k)
