"""CoOp text-prompt learner on an open_clip text tower.

Prompts are `[SOS] ctx_1 .. ctx_n [class tokens] . [EOS]` with n shared learnable context vectors,
random N(0, 0.02²) or initialised from the embedding of a phrase such as "a photo of a". The text
tower is causal and pools at the EOT token, so tokens after the longest prompt's EOT never influence
the result: the learner runs the transformer on that prefix only (a large speed-up over the full
77-token context) and still reproduces `encode_text("a photo of a {c}.")` exactly. The first 1 + n
positions are the same in every class's prompt, so (on towers that allow it) they run once for all
classes (`pipeline.clip.text_prefix`); `forward_reference` is the plain C-sequence forward, kept as the
definition the tests and benchmarks compare against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import text_global_pool

from pipeline.clip.text_prefix import pool_positions, shared_prefix_text, supports_shared_prefix

PLACEHOLDER = "X"


def class_prompts(templates: list[str], class_names: list[str]) -> list[tuple[int, str]]:
    """(class index, prompt) for every template and class, class-major."""
    return [(c, template.format(name)) for c, name in enumerate(class_names) for template in templates]


class PromptLearner(torch.nn.Module):
    """Learnable shared context vectors; `forward()` returns L2-normalised class text features.

    With `descriptions` (one list of phrases per class, CoFT+'s class descriptions), each class is
    the renormalised mean of `ctx {class}.` and `ctx {class}, {description}.` for each phrase.

    A `ctx_init` phrase sets n_ctx: its BPE token count (`context_from="tokens"`, every token of the
    phrase learns), or CoOp's word count (`"words"`, trainers/coop.py: `len(ctx_init.split(" "))` after
    "_" -> " "), where a phrase with more tokens than words ("itap of a": 4 tokens, 3 words) learns
    its first n_ctx token embeddings and keeps the rest frozen, in front of the class name."""

    def __init__(self, model: torch.nn.Module, tokenizer, class_names: list[str], n_ctx: int = 16,
                 ctx_init: str = "", seed: int = 0, descriptions: list[list[str]] | None = None,
                 context_from: str = "tokens"):
        super().__init__()
        self.model = model
        embedding = model.token_embedding
        device = embedding.weight.device
        if ctx_init:
            if context_from == "words":
                ctx_init = ctx_init.replace("_", " ")
            init_tokens = tokenizer([ctx_init]).to(device)
            n_tokens = int((init_tokens[0] > 0).sum()) - 2  # minus [SOS] and [EOS]
            n_ctx = min(len(ctx_init.split(" ")), n_tokens) if context_from == "words" else n_tokens
            with torch.no_grad():
                ctx = embedding(init_tokens)[0, 1:1 + n_ctx].clone()
            prefix = ctx_init
        else:
            generator = torch.Generator().manual_seed(seed)
            ctx = torch.randn(n_ctx, embedding.weight.shape[1], generator=generator).mul_(0.02).to(device)
            prefix = " ".join([PLACEHOLDER] * n_ctx)
        self.n_ctx = n_ctx
        self.ctx = torch.nn.Parameter(ctx.float())

        phrases = descriptions or [[] for _ in class_names]
        suffixes = [[f"{name}."] + [f"{name}, {phrase.rstrip('.')}." for phrase in own]
                    for name, own in zip(class_names, phrases)]
        owner = [c for c, group in enumerate(suffixes) for _ in group]
        self.register_buffer("owner", torch.tensor(owner, device=device), persistent=False)
        self.n_classes = len(class_names)
        tokens = tokenizer([f"{prefix} {suffix}" for group in suffixes for suffix in group]).to(device)
        length = int(tokens.argmax(dim=-1).max()) + 1  # through the last prompt's EOT token
        self.register_buffer("tokens", tokens[:, :length], persistent=False)
        with torch.no_grad():
            frozen = embedding(self.tokens)
        self.register_buffer("prefix_embedding", frozen[:, :1], persistent=False)
        self.register_buffer("suffix_embedding", frozen[:, 1 + n_ctx:], persistent=False)
        self.register_buffer("pooled_at", pool_positions(model, self.tokens), persistent=False)
        self.shared_prefix = supports_shared_prefix(model) and bool((self.pooled_at > n_ctx).all())

    def forward(self) -> torch.Tensor:
        if not self.shared_prefix:
            return self.forward_reference()
        model = self.model
        cast = model.transformer.get_cast_dtype()
        prefix = torch.cat([self.prefix_embedding[0].to(cast), self.ctx.to(cast)])
        x = shared_prefix_text(model, prefix, self.suffix_embedding.to(cast), self.pooled_at)
        return self._class_features(x)

    def forward_reference(self) -> torch.Tensor:
        """The text tower run on each of the C prompts in full (what `forward` equals)."""
        model = self.model
        n_prompts, length = self.tokens.shape
        cast = model.transformer.get_cast_dtype()
        ctx = self.ctx.to(cast).unsqueeze(0).expand(n_prompts, -1, -1)
        x = torch.cat([self.prefix_embedding.to(cast), ctx, self.suffix_embedding.to(cast)], dim=1)
        x = x + model.positional_embedding[:length].to(cast)
        mask = model.attn_mask[:length, :length] if model.attn_mask is not None else None
        x = model.transformer(x, attn_mask=mask)
        x = model.ln_final(x)
        x = text_global_pool(x, self.tokens, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
        if model.text_projection is not None:
            x = model.text_projection(x) if isinstance(model.text_projection, torch.nn.Linear) else x @ model.text_projection
        return self._class_features(x)

    def _class_features(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised features per class (a class with descriptions: the mean of its prompts')."""
        x = F.normalize(x.float(), dim=-1)
        if len(self.owner) == self.n_classes:
            return x
        mean = torch.zeros(self.n_classes, x.shape[1], device=x.device).index_add_(0, self.owner, x)
        return F.normalize(mean, dim=-1)

    def context_state(self) -> dict[str, torch.Tensor]:
        return {"ctx": self.ctx.detach().cpu().contiguous()}

    def load_context(self, state: dict[str, torch.Tensor]) -> None:
        if state["ctx"].shape != self.ctx.shape:
            raise ValueError(f"saved context has shape {tuple(state['ctx'].shape)}, learner expects {tuple(self.ctx.shape)}")
        with torch.no_grad():
            self.ctx.copy_(state["ctx"].to(self.ctx.device))


class DualPromptLearner(torch.nn.Module):
    """CoFT's positive and negative prompts: two contexts over the same class names. `forward()` is
    `[positive; negative]`, 2C rows; the first C are the classifier (`Method.classifier`)."""

    def __init__(self, positive: PromptLearner, negative: PromptLearner):
        super().__init__()
        self.positive, self.negative = positive, negative

    def forward(self) -> torch.Tensor:
        return torch.cat([self.positive(), self.negative()])

    def context_state(self) -> dict[str, torch.Tensor]:
        return {"ctx": self.positive.context_state()["ctx"], "negative_ctx": self.negative.context_state()["ctx"]}

    def load_context(self, state: dict[str, torch.Tensor]) -> None:
        self.positive.load_context({"ctx": state["ctx"]})
        self.negative.load_context({"ctx": state["negative_ctx"]})


def read_descriptions(path: str, class_names: list[str]) -> list[list[str]]:
    """Class descriptions from a JSON file `{"class name": ["phrase", ...]}` (CoFT+'s LLM-written
    prompts; offline, the file is the interface). Every class needs an entry; extra keys are refused."""
    import json
    from pathlib import Path

    from pipeline.core.errors import PipelineError

    file = Path(path)
    if not file.exists():
        raise PipelineError(f"coft.descriptions_file={path!r} does not exist; give a JSON file "
                            '{"class name": ["description", ...]} (docs/methods.md, "CoFT / CoFT+")')
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise PipelineError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{path} must map each class name to a list of descriptions")
    missing = [name for name in class_names if name not in data]
    unknown = sorted(set(data) - set(class_names))
    if missing or unknown:
        raise PipelineError(f"{path} does not match the dataset's classes: "
                            + (f"no descriptions for {missing[:5]}{' ...' if len(missing) > 5 else ''}" if missing else "")
                            + ("; " if missing and unknown else "")
                            + (f"unknown classes {unknown[:5]}" if unknown else "")
                            + ". Write one entry per class name of data/prepared/classes.json.")
    for name in class_names:
        phrases = data[name]
        if not isinstance(phrases, list) or not all(isinstance(p, str) and p.strip() for p in phrases):
            raise PipelineError(f"{path}: the descriptions of {name!r} must be a list of non-empty strings")
    return [data[name] for name in class_names]
