"""Zero-shot CLIP: the prompt-ensemble text classifier, nothing trained."""

from pipeline.methods.base import Method, register
from pipeline.pseudolabel.rules import select_all


@register
class ZeroShot(Method):
    name = "zeroshot"
    summary = "prompt-ensemble text classifier from clip.templates; no training"
    trains = False
    selection_rule = False
    paradigms = ("ul", "ssl", "trzsl", "candidates")

    def select(self, probs, round_index, previous, allowed_classes):
        return select_all(probs)
