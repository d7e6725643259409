"""IFPL: FPL for `pseudolabel.rounds` rounds, each re-labelling with the prompt just trained."""

from pipeline.methods.base import register
from pipeline.methods.fpl import FPL


@register
class IFPL(FPL):
    name = "ifpl"
    summary = "FPL re-labelled with the newest prompt for pseudolabel.rounds rounds, K fixed"

    def rounds(self) -> int:
        return self.params.pseudolabel.rounds
