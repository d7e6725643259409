"""The `adapt` stage's library: LoRA fine-tuning of the generator on the unlabeled target training images.

AiR adapts its text-to-image model to the target domain before synthesising, so that synthetic class
images carry the target's look (backgrounds, clutter, sensor) instead of the look the generator was
pretrained on. The low-rank adapters are peft layers added through diffusers' own adapter API
(`unet.add_adapter(LoraConfig)`); only they train, and they are saved as a diffusers LoRA file
(`pytorch_lora_weights.safetensors`, loaded back with `load_lora_weights`), so an adapter made here
for Stable Diffusion loads anywhere diffusers does.

Captions (`adapt.captions`): `domain` gives every image one class-agnostic caption, so the adapter
learns the domain and not the classes; `pseudolabel` captions each image with the generation
template filled with its zero-shot text label, keeping only UPL's k most confident per class (the
adapter then also learns what each class looks like there, and some of CLIP's mistakes with it).

Prior preservation (`adapt.prior_weight` > 0, DreamBooth's, as in diffusers' LoRA DreamBooth script):
every step also denoises a batch of class images the *unadapted* generator made from the class
captions, weighted by `prior_weight`, so the adapter learns the target's look without unlearning what
each class prompt draws. Its batches come from their own random stream: with the weight at 0 the
adapter is the one trained without it, bit for bit.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from peft.utils import get_peft_model_state_dict
from tqdm.auto import tqdm

from pipeline.config.params import AdaptParams, Params
from pipeline.core import paths
from pipeline.core.artifacts import read_json, read_table
from pipeline.core.errors import PipelineError
from pipeline.datasets.images import open_image
from pipeline.diffusion.generate import generate_synthetic
from pipeline.diffusion.lora import ADAPTER_NAME, lora_config
from pipeline.diffusion.synthetic import read_synthetic
from pipeline.pseudolabel.rules import select_upl, text_posterior
from pipeline.runtime.devices import rebalance_threads
from pipeline.workspace import Workspace, load_workspace, training_pool

log = logging.getLogger(__name__)


class _StableDiffusionView:
    """How to train a Stable-Diffusion-shaped pipeline's UNet: VAE latents and text-encoder states."""

    def __init__(self, pipe):
        missing = [part for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler") if getattr(pipe, part, None) is None]
        if missing:
            raise PipelineError(f"adapt supports Stable-Diffusion-shaped pipelines (SD 1.x/2.x, SD-Turbo); "
                                f"{type(pipe).__name__} has no {', '.join(missing)}. Set adapt.enabled: false "
                                "or use such a generator")
        self.pipe, self.unet, self.scheduler = pipe, pipe.unet, pipe.scheduler

    def latents(self, pixels: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        return vae.encode(pixels.to(vae.dtype)).latent_dist.sample() * vae.config.scaling_factor

    def condition(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        tokenizer = self.pipe.tokenizer
        ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids.to(self.unet.device)
        return {"encoder_hidden_states": self.pipe.text_encoder(ids)[0]}


def training_view(pipe):
    """The pipeline itself when it knows how to be trained (the demo generator), else a Stable
    Diffusion view of it: both give `.unet`, `.scheduler`, `latents(pixels)`, `condition(prompts)`."""
    return pipe if hasattr(pipe, "latents") and hasattr(pipe, "condition") else _StableDiffusionView(pipe)


@dataclass(frozen=True)
class TrainingImages:
    """The target training images the adapter learns from (paths or PNG bytes), with their captions."""

    paths: list
    images: list
    captions: list[str]
    true_accuracy: float | None = None  # share of pseudo-label captions naming the true class (analysis only)

    def __len__(self) -> int:
        return len(self.captions)

    def pixels(self, rows: np.ndarray, resolution: int) -> torch.Tensor:
        """Decode rows as [-1, 1] tensors [B, 3, r, r]: shorter side resized to r, centre crop."""
        out = []
        for row in rows:
            image = open_image(self.paths[row], self.images[row])
            scale = resolution / min(image.size)
            size = (max(resolution, round(image.width * scale)), max(resolution, round(image.height * scale)))
            if size != image.size:
                image = image.resize(size, resample=3)  # bicubic
            left, top = (image.width - resolution) // 2, (image.height - resolution) // 2
            image = image.crop((left, top, left + resolution, top + resolution))
            out.append(torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1))
        return torch.stack(out).float() / 127.5 - 1.0


def target_training_images(params: Params, manifest: pd.DataFrame, workspace: Workspace | None) -> TrainingImages:
    """The target's *training* images (never test) with their captions. `pseudolabel` captions need
    the real-image features (`workspace`): labeled images (SSL, TRZSL) keep their label, unlabeled
    ones get UPL's k most confident zero-shot labels per class, over the classes they may take."""
    train = manifest[(manifest["split"] == "train").to_numpy()]
    paths_ = train["path"].tolist() if "path" in train else [None] * len(train)
    images = train["image"].tolist() if "image" in train else [None] * len(train)
    if params.adapt.captions == "domain":
        return TrainingImages(paths_, images, [params.adapt.domain_caption] * len(train))
    pool = training_pool(workspace, params.paradigm, with_prototypes=False)
    allowed = pool.allowed_classes
    unlabeled = pool.unlabeled
    probs = text_posterior(pool.features[unlabeled], workspace.zero_shot_weights[allowed])
    chosen = select_upl(probs, params.adapt.k)
    rows = np.concatenate([np.flatnonzero(pool.labeled), unlabeled[chosen.rows]])
    labels = np.concatenate([pool.true_labels[pool.labeled], allowed[chosen.labels]])
    order = np.argsort(rows, kind="stable")
    rows, labels = rows[order], labels[order]
    template = params.generate.templates[0]
    return TrainingImages([paths_[r] for r in rows], [images[r] for r in rows],
                          [template.format(workspace.class_names[c]) for c in labels],
                          true_accuracy=float((labels == pool.true_labels[rows]).mean()) if len(rows) else float("nan"))


def _target(scheduler, x0: torch.Tensor, noise: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return alpha.sqrt() * noise - (1 - alpha).sqrt() * x0
    if kind == "sample":
        return x0
    raise PipelineError(f"cannot adapt a generator whose scheduler predicts {kind!r}")


def prior_images(frame: pd.DataFrame) -> TrainingImages:
    """Class images of the unadapted generator (a synthetic store's frame) with their prompts as captions."""
    return TrainingImages([None] * len(frame), frame["image"].tolist(), frame["prompt"].tolist())


def adapt_generator(pipe, data: TrainingImages, params: AdaptParams, device: torch.device,
                    on_step: Callable[[int, float], None] | None = None, progress: bool = True,
                    prior: TrainingImages | None = None) -> dict[str, torch.Tensor]:
    """Add LoRA adapters to the pipeline's UNet, train only them on `data` (and, with `prior` and
    `params.prior_weight` > 0, on the prior-preservation class images), return their state dict (peft
    names). The base weights never change: they are frozen before the adapters are added."""
    if len(data) == 0:
        raise PipelineError("adapt has no training images (pseudolabel captions kept none); lower adapt.k "
                            "or use adapt.captions: domain")
    view = training_view(pipe)
    unet, scheduler = view.unet, view.scheduler
    unet.requires_grad_(False)
    # The adapters' initial weights and (Stable Diffusion) the VAE's latent sampling draw from the global
    # RNG: seed it first, so the adapter depends on adapt.seed and not on what ran before in the process.
    torch.manual_seed(params.seed)
    unet.add_adapter(lora_config(params), adapter_name=ADAPTER_NAME)
    trainable = [p for p in unet.parameters() if p.requires_grad]
    for parameter in trainable:  # adapters train in float32 even on a float16 UNet
        parameter.data = parameter.data.float()
    unet.train()
    optimizer = torch.optim.AdamW(trainable, lr=params.lr, weight_decay=0.0)
    warmup = max(1, params.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, params.steps) / params.steps)))
    alphas = scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)
    steps_total = scheduler.config.num_train_timesteps

    use_prior = prior is not None and len(prior) > 0 and params.prior_weight > 0
    unique = sorted(set(data.captions) | (set(prior.captions) if use_prior else set()))
    with torch.no_grad():
        encoded = [view.condition(unique[i:i + 256]) for i in range(0, len(unique), 256)]
    condition = {key: torch.cat([part[key] for part in encoded]) for key in encoded[0]}
    position = {caption: index for index, caption in enumerate(unique)}
    caption_index = torch.tensor([position[caption] for caption in data.captions])
    prior_caption_index = torch.tensor([position[caption] for caption in prior.captions]) if use_prior else None

    generator = torch.Generator().manual_seed(params.seed)
    prior_generator = torch.Generator().manual_seed(params.seed + 1)  # its own stream: the target batches stay as without
    dtype = unet.dtype
    started = time.perf_counter()
    with tqdm(range(params.steps), desc="adapt generator (LoRA)", unit="step", disable=not progress) as bar:
        for step in bar:
            rows = torch.randint(0, len(data), (params.batch_size,), generator=generator).numpy()
            with torch.no_grad():
                x0 = view.latents(data.pixels(rows, params.resolution).to(device)).float()
            t = torch.randint(0, steps_total, (len(rows),), generator=generator)
            noise = torch.randn(x0.shape, generator=generator).to(device)
            captions = caption_index[rows]
            if use_prior:  # one UNet pass over the target batch followed by as many prior images
                prior_rows = torch.randint(0, len(prior), (params.batch_size,), generator=prior_generator).numpy()
                with torch.no_grad():
                    x0 = torch.cat([x0, view.latents(prior.pixels(prior_rows, params.resolution).to(device)).float()])
                t = torch.cat([t, torch.randint(0, steps_total, (len(prior_rows),), generator=prior_generator)])
                noise = torch.cat([noise, torch.randn(noise.shape, generator=prior_generator).to(device)])
                captions = torch.cat([captions, prior_caption_index[prior_rows]])
            alpha = alphas[t.to(device)].view(-1, 1, 1, 1)
            noisy = alpha.sqrt() * x0 + (1 - alpha).sqrt() * noise
            kwargs = {key: value[captions].to(device=device, dtype=dtype) for key, value in condition.items()}
            prediction = unet(noisy.to(dtype), t.to(device), **kwargs).sample
            target = _target(scheduler, x0, noise, alpha)
            if use_prior:
                n = len(rows)
                loss = (F.mse_loss(prediction[:n].float(), target[:n])
                        + params.prior_weight * F.mse_loss(prediction[n:].float(), target[n:]))
            else:
                loss = F.mse_loss(prediction.float(), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            schedule.step()
            if on_step is not None:
                on_step(step, loss.item())
            if step % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
                rebalance_threads()
    unet.eval()
    log.info("adapted %d LoRA tensors (%d parameters) in %.1f s", len(trainable),
             sum(p.numel() for p in trainable), time.perf_counter() - started)
    return get_peft_model_state_dict(unet, adapter_name=ADAPTER_NAME)


def adaptation_images(params: Params) -> tuple[TrainingImages, TrainingImages]:
    """The target training images `adapt` trains on (captioned by `adapt.captions`) and the unadapted
    generator's class sample (`data/adapter/prior`: the first images an unadapted `generate` would
    make), the class set of prior preservation and what `diagnose` compares class fidelity with."""
    paths.ADAPTER.parent.mkdir(parents=True, exist_ok=True)
    manifest, _ = read_table(paths.MANIFEST, columns=["id", "split", "path", "image"])
    workspace = load_workspace(with_synthetic=False) if params.adapt.captions == "pseudolabel" else None
    data = target_training_images(params, manifest, workspace)
    log.info("adapting %s on %d target training images (%s captions)", params.generate.model, len(data),
             params.adapt.captions)
    generate_synthetic(params.prior_sample_plan(), read_json(paths.CLASSES), params.generate.seed, paths.ADAPTER_PRIOR,
                       compute=params.compute)
    prior = prior_images(read_synthetic(paths.ADAPTER_PRIOR))
    if params.adapt.prior_weight > 0:
        log.info("prior preservation: %d unadapted class images at weight %g", len(prior), params.adapt.prior_weight)
    return data, prior
