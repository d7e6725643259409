"""The shared-prefix text tower reproduces the plain C-sequence forward: features, a loss, and the
gradient w.r.t. the context, ≤ 1e-5 relative, for every prompt form the learners build."""

import copy

import pytest
import torch

from pipeline.clip.models import load_clip
from pipeline.clip.prompts import DualPromptLearner, PromptLearner
from pipeline.clip.text_prefix import supports_shared_prefix

NAMES = ["red circle", "blue square", "annual crop land", "a very long class name with many words", "x"]
DESCRIPTIONS = [["round and red", "a disc"], ["four equal sides"], [], ["long"], ["tiny", "short", "one letter"]]


def _loss(features: torch.Tensor) -> torch.Tensor:
    """A CE-like loss over fixed random image features, so the gradient mixes every class."""
    images = torch.nn.functional.normalize(torch.randn(7, features.shape[1], generator=torch.Generator().manual_seed(0)),
                                           dim=-1)
    logits = 100 * images @ features.T
    return torch.nn.functional.cross_entropy(logits, torch.arange(7) % features.shape[0])


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


def _compare(learner: torch.nn.Module, reference) -> tuple[float, float, float]:
    parameters = [p for p in learner.parameters() if p.requires_grad]
    shared = learner()
    loss = _loss(shared)
    grads = torch.autograd.grad(loss, parameters)
    plain = reference()
    plain_loss = _loss(plain)
    plain_grads = torch.autograd.grad(plain_loss, parameters)
    grad_error = max(_relative(g, h) for g, h in zip(grads, plain_grads))
    return _relative(shared, plain), abs(float(loss.detach() - plain_loss.detach())) / abs(float(plain_loss.detach())), grad_error


@pytest.mark.parametrize("ctx_init, n_ctx", [("a photo of a", 16), ("", 16), ("", 4)])
def test_shared_prefix_equals_plain_forward(tiny_clip, ctx_init, n_ctx):
    learner = PromptLearner(tiny_clip.model, tiny_clip.tokenizer, NAMES, n_ctx=n_ctx, ctx_init=ctx_init, seed=2)
    assert learner.shared_prefix
    errors = _compare(learner, learner.forward_reference)
    assert max(errors) <= 1e-5, errors


def test_shared_prefix_with_class_descriptions(tiny_clip):
    learner = PromptLearner(tiny_clip.model, tiny_clip.tokenizer, NAMES, ctx_init="a photo of a",
                            descriptions=DESCRIPTIONS)
    assert learner.tokens.shape[0] == 5 + sum(map(len, DESCRIPTIONS))
    errors = _compare(learner, learner.forward_reference)
    assert max(errors) <= 1e-5, errors


def test_dual_prompts_share_their_own_prefixes(tiny_clip):
    positive = PromptLearner(tiny_clip.model, tiny_clip.tokenizer, NAMES, ctx_init="a photo of a")
    negative = PromptLearner(tiny_clip.model, tiny_clip.tokenizer, NAMES, ctx_init="a photo without a", seed=1)
    dual = DualPromptLearner(positive, negative)
    errors = _compare(dual, lambda: torch.cat([positive.forward_reference(), negative.forward_reference()]))
    assert max(errors) <= 1e-5, errors


def test_vit_b32_text_tower_shape():
    clip = load_clip("ViT-B-32", "random", torch.device("cpu"))
    names = [f"class number {c}" for c in range(12)]
    learner = PromptLearner(clip.model, clip.tokenizer, names, n_ctx=16, ctx_init="", seed=0)
    assert learner.shared_prefix
    errors = _compare(learner, learner.forward_reference)
    assert max(errors) <= 1e-5, errors


def test_towers_it_does_not_fit_keep_the_plain_forward(tiny_clip):
    model = copy.deepcopy(tiny_clip.model)
    assert supports_shared_prefix(model)
    model.attn_mask = None  # a bidirectional text tower: the prefix would see the class tokens
    assert not supports_shared_prefix(model)
    learner = PromptLearner(model, tiny_clip.tokenizer, NAMES, ctx_init="a photo of a")
    assert not learner.shared_prefix
    with torch.no_grad():
        assert torch.equal(learner(), learner.forward_reference())
    model = copy.deepcopy(tiny_clip.model)
    model.text_pool_type = "first"
    assert not supports_shared_prefix(model)
