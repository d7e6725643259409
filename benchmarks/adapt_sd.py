"""Time the `adapt` stage's LoRA step on a Stable-Diffusion-1.5-shaped pipeline with random weights.

No download: the UNet, VAE and text encoder are built from SD 1.5's published architecture (860 M UNet
parameters) with random weights; the cost of a step does not depend on the weights. Prints seconds per
step and the implied time of docs/real_data.md's setting (adapt.steps 1000, batch 4, 512 px).

    python benchmarks/adapt_sd.py --device cuda --resolution 512 --batch-size 4 --steps 20
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel

from pipeline.config.params import AdaptParams
from pipeline.diffusion.adapt import TrainingImages, adapt_generator
from pipeline.tiny import _clip_tokenizer


def sd15_shaped(dtype: torch.dtype) -> StableDiffusionPipeline:
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
        block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, max_position_embeddings=77, vocab_size=49408))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=_clip_tokenizer(), unet=unet,
                                   scheduler=DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                                                           beta_end=0.012),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)


def seconds_per_step(pipe, device: torch.device, resolution: int, batch_size: int, steps: int,
                     warmup: int = 2, images: int = 16) -> float:
    """Median seconds of one `adapt_generator` step (LoRA rank 8 on the attention projections, as the
    adapt stage trains it) on random PNGs, after `warmup` steps."""
    rng = np.random.default_rng(0)
    pngs = []
    for _ in range(images):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (resolution, resolution, 3), dtype=np.uint8)).save(buffer, "PNG")
        pngs.append(buffer.getvalue())
    data = TrainingImages([None] * images, pngs, ["a photo"] * images)
    settings = AdaptParams(enabled=True, steps=warmup + steps, batch_size=batch_size, resolution=resolution,
                           lr=1e-4, rank=8)
    times, last = [], [time.perf_counter()]

    def on_step(step: int, loss: float) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    adapt_generator(pipe, data, settings, device, on_step=on_step, progress=False)
    return float(np.median(times[warmup:]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--dtype", default="float16")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype) if device.type == "cuda" else torch.float32
    pipe = sd15_shaped(dtype).to(device)
    steady = seconds_per_step(pipe, device, args.resolution, args.batch_size, args.steps)
    print(f"SD-1.5-shaped LoRA (rank 8, attention projections), {args.resolution}px, batch {args.batch_size}, "
          f"{device} {dtype}: {steady:.3f} s/step (median after warm-up); 1000 steps = {steady * 1000 / 60:.1f} min"
          + (f"; peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.type == "cuda" else ""))


if __name__ == "__main__":
    main()
