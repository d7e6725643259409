"""AiR (Ren et al., CVPR 2025): an image-image classifier from synthetic class images is fused with
the text classifier; a base method's selection runs on the fused posterior; synthetic images join
the prompt loss."""

from __future__ import annotations

from pipeline.auxiliary.prototypes import auxiliary_posterior
from pipeline.methods.base import LossTerm, Method, one_hot, register, registry
from pipeline.pseudolabel.rules import fuse


@register
class AiR(Method):
    name = "air"
    summary = ("fused posterior (p_text + λ·p_aux)/(1+λ) fed to the pseudolabel.selection method's rule "
               "and rounds; prompt loss + β·CE(synthetic)")
    needs_prototypes = True
    reads_synthetic_images = True
    selection_rule = False

    def __init__(self, params):
        super().__init__(params)
        self.base = registry()[params.pseudolabel.selection](params)  # the catalog imported every method

    def rounds(self) -> int:
        return self.base.rounds()

    def posterior(self, pool, class_weights):
        if pool.prototypes is None:
            raise ValueError("method air needs the auxiliary stage's prototypes")
        p_text = super().posterior(pool, class_weights)
        p_aux = auxiliary_posterior(pool.features[pool.unlabeled], pool.prototypes[pool.allowed_classes],
                                    self.params.auxiliary.temperature, p_text)
        return fuse(p_text, p_aux, self.params.pseudolabel.fusion_lambda)

    def select(self, probs, round_index, previous, allowed_classes):
        return self.base.select(probs, round_index, previous, allowed_classes)

    def loss_terms(self, pool, targets, round_index=1):
        terms = self.base.loss_terms(pool, targets, round_index)
        beta = self.params.train.synthetic_weight
        if len(pool.synthetic_labels) and beta > 0:
            terms.append(LossTerm("synthetic", pool.synthetic_features,
                                  one_hot(pool.synthetic_labels, pool.n_classes), beta, images=pool.synthetic_images))
        return terms
