"""GRIP (Menghini et al. 2023): IFPL whose per-class K grows each round until it covers the pool."""

from pipeline.config.protocols import get_protocol
from pipeline.methods.base import Method, register
from pipeline.pseudolabel.rules import grip_k, select_balanced


@register
class GRIP(Method):
    name = "grip"
    summary = "balanced top-K re-labelled each round with K_t = floor(t·|U|/R / C)"

    def rounds(self) -> int:
        return self.params.pseudolabel.rounds

    def select(self, probs, round_index, previous, allowed_classes):
        k = grip_k(round_index, len(probs), probs.shape[1], self.rounds(),
                   get_protocol(self.params.protocol).k_inner_floor)
        return select_balanced(probs, k)
