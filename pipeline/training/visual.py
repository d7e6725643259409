"""The image tower as a training run sees it: frozen, or with visual prompts, an adapter, or all
weights trainable.

- **VPT-shallow** (GRIP's `models/clip_encoders.py`, open_clip ViT towers): `n` learnable tokens
  inserted after [CLS], after the positional embedding and before `ln_pre`, initialised
  `width^-0.5 · N(0, 1)`; they are dropped again before pooling, so every pool type (CLS token,
  average) reads the image tokens only. With zero tokens the tower is exactly `encode_image`.
- **Padding prompt** (Bahng et al. 2022, for towers without tokens such as the ResNet of the demo
  CLIP): a learnable border `width` pixels wide added to the normalised image; initialised to zero,
  so training starts from the frozen features.
- **Adapter**: a residual bottleneck on the unit image feature, `f̂ + up(relu(down(f̂)))` with `up`
  zero at initialisation, so it starts as the identity (CLIP-Adapter's form without its fixed mix;
  on the unit feature because a tower's feature norm, 10 or more, would scale the adapter's steps).
- **Full fine-tuning**: every tower weight trains; normalisation layers keep their frozen statistics
  (the tower stays in eval mode, as CLIP fine-tuning usually does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer

from pipeline.core.errors import PipelineError

PROMPT_KINDS = ("auto", "vpt", "padding")


def is_vit(visual: torch.nn.Module) -> bool:
    return isinstance(visual, VisionTransformer)


def padding_width(image_size: int, width: int | None) -> int:
    """Bahng et al.'s 30 pixels of 224, scaled to the tower's input when not given."""
    return max(1, round(image_size * 30 / 224)) if width is None else width


class VisualLearner(torch.nn.Module):
    """`forward(x)` is the image feature (not normalised) of normalised pixels [B, 3, H, W]."""

    def __init__(self, visual: torch.nn.Module, tokens: int = 0, kind: str = "auto", padding: int | None = None,
                 adapter: bool = False, adapter_reduction: int = 4, full_finetune: bool = False, seed: int = 0):
        super().__init__()
        if kind not in PROMPT_KINDS:
            raise ValueError(f"unknown visual prompt kind {kind!r}; choose one of {', '.join(PROMPT_KINDS)}")
        self.visual = visual
        self.kind = ("vpt" if is_vit(visual) else "padding") if kind == "auto" else kind
        if self.kind == "vpt" and tokens and not is_vit(visual):  # a params choice: the stage prints it, exits 2
            raise PipelineError(f"VPT needs a ViT image tower (train.visual_prompt_kind: vpt), but this CLIP's is a "
                                f"{type(visual).__name__}, with no tokens to prompt; set train.visual_prompt_kind: "
                                "padding (or auto)")
        generator = torch.Generator().manual_seed(seed)
        device = next(visual.parameters()).device
        self.prompt = None
        if tokens and self.kind == "vpt":
            width = visual.class_embedding.shape[-1]
            self.prompt = torch.nn.Parameter((width ** -0.5 * torch.randn(tokens, width, generator=generator)).to(device))
        elif tokens:
            size = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else visual.image_size
            border = torch.ones(size, size)
            inner = padding_width(size, padding)
            border[inner:size - inner, inner:size - inner] = 0
            self.register_buffer("border", border.to(device), persistent=False)
            self.prompt = torch.nn.Parameter(torch.zeros(3, size, size, device=device))
        self.adapter = None
        if adapter:
            dim = visual.output_dim
            hidden = max(1, dim // adapter_reduction)
            self.adapter = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, dim))
            torch.nn.init.zeros_(self.adapter[2].weight)
            torch.nn.init.zeros_(self.adapter[2].bias)
            self.adapter.to(device)
        self.full_finetune = full_finetune
        visual.requires_grad_(full_finetune)

    def train(self, mode: bool = True) -> "VisualLearner":
        super().train(mode)
        self.visual.eval()  # frozen normalisation statistics, no dropout, whatever trains
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.prompt is not None and self.kind == "padding":
            x = x + self.border * self.prompt
        features = self._vpt(x) if self.prompt is not None and self.kind == "vpt" else self.visual(x)
        if self.adapter is not None:  # on the unit feature, so its step size does not depend on the tower's scale
            features = F.normalize(features, dim=-1)
            features = features + self.adapter(features)
        return features

    def _vpt(self, x: torch.Tensor) -> torch.Tensor:
        visual = self.visual
        x = visual.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        x = visual.patch_dropout(x)
        n = self.prompt.shape[0]
        x = torch.cat([x[:, :1], self.prompt.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1), x[:, 1:]], dim=1)
        x = visual.transformer(visual.ln_pre(x))
        x = torch.cat([x[:, :1], x[:, 1 + n:]], dim=1)
        pooled, _ = visual._pool(x)
        return pooled @ visual.proj if visual.proj is not None else pooled

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint must hold to rebuild this learner on the frozen tower."""
        return {name: value.detach().cpu().contiguous() for name, value in self.state_dict().items()
                if not name.startswith("visual.") or self.full_finetune}

    def load_trainable(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.trainable_state()) - set(state)
        if missing:
            raise ValueError(f"the saved image-tower state lacks {sorted(missing)[:5]}: it was trained with other "
                             "train.prompt / visual_adapter / full_finetune settings")
        self.load_state_dict({**self.state_dict(), **state}, strict=True)
