"""What a training run optimises, as a `LearnerSpec`: by default from `train.prompt` (text | visual |
multimodal), `train.visual_adapter` and `train.full_finetune`; a method may ask for another per round
(`Method.learner_spec`: CoFT's negative prompts, adapter, then full fine-tuning).

With the image tower frozen and a text prompt (the default), training needs only cached image
features: the `PromptLearner` alone is the learner, the fast path. Anything that changes the image
tower makes an `ImageSpaceLearner`: class weights from the text prompt (or fixed weights, the
handcrafted prompts' by default) and image features computed per batch from the pixel cache through
a `VisualLearner`, with augmentation while training. The training loop asks a learner for class
weights (`forward()`), and when it has `encode`, for the features of a batch of images.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.auxiliary.prototypes import class_prototypes
from pipeline.clip.pixels import PixelSpec, augment
from pipeline.clip.prompts import DualPromptLearner, PromptLearner, read_descriptions
from pipeline.config.params import Params, TrainParams
from pipeline.config.protocols import get_protocol
from pipeline.core.pool import Pool
from pipeline.training.momentum import MomentumContrast
from pipeline.training.visual import VisualLearner


@dataclass(frozen=True)
class LearnerSpec:
    """What one round trains."""

    prompt: str = "text"                 # text | visual (text fixed) | multimodal
    visual_tokens: int = 16
    visual_prompt_kind: str = "auto"
    padding_width: Optional[int] = None
    visual_adapter: bool = False
    full_finetune: bool = False
    negative_prompt: bool = False        # CoFT: a negative context too; forward() gives 2C rows
    descriptions: bool = False           # CoFT+: class descriptions join the positive prompt
    fixed_text: Optional[np.ndarray] = None  # prompt visual: these class weights (None: the handcrafted)
    contrast: bool = False               # CoFT+: momentum contrastive term on the image side

    @classmethod
    def from_train(cls, train: TrainParams) -> "LearnerSpec":
        return cls(train.prompt, train.visual_tokens, train.visual_prompt_kind, train.padding_width,
                   train.visual_adapter, train.full_finetune)

    @property
    def image_space(self) -> bool:
        """Whether training must run the image tower (else the cached-feature fast path serves)."""
        return self.prompt != "text" or self.visual_adapter or self.full_finetune

    def visual_config(self) -> dict:
        """How the image side is built (saved beside its weights for `evaluate`)."""
        return {"tokens": self.visual_tokens if self.prompt != "text" else 0, "kind": self.visual_prompt_kind,
                "padding": self.padding_width, "adapter": self.visual_adapter, "full_finetune": self.full_finetune}


class FixedText(torch.nn.Module):
    """Class weights that do not train (`prompt: visual`): the handcrafted prompts', or CoFT's phase-1 ones."""

    def __init__(self, weights: np.ndarray, device: torch.device):
        super().__init__()
        self.register_buffer("weights", torch.as_tensor(weights, dtype=torch.float32, device=device))

    def forward(self) -> torch.Tensor:
        return self.weights

    def context_state(self) -> dict[str, torch.Tensor]:
        return {}


class ImageSpaceLearner(torch.nn.Module):
    """Text side (`PromptLearner`, `DualPromptLearner` or `FixedText`) and image side (`VisualLearner`
    over the pixel store), with an optional momentum-contrast term on the image side."""

    def __init__(self, text: torch.nn.Module, visual: VisualLearner, store: np.ndarray, spec: PixelSpec,
                 train: TrainParams, seed: int, config: dict, contrast: MomentumContrast | None = None,
                 contrast_weight: float = 0.0):
        super().__init__()
        self.text, self.visual, self.spec, self.config = text, visual, spec, config
        self.contrast, self.contrast_weight = contrast, contrast_weight
        self.store = torch.from_numpy(store)  # uint8 [N, H, W, 3], on the host; batches move to the device
        self.augment, self.crop_scale = train.augment, tuple(train.crop_scale)
        self.tower_lr = train.tower_lr
        self.generator = torch.Generator().manual_seed(seed)  # the augmentation draws (checkpointed)
        self.device = next(visual.parameters()).device
        self.autocast = self.device.type == "cuda"

    def forward(self) -> torch.Tensor:
        return self.text()

    def _view(self, images: np.ndarray) -> torch.Tensor:
        """Normalised model input of store rows `images`; an augmented view while training."""
        batch = self.store[torch.as_tensor(images)].to(self.device, non_blocking=True)
        batch = batch.permute(0, 3, 1, 2).float().div_(255)
        if self.training and self.augment == "crop_flip":
            batch = augment(batch, self.generator, self.crop_scale)
        return self.spec.normalise(batch)

    def encode(self, images: np.ndarray) -> torch.Tensor:
        """L2-normalised features of store rows `images`; augmented views while training."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            features = self.visual(self._view(images))
        return F.normalize(features.float(), dim=-1)

    def regulariser(self, images: np.ndarray) -> torch.Tensor | None:
        """`weight · InfoNCE` of two fresh views of the step's images (online vs momentum encoder)."""
        if self.contrast is None or not len(images):
            return None
        query = self.encode(images)
        return self.contrast_weight * self.contrast.loss(query, self._view(images))

    def after_step(self) -> None:
        if self.contrast is not None:
            self.contrast.update(self.visual)

    @torch.no_grad()
    def encode_all(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        was_training = self.training
        self.eval()
        out = [self.encode(images[i:i + batch_size]).cpu().numpy() for i in range(0, len(images), batch_size)]
        self.train(was_training)
        return np.concatenate(out) if out else np.zeros((0, self.visual.visual.output_dim), np.float32)

    def parameter_groups(self, lr: float) -> list[dict]:
        """Prompts and adapter at `lr`; the tower's own weights (full fine-tuning) at `train.tower_lr`."""
        tower = [p for p in self.visual.visual.parameters() if p.requires_grad]
        tower_ids = {id(p) for p in tower}
        light = [p for p in self.parameters() if p.requires_grad and id(p) not in tower_ids]
        return [group for group in ({"params": light, "lr": lr}, {"params": tower, "lr": self.tower_lr})
                if group["params"]]

    def refresh_pool(self, pool: Pool, keep: int | None, score: str) -> Pool:
        """The pool as the trained tower sees it: features of real and synthetic images re-encoded,
        AiR's prototypes rebuilt from the latter with the auxiliary stage's rule; the frozen
        tower's features are kept in `frozen_features`."""
        features = self.encode_all(pool.images)
        synthetic = self.encode_all(pool.synthetic_images) if len(pool.synthetic_labels) else pool.synthetic_features
        prototypes = None if pool.prototypes is None else class_prototypes(
            synthetic, pool.synthetic_labels, pool.n_classes, keep, score)
        frozen = pool.features if pool.frozen_features is None else pool.frozen_features
        return replace(pool, features=features, synthetic_features=synthetic, prototypes=prototypes,
                       frozen_features=frozen)

    def load_context(self, state: dict[str, torch.Tensor]) -> None:
        text = {k.removeprefix("text."): v for k, v in state.items() if k.startswith("text.")}
        if text:
            self.text.load_context(text)
        self.visual.load_trainable({k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")})
        if self.contrast is not None:
            self.contrast.load_state_dict({k.removeprefix("contrast."): v.to(self.device) for k, v in state.items()
                                           if k.startswith("contrast.")})

    def context_state(self) -> dict[str, torch.Tensor]:
        state = {f"text.{k}": v for k, v in self.text.context_state().items()}
        state.update({f"visual.{k}": v for k, v in self.visual.trainable_state().items()})
        return state

    def resume_state(self) -> dict[str, torch.Tensor]:
        """`context_state` and what only a resumed run needs (the momentum encoder and its queue)."""
        state = self.context_state()
        if self.contrast is not None:
            state.update({f"contrast.{k}": v.detach().cpu().contiguous() for k, v in self.contrast.state_dict().items()})
        return state


def build_visual(clip, config: dict, seed: int = 0) -> VisualLearner:
    tower = copy.deepcopy(clip.model.visual) if config["full_finetune"] else clip.model.visual  # each run from the pretrained weights
    return VisualLearner(tower, config["tokens"], config["kind"], config["padding"], config["adapter"],
                         full_finetune=config["full_finetune"], seed=seed)


@torch.no_grad()
def encode_store(visual: VisualLearner, spec: PixelSpec, store: np.ndarray, device: torch.device,
                 batch_size: int = 256) -> np.ndarray:
    """L2-normalised features of every image of a pixel store through a (trained) image side."""
    visual.eval()
    out = []
    for start in range(0, len(store), batch_size):
        batch = torch.from_numpy(store[start:start + batch_size]).to(device)
        out.append(F.normalize(visual(spec.normalise(batch)).float(), dim=-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, visual.visual.output_dim), np.float32)


def make_learner_factory(params: Params, clip, class_names: list[str], zero_shot_weights: np.ndarray,
                         store: np.ndarray | None, device: torch.device):
    """`factory(seed, spec)` builds a fresh learner for one round of one ensemble member (`spec`
    None: the one `params.train` describes). Class descriptions are read and checked once, when the
    first spec that asks for them is built: a method that never does ignores `coft.descriptions_file`."""
    train, coft = params.train, params.coft
    pixel_spec = PixelSpec.from_preprocess(clip.preprocess) if store is not None else None
    context_from = get_protocol(params.protocol).context_from

    @functools.cache
    def descriptions() -> list[list[str]] | None:
        return read_descriptions(coft.descriptions_file, class_names) if coft.descriptions_file else None

    def prompt(seed: int, ctx_init: str, spec: LearnerSpec) -> PromptLearner:
        return PromptLearner(clip.model, clip.tokenizer, class_names, train.n_ctx, ctx_init, seed,
                             descriptions() if spec.descriptions else None, context_from).to(device)

    def text(seed: int, spec: LearnerSpec) -> torch.nn.Module:
        if spec.prompt == "visual":
            return FixedText(zero_shot_weights if spec.fixed_text is None else spec.fixed_text, device)
        if spec.negative_prompt:
            return DualPromptLearner(prompt(seed, train.ctx_init, spec), prompt(seed + 1, coft.negative_init, spec))
        return prompt(seed, train.ctx_init, spec)

    def factory(seed: int, spec: LearnerSpec | None = None) -> torch.nn.Module:
        spec = spec or LearnerSpec.from_train(train)
        if not spec.image_space:
            return text(seed, spec)
        if store is None:
            raise ValueError("this round trains the image tower, but no pixel store was built for it")
        config = spec.visual_config()
        visual = build_visual(clip, config, seed)
        contrast = MomentumContrast(visual, coft.moco_queue, coft.moco_momentum, coft.moco_temperature, seed) \
            if spec.contrast else None
        return ImageSpaceLearner(text(seed, spec), visual, store, pixel_spec, train, seed, config, contrast,
                                 coft.moco_weight)

    return factory
