import torch
import torch.nn.functional as F

from pipeline.clip.prompts import PromptLearner

NAMES = ["red circle", "blue square", "annual crop land", "a very long class name with many words"]


def test_context_from_phrase_reproduces_handcrafted_prompt(tiny_clip):
    learner = PromptLearner(tiny_clip.model, tiny_clip.tokenizer, NAMES, ctx_init="a photo of a")
    with torch.no_grad():
        learned = learner()
        handcrafted = F.normalize(tiny_clip.model.encode_text(
            tiny_clip.tokenizer([f"a photo of a {name}." for name in NAMES])).float(), dim=-1)
    assert learner.n_ctx == 4
    assert torch.allclose(learned, handcrafted, atol=1e-5)
    # The learner runs only the prefix up to the last EOT token, not the full 77-token context.
    assert learner.tokens.shape[1] < 77


def test_random_context_is_seeded_and_trainable(tiny_clip):
    a = PromptLearner(tiny_clip.model, tiny_clip.tokenizer, NAMES, n_ctx=16, ctx_init="", seed=3)
    b = PromptLearner(tiny_clip.model, tiny_clip.tokenizer, NAMES, n_ctx=16, ctx_init="", seed=3)
    c = PromptLearner(tiny_clip.model, tiny_clip.tokenizer, NAMES, n_ctx=16, ctx_init="", seed=4)
    assert a.ctx.shape == (16, tiny_clip.model.token_embedding.weight.shape[1])
    assert torch.equal(a.ctx, b.ctx) and not torch.equal(a.ctx, c.ctx)
    assert abs(float(a.ctx.detach().std()) - 0.02) < 0.005
    a().sum().backward()
    assert a.ctx.grad is not None and a.ctx.grad.abs().sum() > 0
    # The frozen CLIP gets no gradient.
    assert all(p.grad is None for p in tiny_clip.model.parameters())


def test_saved_context_round_trips(tiny_clip):
    a = PromptLearner(tiny_clip.model, tiny_clip.tokenizer, NAMES, n_ctx=8, ctx_init="", seed=1)
    b = PromptLearner(tiny_clip.model, tiny_clip.tokenizer, NAMES, n_ctx=8, ctx_init="", seed=2)
    b.load_context(a.context_state())
    with torch.no_grad():
        assert torch.equal(a(), b())
