"""Generation throughput: the `generate` stage's path against the diffusers pipeline called directly.

Same model, prompts, batch size, steps and per-image seeds in every arm, measured side by side:
  direct        the pipeline object called batch after batch (model already loaded: the floor)
  in-process    `generate_synthetic` with no compute settings (one process; on CPU one thread, the
                determinism rule: a shard's bytes must not depend on the thread count)
  local         `compute.backend: local` defaults (CPU: one single-threaded process per core; GPU:
                one per visible GPU), everything included (process start, model load, PNG, Parquet)
  ray N         `compute.backend: ray` with N workers on a local Ray started beforehand
Prints images/s per arm and the ratios the issue names (goal: ≥ 0.9 of direct at the same threads).

    python benchmarks/generation_throughput.py                              # demo generator, CPU
    python benchmarks/generation_throughput.py --model sd15 --device cuda --size 512 --steps 25 \
        --dtype float16 --classes 4 --images-per-class 32 --batch-size 8    # SD 1.5-shaped, random weights
    python benchmarks/generation_throughput.py --model sd-turbo --device cuda --size 512 --steps 1 ...
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from pipeline.config.params import ComputeParams, GenerateParams
from pipeline.diffusion.generate import generate_synthetic
from pipeline.diffusion.loading import load_generator
from pipeline.diffusion.synthetic import plan_shards
from pipeline.runtime.devices import resolve_dtype, torch_threads


def random_weights_model(kind: str, folder: Path, dtype: torch.dtype) -> str:
    """An SD 1.5- or SD-Turbo (SD 2.1)-shaped pipeline with random weights, saved as a diffusers folder
    (no download: cost does not depend on the weights)."""
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from pipeline.tiny import _clip_tokenizer

    turbo = kind == "sd-turbo"
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=1024 if turbo else 768,
        attention_head_dim=(5, 10, 20, 20) if turbo else 8, use_linear_projection=turbo,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
                        block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=1024 if turbo else 768, intermediate_size=4096 if turbo else 3072,
                                        num_hidden_layers=23 if turbo else 12, num_attention_heads=16 if turbo else 12,
                                        max_position_embeddings=77, vocab_size=49408, hidden_act="gelu" if turbo
                                        else "quick_gelu"))
    scheduler = (EulerAncestralDiscreteScheduler if turbo else PNDMScheduler)(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=_clip_tokenizer(), unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.to(dtype=dtype).save_pretrained(folder)
    return str(folder)


def direct(params: GenerateParams, classes: list[str], device: torch.device, dtype: torch.dtype) -> float:
    """Seconds for the plan's images through the pipeline object itself, model already loaded."""
    pipe = load_generator(params.model, device, dtype)
    jobs = [job for shard in plan_shards(params, classes, params.seed) for job in shard]
    call = lambda batch: pipe(prompt=[j.prompt for j in batch], height=params.size, width=params.size,  # noqa: E731
                              num_inference_steps=params.steps, guidance_scale=params.guidance,
                              generator=[torch.Generator(device=device).manual_seed(j.seed) for j in batch])
    call(jobs[:params.batch_size])  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for begin in range(0, len(jobs), params.batch_size):
        call(jobs[begin:begin + params.batch_size])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def ours(params: GenerateParams, classes: list[str], compute: ComputeParams | None, scratch: Path) -> float:
    cache = scratch / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    start = time.perf_counter()
    generate_synthetic(params.model_copy(update={"cache_dir": str(cache)}), classes, params.seed, scratch / "out",
                       progress=False, compute=compute)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="data/demo", help="a generator folder, tiny-random, sd15 or sd-turbo")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--images-per-class", type=int, default=24)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--shard-size", type=int, default=48)
    parser.add_argument("--ray-workers", type=int, nargs="*", default=[1, 2])
    args = parser.parse_args()

    device = torch.device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    scratch = Path(tempfile.mkdtemp(prefix="generation-benchmark-"))
    model = args.model
    if model in ("sd15", "sd-turbo"):
        model = random_weights_model(model, scratch / model, dtype)
    params = GenerateParams(model=model, images_per_class=args.images_per_class, size=args.size, steps=args.steps,
                            guidance=args.guidance, batch_size=args.batch_size, shard_size=args.shard_size,
                            dtype=args.dtype, device=args.device)
    classes = [f"shape {c}" for c in range(args.classes)]
    images = args.classes * args.images_per_class
    cores = len(os.sched_getaffinity(0))
    print(f"{args.model}: {images} images, {args.size} px, {args.steps} steps, batch {args.batch_size}, "
          f"shards of {args.shard_size}, {device} {dtype}, {cores} cores")

    rates = {}
    if device.type == "cpu":
        with torch_threads(1):
            rates["direct, 1 thread"] = images / direct(params, classes, device, dtype)
        rates[f"direct, {cores} threads"] = images / direct(params, classes, device, dtype)
    else:
        rates["direct"] = images / direct(params, classes, device, dtype)
    rates["in-process"] = images / ours(params, classes, None, scratch)
    rates["local (defaults)"] = images / ours(params, classes, ComputeParams(), scratch)
    if args.ray_workers:
        import ray

        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, configure_logging=False)
        for workers in args.ray_workers:
            rates[f"ray, {workers} worker(s)"] = images / ours(params, classes,
                                                              ComputeParams(backend="ray", workers=workers), scratch)
        ray.shutdown()
    shutil.rmtree(scratch, ignore_errors=True)

    for arm, rate in rates.items():
        print(f"  {arm:<22} {rate:8.2f} images/s")
    floor = rates.get("direct") or rates[f"direct, {cores} threads"]
    same_threads = rates.get("direct") or rates["direct, 1 thread"]
    print(f"ratio in-process / direct at the same threads: {rates['in-process'] / same_threads:.3f}  (goal >= 0.9)")
    print(f"ratio local defaults / direct (all cores):      {rates['local (defaults)'] / floor:.3f}")
    if len(args.ray_workers) >= 2:
        a, b = args.ray_workers[:2]
        print(f"ray scaling {b} vs {a} worker(s):               "
              f"{rates[f'ray, {b} worker(s)'] / rates[f'ray, {a} worker(s)']:.2f}x")


if __name__ == "__main__":
    main()
