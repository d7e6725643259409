"""Feature extraction throughput: the `features` stage's path against bare `encode_image`.

Both arms encode the same images with the same model and batch size, side by side in one run:
  bare     `model.encode_image` on tensors decoded and preprocessed beforehand (the model alone)
  ours     `pipeline.clip.features.encode_image_shards` from the images' PNG bytes: DataLoader workers
           decode and preprocess while the model runs, shards land in a cache, and are read back
Prints images/s and their ratio (goal ≥ 0.9: the DataLoader keeps the model busy).

    python benchmarks/feature_throughput.py                               # demo-clip, demo world, 32 px
    python benchmarks/feature_throughput.py --arch ViT-B-32 --images 512  # ViT-B/32 shape (random weights), 224 px
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.clip.features import encode_image_shards
from pipeline.clip.models import load_clip
from pipeline.config.params import ClipParams, DatasetParams, WorldParams
from pipeline.datasets.images import open_image
from pipeline.datasets.loading import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="demo-clip")
    parser.add_argument("--pretrained", default=None, help="default: the demo's weights for demo-clip, else random")
    parser.add_argument("--images", type=int, default=4800)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    pretrained = args.pretrained or ("data/demo/demo-clip.safetensors" if args.arch == "demo-clip" else "random")

    per_class = -(-args.images // 48)
    world = load_dataset(DatasetParams(name="demo", demo=WorldParams(images_per_class=per_class,
                                                                    test_images_per_class=per_class)))
    frame = world.frame.head(args.images).reset_index(drop=True)[["id", "image"]]
    clip = load_clip(args.arch, pretrained, device)
    decoded = torch.stack([clip.preprocess(open_image(None, data)) for data in frame["image"]])
    settings = ClipParams(arch=args.arch, pretrained=pretrained, batch_size=args.batch_size,
                          num_workers=args.num_workers, device=args.device)

    @torch.inference_mode()
    def bare() -> np.ndarray:
        out = [F.normalize(clip.model.encode_image(decoded[i:i + args.batch_size].to(device)).float(), dim=-1).cpu()
               for i in range(0, len(decoded), args.batch_size)]
        return torch.cat(out).numpy()

    def ours() -> np.ndarray:
        cache = Path(tempfile.mkdtemp(prefix="feature-benchmark-"))
        try:
            return encode_image_shards(frame, settings, device, cache, desc="benchmark")
        finally:
            shutil.rmtree(cache)

    bare()  # warm-up
    times = {"bare": [], "ours": []}
    for _ in range(args.repeats):  # interleaved, so drifting load hits both arms alike
        for arm, run in (("bare", bare), ("ours", ours)):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            result = run()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[arm].append(time.perf_counter() - start)
    assert np.abs(result - bare()).max() < 1e-4  # same embeddings
    rates = {arm: len(frame) / min(values) for arm, values in times.items()}
    print(f"{args.arch} ({pretrained}), {len(frame)} images {clip.preprocess.transforms[0].size} px, batch "
          f"{args.batch_size}, {args.num_workers} DataLoader workers, {device}, {torch.get_num_threads()} threads")
    print(f"  bare encode_image on decoded tensors {rates['bare']:9.1f} images/s")
    print(f"  encode_image_shards from PNG bytes   {rates['ours']:9.1f} images/s")
    print(f"ratio ours / bare: {rates['ours'] / rates['bare']:.3f}  (goal >= 0.9)")


if __name__ == "__main__":
    main()
