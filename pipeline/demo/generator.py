"""The demo's tiny text-to-image generator: a pixel-space diffusers UNet conditioned on the demo CLIP.

No VAE at 32×32: images are folded space-to-depth (32×32×3 → 16×16×12) and denoised directly. The
UNet cross-attends to the frozen demo CLIP's text token states and also receives the pooled,
projected text embedding through its class-embedding input (as SDXL adds pooled text), which makes
the class words easy to learn on a CPU budget. Sampling uses a diffusers DDIM scheduler with
classifier-free guidance. `DemoPipeline.__call__` mirrors Stable Diffusion's, so the `generate`
stage treats it like any diffusers pipeline.

A generator directory holds `demo_generator.json` (configs and the CLIP file it conditions on) and
`unet.safetensors`.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, UNet2DConditionModel
from PIL import Image
from tqdm.auto import tqdm

from pipeline.clip.models import load_clip
from pipeline.core.artifacts import load_tensors, save_tensors

log = logging.getLogger(__name__)

MARKER = "demo_generator.json"
FOLD = 2  # space-to-depth factor

UNET_CONFIG = {
    "sample_size": 16, "in_channels": 3 * FOLD * FOLD, "out_channels": 3 * FOLD * FOLD,
    "block_out_channels": [32, 64, 56], "layers_per_block": 1,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "cross_attention_dim": 128, "attention_head_dim": 4, "norm_num_groups": 8,
    "class_embed_type": "projection", "projection_class_embeddings_input_dim": 64,
}
SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction",
    "clip_sample": True, "timestep_spacing": "trailing", "set_alpha_to_one": False,
}


class TextConditioner:
    """Frozen demo-CLIP text tower: per-token states (cross-attention) and the pooled embedding."""

    def __init__(self, clip_file: str, device: torch.device):
        self.clip = load_clip("demo-clip", clip_file, device)
        self.device = device

    @torch.no_grad()
    def __call__(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        model = self.clip.model
        tokens = self.clip.tokenizer(prompts).to(self.device)
        x = model.token_embedding(tokens) + model.positional_embedding
        x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask))
        pooled = x[torch.arange(len(x)), tokens.argmax(dim=-1)] @ model.text_projection
        return x, F.normalize(pooled, dim=-1)


@dataclass
class PipelineOutput:
    images: list[Image.Image]


def to_pixels(sample: torch.Tensor) -> torch.Tensor:
    """Folded [-1, 1] sample → uint8-range images [B, 3, H, W]."""
    images = F.pixel_shuffle(sample, FOLD)
    return ((images.clamp(-1, 1) + 1) * 127.5).round()


class DemoPipeline:
    """Stable-Diffusion-shaped text-to-image for the demo world (32×32 only)."""

    def __init__(self, unet: UNet2DConditionModel, text: TextConditioner, scheduler: DDIMScheduler):
        self.unet, self.text, self.scheduler = unet.eval(), text, scheduler
        self.device = text.device

    @classmethod
    def from_dir(cls, folder: str | Path, device: torch.device) -> "DemoPipeline":
        folder = Path(folder)
        config = json.loads((folder / MARKER).read_text())
        unet = UNet2DConditionModel(**config["unet"])
        weights, _ = load_tensors(folder / "unet.safetensors")
        unet.load_state_dict({k: torch.from_numpy(v).float() for k, v in weights.items()})
        text = TextConditioner(str(folder / config["clip"]), device)
        return cls(unet.to(device), text, DDIMScheduler(**config["scheduler"]))

    def latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images [B, 3, 32, 32] → the folded space the UNet denoises (what `adapt` trains on)."""
        return F.pixel_unshuffle(pixels, FOLD)

    def condition(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """The UNet's text inputs for `prompts`: token states and the pooled embedding."""
        states, pooled = self.text(list(prompts))
        return {"encoder_hidden_states": states, "class_labels": pooled}

    def load_lora_weights(self, folder: str, weight_name: str, adapter_name: str) -> None:
        """diffusers' LoRA loading, as Stable Diffusion pipelines offer it, for this pipeline's UNet."""
        self.unet.load_lora_adapter(folder, prefix="unet", weight_name=weight_name, adapter_name=adapter_name)

    def to(self, device: torch.device) -> "DemoPipeline":
        return self  # built on its device already

    def set_progress_bar_config(self, **_: object) -> None:
        """Sampling shows no bar of its own; the stage shows one over all images."""

    @torch.no_grad()
    def __call__(self, prompt: list[str], height: int = 32, width: int = 32, num_inference_steps: int = 25,
                 guidance_scale: float = 3.0, generator: list[torch.Generator] | None = None) -> PipelineOutput:
        if height != 32 or width != 32:
            raise ValueError(f"the demo generator makes 32x32 images; set generate.size: 32 (got {height}x{width})")
        n = len(prompt)
        shape = (self.unet.config.in_channels, self.unet.config.sample_size, self.unet.config.sample_size)
        generators = generator or [torch.Generator().manual_seed(i) for i in range(n)]
        sample = torch.stack([torch.randn(shape, generator=g, device=g.device) for g in generators]).to(self.device)
        states, pooled = self.text(list(prompt))
        guided = guidance_scale > 1.0
        if guided:
            empty_states, empty_pooled = self.text([""] * n)
            states, pooled = torch.cat([empty_states, states]), torch.cat([empty_pooled, pooled])
        scheduler = copy.deepcopy(self.scheduler)
        scheduler.set_timesteps(num_inference_steps)
        for t in scheduler.timesteps:
            model_input = torch.cat([sample, sample]) if guided else sample
            prediction = self.unet(model_input, t, encoder_hidden_states=states, class_labels=pooled).sample
            if guided:
                unconditional, conditional = prediction.chunk(2)
                prediction = unconditional + guidance_scale * (conditional - unconditional)
            sample = scheduler.step(prediction, t, sample).prev_sample
        pixels = to_pixels(sample).permute(0, 2, 3, 1).to(torch.uint8).cpu().numpy()
        return PipelineOutput([Image.fromarray(image) for image in pixels])


def train(clip_file: Path, images: torch.Tensor, captions: list[str], steps: int,
          batch_size: int = 128, lr: float = 1e-3, caption_dropout: float = 0.1, ema_decay: float = 0.999,
          seed: int = 0, device: torch.device = torch.device("cpu")) -> dict[str, float]:
    """Train the UNet on uint8 source images [N, 3, 32, 32] with their captions; save the EMA weights
    beside the CLIP file it conditions on, so the folder is a self-contained generator."""
    torch.manual_seed(seed)
    text = TextConditioner(str(clip_file), device)
    unet = UNet2DConditionModel(**UNET_CONFIG).to(device)
    ema = copy.deepcopy(unet).requires_grad_(False)
    scheduler = DDIMScheduler(**SCHEDULER_CONFIG)
    alphas = scheduler.alphas_cumprod.to(device)

    log.info("encoding %d captions with the demo CLIP", len(captions))
    unique = sorted(set(captions) | {""})
    index_of = {c: i for i, c in enumerate(unique)}
    states, pooled = zip(*(text(unique[i:i + 512]) for i in range(0, len(unique), 512)))
    states, pooled = torch.cat(states), torch.cat(pooled)
    caption_ids = torch.tensor([index_of[c] for c in captions], device=device)
    empty = index_of[""]

    optimizer = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 50)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * (0.5 * (1 + math.cos(math.pi * s / steps)) * 0.9 + 0.1))
    generator = torch.Generator(device="cpu").manual_seed(seed)
    started = time.perf_counter()
    bar = tqdm(range(steps), desc="train demo generator", unit="step")
    for step in bar:
        batch = torch.randint(0, len(images), (batch_size,), generator=generator)
        x0 = F.pixel_unshuffle(images[batch].to(device).float() / 127.5 - 1, FOLD)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), generator=generator).to(device)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        a = alphas[t].sqrt().view(-1, 1, 1, 1)
        s = (1 - alphas[t]).sqrt().view(-1, 1, 1, 1)
        noisy = a * x0 + s * noise
        target = a * noise - s * x0  # v-prediction
        ids = caption_ids[batch].clone()
        ids[torch.rand(batch_size, generator=generator).to(device) < caption_dropout] = empty
        prediction = unet(noisy, t, encoder_hidden_states=states[ids], class_labels=pooled[ids]).sample
        # min-SNR-5 weighting (v-prediction form): keeps the easy low-noise steps from dominating.
        snr = alphas[t] / (1 - alphas[t])
        weight = torch.clamp(snr, max=5.0) / (snr + 1)
        loss = (weight * ((prediction - target) ** 2).mean(dim=(1, 2, 3))).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            decay = min(ema_decay, (1 + step) / (10 + step))
            for e, p in zip(ema.parameters(), unet.parameters()):
                e.lerp_(p, 1 - decay)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    minutes = (time.perf_counter() - started) / 60

    out_dir = Path(clip_file).parent
    save_tensors(out_dir / "unet.safetensors", {k: v.detach().half().cpu().numpy() for k, v in ema.state_dict().items()},
                 {"steps": str(steps), "seed": str(seed)})
    config = {"unet": UNET_CONFIG, "scheduler": SCHEDULER_CONFIG, "clip": Path(clip_file).name,
              "train": {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
                        "minutes": round(minutes, 2)}}
    (out_dir / MARKER).write_text(json.dumps(config, indent=2) + "\n")
    return {"train_minutes": round(minutes, 2)}


@torch.no_grad()
def class_fidelity(pipe, clip, class_names: list[str], per_class: int, steps: int, guidance: float,
                   seed: int = 0) -> tuple[float, list[Image.Image]]:
    """Share of images generated from "a photo of a {c}" that the CLIP classifies as c."""
    prompts = [f"a photo of a {c}" for c in class_names for _ in range(per_class)]
    labels = np.repeat(np.arange(len(class_names)), per_class)
    generators = [torch.Generator().manual_seed(seed * 100_000 + i) for i in range(len(prompts))]
    images = []
    for start in range(0, len(prompts), 96):
        images += pipe(prompts[start:start + 96], num_inference_steps=steps, guidance_scale=guidance,
                       generator=generators[start:start + 96]).images
    batch = torch.stack([clip.preprocess(image) for image in images])
    text = F.normalize(clip.model.encode_text(clip.tokenizer([f"a photo of a {c}." for c in class_names])), dim=-1)
    predicted = (F.normalize(clip.model.encode_image(batch), dim=-1) @ text.T).argmax(1).numpy()
    return float((predicted == labels).mean()), images
