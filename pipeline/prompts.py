"""CoOp text-prompt learner on an open_clip text tower.

Prompts are `[SOS] ctx_1 .. ctx_n [class tokens] . [EOS]` with n shared learnable context vectors,
random N(0, 0.02²) or initialised from the embedding of a phrase such as "a photo of a". The text
tower is causal and pools at the EOT token, so tokens after the longest prompt's EOT never influence
the result: the learner runs the transformer on that prefix only (a large speed-up over the full
77-token context) and still reproduces `encode_text("a photo of a {c}.")` exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import text_global_pool

PLACEHOLDER = "X"


def class_prompts(templates: list[str], class_names: list[str]) -> list[tuple[int, str]]:
    """(class index, prompt) for every template and class, class-major."""
    return [(c, template.format(name)) for c, name in enumerate(class_names) for template in templates]


class PromptLearner(torch.nn.Module):
    """Learnable shared context vectors; `forward()` returns L2-normalised class text features."""

    def __init__(self, model: torch.nn.Module, tokenizer, class_names: list[str], n_ctx: int = 16,
                 ctx_init: str = "", seed: int = 0):
        super().__init__()
        self.model = model
        embedding = model.token_embedding
        device = embedding.weight.device
        if ctx_init:
            init_tokens = tokenizer([ctx_init]).to(device)
            n_ctx = int((init_tokens[0] > 0).sum()) - 2  # minus [SOS] and [EOS]
            with torch.no_grad():
                ctx = embedding(init_tokens)[0, 1:1 + n_ctx].clone()
            prefix = ctx_init
        else:
            generator = torch.Generator().manual_seed(seed)
            ctx = torch.randn(n_ctx, embedding.weight.shape[1], generator=generator).mul_(0.02).to(device)
            prefix = " ".join([PLACEHOLDER] * n_ctx)
        self.n_ctx = n_ctx
        self.ctx = torch.nn.Parameter(ctx.float())

        tokens = tokenizer([f"{prefix} {name}." for name in class_names]).to(device)
        length = int(tokens.argmax(dim=-1).max()) + 1  # through the last prompt's EOT token
        self.register_buffer("tokens", tokens[:, :length], persistent=False)
        with torch.no_grad():
            frozen = embedding(self.tokens)
        self.register_buffer("prefix_embedding", frozen[:, :1], persistent=False)
        self.register_buffer("suffix_embedding", frozen[:, 1 + n_ctx:], persistent=False)

    def forward(self) -> torch.Tensor:
        model = self.model
        n_classes = self.tokens.shape[0]
        length = self.tokens.shape[1]
        cast = model.transformer.get_cast_dtype()
        ctx = self.ctx.to(cast).unsqueeze(0).expand(n_classes, -1, -1)
        x = torch.cat([self.prefix_embedding.to(cast), ctx, self.suffix_embedding.to(cast)], dim=1)
        x = x + model.positional_embedding[:length].to(cast)
        mask = model.attn_mask[:length, :length] if model.attn_mask is not None else None
        x = model.transformer(x, attn_mask=mask)
        x = model.ln_final(x)
        x = text_global_pool(x, self.tokens, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
        if model.text_projection is not None:
            x = model.text_projection(x) if isinstance(model.text_projection, torch.nn.Linear) else x @ model.text_projection
        return F.normalize(x.float(), dim=-1)

    def context_state(self) -> dict[str, torch.Tensor]:
        return {"ctx": self.ctx.detach().cpu().contiguous()}

    def load_context(self, state: dict[str, torch.Tensor]) -> None:
        if state["ctx"].shape != self.ctx.shape:
            raise ValueError(f"saved context has shape {tuple(state['ctx'].shape)}, learner expects {tuple(self.ctx.shape)}")
        with torch.no_grad():
            self.ctx.copy_(state["ctx"].to(self.ctx.device))
