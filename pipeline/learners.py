"""What a training run optimises: `train.prompt` (text | visual | multimodal), `train.visual_adapter`
and `train.full_finetune` choose it.

With the image tower frozen and a text prompt (the default), training needs only cached image
features: the `PromptLearner` alone is the learner, the fast path. Anything that changes the image
tower makes an `ImageSpaceLearner`: class weights from the text prompt (or the frozen handcrafted
prompts' weights for `visual`) and image features computed per batch from the pixel cache through a
`VisualLearner`, with augmentation while training. The training loop asks a learner for class
weights (`forward()`) and, when it has `encode`, for the features of a batch of images.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.auxiliary import class_prototypes
from pipeline.params import Params, TrainParams
from pipeline.pixels import PixelSpec, augment
from pipeline.pool import Pool
from pipeline.prompts import PromptLearner
from pipeline.visual import VisualLearner

PROMPTS = ("text", "visual", "multimodal")


def trains_image_tower(train: TrainParams) -> bool:
    """Whether training must run the image tower (else the cached-feature fast path serves)."""
    return train.prompt != "text" or train.visual_adapter or train.full_finetune


class FixedText(torch.nn.Module):
    """The handcrafted prompts' class weights, unchanged (`train.prompt: visual`)."""

    def __init__(self, weights: np.ndarray, device: torch.device):
        super().__init__()
        self.register_buffer("weights", torch.as_tensor(weights, dtype=torch.float32, device=device))

    def forward(self) -> torch.Tensor:
        return self.weights

    def context_state(self) -> dict[str, torch.Tensor]:
        return {}


class ImageSpaceLearner(torch.nn.Module):
    """Text side (`PromptLearner` or `FixedText`) and image side (`VisualLearner` over the pixel store)."""

    def __init__(self, text: torch.nn.Module, visual: VisualLearner, store: np.ndarray, spec: PixelSpec,
                 train: TrainParams, seed: int):
        super().__init__()
        self.text, self.visual, self.spec = text, visual, spec
        self.store = torch.from_numpy(store)  # uint8 [N, H, W, 3], on the host; batches move to the device
        self.augment, self.crop_scale = train.augment, tuple(train.crop_scale)
        self.tower_lr = train.tower_lr
        self.generator = torch.Generator().manual_seed(seed)  # the augmentation draws (checkpointed)
        self.device = next(visual.parameters()).device
        self.autocast = self.device.type == "cuda"

    def forward(self) -> torch.Tensor:
        return self.text()

    def encode(self, images: np.ndarray) -> torch.Tensor:
        """L2-normalised features of store rows `images`; augmented views while training."""
        batch = self.store[torch.as_tensor(images)].to(self.device, non_blocking=True)
        batch = batch.permute(0, 3, 1, 2).float().div_(255)
        if self.training and self.augment == "crop_flip":
            batch = augment(batch, self.generator, self.crop_scale)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            features = self.visual(self.spec.normalise(batch))
        return F.normalize(features.float(), dim=-1)

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
        AiR's prototypes rebuilt from the latter with the auxiliary stage's rule."""
        features = self.encode_all(pool.images)
        synthetic = self.encode_all(pool.synthetic_images) if len(pool.synthetic_labels) else pool.synthetic_features
        prototypes = None if pool.prototypes is None else class_prototypes(
            synthetic, pool.synthetic_labels, pool.n_classes, keep, score)
        return replace(pool, features=features, synthetic_features=synthetic, prototypes=prototypes)

    def load_context(self, state: dict[str, torch.Tensor]) -> None:
        text = {k.removeprefix("text."): v for k, v in state.items() if k.startswith("text.")}
        if text:
            self.text.load_context(text)
        self.visual.load_trainable({k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")})

    def context_state(self) -> dict[str, torch.Tensor]:
        state = {f"text.{k}": v for k, v in self.text.context_state().items()}
        state.update({f"visual.{k}": v for k, v in self.visual.trainable_state().items()})
        return state


def visual_config(train: TrainParams) -> dict:
    """How the image side of a trained model is built (saved beside its weights for `evaluate`)."""
    return {"tokens": train.visual_tokens if train.prompt != "text" else 0, "kind": train.visual_prompt_kind,
            "padding": train.padding_width, "adapter": train.visual_adapter, "full_finetune": train.full_finetune}


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
    """`factory(seed)` builds a fresh learner for one round of one ensemble member."""
    train = params.train
    spec = PixelSpec.from_preprocess(clip.preprocess) if store is not None else None

    def text(seed: int) -> torch.nn.Module:
        if train.prompt == "visual":
            return FixedText(zero_shot_weights, device)
        return PromptLearner(clip.model, clip.tokenizer, class_names, train.n_ctx, train.ctx_init, seed).to(device)

    def factory(seed: int) -> torch.nn.Module:
        if not trains_image_tower(train):
            return text(seed)
        return ImageSpaceLearner(text(seed), build_visual(clip, visual_config(train), seed), store, spec, train, seed)

    return factory
