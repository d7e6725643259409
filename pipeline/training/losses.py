"""Partial-label losses for prompt learning on candidate label sets, and prompt alignment.

Each loss is one function over the logits `100 · f tᵀ` of a batch and its rows' candidate sets (a
[n, C] mask, or weights for CC), named as in the literature and as the candidate-label prompt learning
paper's code uses them (Zhang et al. 2024, zhangzf01/CoOpPLL, `trainers/alg_PLL/`):

- CC  `-log Σ_{j∈S} p_j` (Feng et al. 2020), the candidate loss every other method trains with;
- RC  `-Σ_j c_j log p_j`, confidences `c` uniform over S at first, then `c ← normalise(p ⊙ S)` after
  every optimiser step on the rows just trained, with the updated prompt (Feng et al. 2020);
- LWS `Σ_{j∈S} w_j (-log p_j) + λ Σ_{j∉S} w_j (-log(1 - p_j))`, weights 1/C at first, then
  `w ← normalise(p ⊙ S) + normalise(p ⊙ (1 - S))` after every step (Wen et al. 2021; the softmax form
  CoOpPLL runs);
- CAVL cross-entropy on the candidate with the largest class activation value `z |1 - z|` of the same
  step's logits (Zhang et al. 2022, stateless as in CoOpPLL).

`numerics` picks how: "exact" (the default) is the mathematics above, computed so a row whose mass
underflows keeps its exact value; "reference" is CoOpPLL's code to the epsilon (`trainers/alg_PLL/`,
zhangzf01/CoOpPLL @ 959e426): CC `-log(Σ_S p + 1e-7)`; RC's update `c[rows] = p ⊙ S`, then *every* row
divided by its sum + 1e-7; LWS `-log(p + 1e-8)` and `-log(1 - p + 1e-8)`, its update dividing by
`Σ (p ⊙ S + 1e-8)` over all C columns (so the sum + C·1e-8); CAVL's argmax over all classes of
`z |1 - z| ⊙ S` (a non-candidate's 0 wins when every candidate's is negative).

PLCR and PiCO are not here: both need several augmented views of each image (PiCO also a momentum
encoder), which a trainer on one cached feature per image cannot give faithfully.

Prompt alignment wraps any of them: the target is the handcrafted prompt's posterior (optionally mixed
with the learnable prompt's, weight `mix`) restricted to the candidates and renormalised, detached;
`L = L_PLL + (L_PLL / L_align).detach() · L_align` with `L_align = -Σ_j target_j log p_j`.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from pipeline.core.candidates import candidate_loss


def _restricted_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`normalise(softmax(z) ⊙ mask)` computed as a softmax over the masked logits, so a row whose
    mass underflows in `softmax(z)` still gets its exact distribution; an empty mask gives zeros."""
    masked = logits.masked_fill(mask == 0, float("-inf"))
    return torch.nan_to_num(torch.softmax(masked, dim=1), nan=0.0)


def _normalise(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Rows of non-negative `values` (zero outside `mask`) scaled to sum to one; a row with no mass
    left (underflow) becomes uniform over its mask."""
    total = values.sum(dim=1, keepdim=True)
    uniform = mask / mask.sum(dim=1, keepdim=True).clamp_min(1)
    return torch.where(total > 0, values / torch.where(total > 0, total, torch.ones_like(total)), uniform)


NUMERICS = ("exact", "reference")


def cc_loss(logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """CC: `-log Σ_j w_j p_j` (binary weights: the candidate set's probability)."""
    return candidate_loss(logits, weights)


def cc_loss_reference(logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """CoOpPLL's CC: `-log(Σ_j w_j p_j + 1e-7)` (at most 16.1 a row, no gradient once the mass underflows)."""
    return -torch.log((F.softmax(logits, dim=1) * weights).sum(dim=1) + 1e-7).mean()


def rc_loss(logits: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
    """RC: cross-entropy against the per-image confidences over the candidates."""
    return -(confidence * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def rc_confidence(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RC's update: the model's posterior restricted to the candidates, renormalised."""
    return _restricted_softmax(logits, mask)


def lws_loss(logits: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor, non_candidate_weight: float
             ) -> torch.Tensor:
    """LWS: weighted `-log p` on the candidates plus λ × weighted `-log(1 - p)` on the others."""
    probs = F.softmax(logits, dim=1)
    candidate = -(weights * mask * F.log_softmax(logits, dim=1)).sum(dim=1)
    others = -(weights * (1 - mask) * torch.log1p(-probs.clamp(max=1 - 1e-7))).sum(dim=1)
    return (candidate + non_candidate_weight * others).mean()


def lws_loss_reference(logits: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor,
                       non_candidate_weight: float) -> torch.Tensor:
    """CoOpPLL's LWS loss: `log(p + 1e-8)` and `log(1 - p + 1e-8)`."""
    probs = F.softmax(logits, dim=1)
    candidate = (weights * mask * -torch.log(probs + 1e-8)).sum() / len(logits)
    others = (weights * (1 - mask) * -torch.log(1 - probs + 1e-8)).sum() / len(logits)
    return candidate + non_candidate_weight * others


def lws_weights(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """LWS's update: the posterior renormalised within the candidates plus within the others."""
    return _restricted_softmax(logits, mask) + _restricted_softmax(logits, 1 - mask)


def lws_weights_reference(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """CoOpPLL's `confidence_update_lw`: each part divided by `Σ_j (part_j + 1e-8)` over all C classes."""
    probs = F.softmax(logits, dim=1)
    inside, outside = probs * mask, probs * (1 - mask)
    return inside / (inside + 1e-8).sum(dim=1, keepdim=True) + outside / (outside + 1e-8).sum(dim=1, keepdim=True)


def cavl_targets(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The candidate with the largest class activation value `z |1 - z|` (never a non-candidate)."""
    activation = logits * (1 - logits).abs()
    return activation.masked_fill(mask == 0, float("-inf")).argmax(dim=1)


def cavl_targets_reference(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """CoOpPLL's CAVL target: argmax over every class of `z |1 - z| ⊙ S`."""
    return (logits * (1 - logits).abs() * mask).argmax(dim=1)


def cavl_loss(logits: torch.Tensor, mask: torch.Tensor, reference: bool = False) -> torch.Tensor:
    """CAVL: cross-entropy on `cavl_targets` of the same logits (detached)."""
    targets = (cavl_targets_reference if reference else cavl_targets)(logits.detach(), mask)
    return F.cross_entropy(logits, targets)


def alignment_target(teacher: torch.Tensor, learner: torch.Tensor, mask: torch.Tensor, mix: float) -> torch.Tensor:
    """`normalise(S ⊙ ((1 - mix) p_hand + mix p_learn))`: zero outside the candidates, sums to one."""
    return _normalise(mask * ((1 - mix) * teacher + mix * learner), mask).detach()


def alignment_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def aligned(pll: torch.Tensor, align: torch.Tensor) -> torch.Tensor:
    """`L_PLL + (L_PLL / L_align).detach() · L_align`: the alignment term at the PLL loss's scale."""
    return pll + (pll.detach() / align.detach().clamp_min(1e-12)) * align


class PartialLabelLoss:
    """A loss over a fixed set of rows (a loss term's images) and their candidate weights [n, C].

    Options a loss does not use are ignored, so a method can pass every loss's knobs unconditionally.
    `__call__(logits, rows)` is the batch loss; losses with per-image state set `stateful` and get
    `update(logits, rows)` after each optimiser step, with the updated prompt's logits of those rows.
    """

    stateful = False

    def __init__(self, weights: torch.Tensor, numerics: str = "exact", **options):
        if numerics not in NUMERICS:
            raise ValueError(f"unknown pll numerics {numerics!r}; choose one of: {', '.join(NUMERICS)}")
        self.weights = weights
        self.mask = (weights > 0).to(weights.dtype)
        self.reference = numerics == "reference"

    def __call__(self, logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def update(self, logits: torch.Tensor, rows: torch.Tensor) -> None:
        pass

    def state(self) -> dict[str, torch.Tensor]:
        """Per-image state a checkpoint must keep (the confidences of RC and LWS)."""
        return {"confidence": self.confidence} if self.stateful else {}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        if self.stateful:
            self.confidence.copy_(state["confidence"].to(self.confidence.device))


class CC(PartialLabelLoss):
    def __call__(self, logits, rows):
        return (cc_loss_reference if self.reference else cc_loss)(logits, self.weights[rows])


class RC(PartialLabelLoss):
    stateful = True

    def __init__(self, weights, numerics: str = "exact", **options):
        super().__init__(weights, numerics)
        self.confidence = _normalise(self.mask, self.mask)

    def __call__(self, logits, rows):
        return rc_loss(logits, self.confidence[rows])

    def update(self, logits, rows):
        if not self.reference:
            self.confidence[rows] = rc_confidence(logits, self.mask[rows])
            return
        self.confidence[rows] = F.softmax(logits, dim=1) * self.mask[rows]
        self.confidence /= self.confidence.sum(dim=1, keepdim=True) + 1e-7


class LWS(PartialLabelLoss):
    stateful = True

    def __init__(self, weights, non_candidate_weight: float = 1.0, numerics: str = "exact", **options):
        super().__init__(weights, numerics)
        self.non_candidate_weight = non_candidate_weight
        self.confidence = torch.full_like(self.mask, 1.0 / self.mask.shape[1])

    def __call__(self, logits, rows):
        loss = lws_loss_reference if self.reference else lws_loss
        return loss(logits, self.mask[rows], self.confidence[rows], self.non_candidate_weight)

    def update(self, logits, rows):
        self.confidence[rows] = (lws_weights_reference if self.reference else lws_weights)(logits, self.mask[rows])


class CAVL(PartialLabelLoss):
    def __call__(self, logits, rows):
        return cavl_loss(logits, self.mask[rows], self.reference)


class DualPrompt(PartialLabelLoss):
    """CoFT's loss on `[positive; negative]` logits [B, 2C] (`prompts.DualPromptLearner`): the
    candidate loss on the positive half, plus `negative_weight` times the negative prompt's yes/no
    NLL (DeFT's form): per image, a two-way softmax `[s⁺_c, s⁻_c]` says "yes" for its label and "no"
    for one complementary label drawn at random (its own generator, kept by checkpoints), or with
    `negatives="all"` the mean "no" over every other class."""

    stateful = False

    def __init__(self, weights, negative_weight: float = 1.0, seed: int = 0, negatives: str = "random", **options):
        super().__init__(weights, options.get("numerics", "exact"))
        self.negative_weight = negative_weight
        self.negatives = negatives
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, logits, rows):
        n_classes = self.weights.shape[1]
        positive, negative = logits[:, :n_classes], logits[:, n_classes:]
        loss = cc_loss(positive, self.weights[rows])
        labels = self.weights[rows].argmax(dim=1)
        if self.negatives == "all":
            yes_no = torch.stack([positive, negative], dim=2).log_softmax(dim=2)   # [B, C, (yes, no)]
            index = torch.arange(len(rows), device=labels.device)
            others = torch.ones_like(positive).index_put_((index, labels), torch.tensor(0.0, device=labels.device))
            no = -(yes_no[..., 1] * others).sum(dim=1) / others.sum(dim=1)
            return loss + self.negative_weight * (-yes_no[index, labels, 0] + no).mean()
        offset = torch.randint(1, n_classes, (len(rows),), generator=self.generator).to(labels.device)
        other = (labels + offset) % n_classes
        index = torch.arange(len(rows), device=labels.device)
        yes = torch.stack([positive[index, labels], negative[index, labels]], dim=1)
        no = torch.stack([positive[index, other], negative[index, other]], dim=1)
        return loss + self.negative_weight * (F.cross_entropy(yes, torch.zeros_like(labels))
                                              + F.cross_entropy(no, torch.ones_like(labels)))

    def state(self):
        return {"generator": self.generator.get_state()}

    def load_state(self, state):
        self.generator.set_state(state["generator"])


LOSSES: dict[str, type[PartialLabelLoss]] = {"cc": CC, "rc": RC, "lws": LWS, "cavl": CAVL}  # the partial-label losses
TERM_LOSSES: dict[str, type[PartialLabelLoss]] = {**LOSSES, "dual": DualPrompt}  # what a loss term may name


class Aligned(PartialLabelLoss):
    """Prompt alignment around any partial-label loss, with the teacher posterior of every row."""

    def __init__(self, inner: PartialLabelLoss, teacher: torch.Tensor, mix: float):
        self.inner, self.teacher, self.mix = inner, teacher, mix
        self.weights, self.mask, self.stateful = inner.weights, inner.mask, inner.stateful

    def __call__(self, logits, rows):
        mask = self.mask[rows]
        target = alignment_target(self.teacher[rows], F.softmax(logits.detach(), dim=1), mask, self.mix)
        return aligned(self.inner(logits, rows), alignment_loss(logits, target))

    def update(self, logits, rows):
        self.inner.update(logits, rows)

    def state(self):
        return self.inner.state()

    def load_state(self, state):
        self.inner.load_state(state)


def build_loss(name: str, weights: torch.Tensor, teacher: Optional[torch.Tensor] = None, mix: float = 0.0,
               **options) -> PartialLabelLoss:
    """The loss `name` over these rows' weights, prompt-aligned when a teacher posterior is given."""
    if name not in TERM_LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(TERM_LOSSES)}")
    loss = TERM_LOSSES[name](weights, **options)
    return Aligned(loss, teacher, mix) if teacher is not None else loss
