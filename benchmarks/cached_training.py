"""Per-epoch speed of prompt training on cached image features vs re-encoding every image every epoch.

The reference loops (CoOp, GRIP, CPL) push each training image through the frozen image tower in
every epoch; the pipeline encodes it once in `features` and trains on the cached vectors. Both arms
here use the same model, data, learner, batch size and optimiser; only where image features come
from differs. Prints seconds per epoch for each and their ratio.

    python benchmarks/cached_training.py                      # tiny-clip, 32 px demo world
    python benchmarks/cached_training.py --arch ViT-B-32      # ViT-B/32 shape and cost (random weights)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.clip.features import encode_images
from pipeline.clip.models import load_clip
from pipeline.clip.prompts import PromptLearner
from pipeline.config.params import DatasetParams, WorldParams
from pipeline.core.candidates import LOGIT_SCALE
from pipeline.datasets.images import open_image
from pipeline.datasets.loading import load_dataset


def epoch(learner, optimizer, labels, batch_size, features_of):
    order = np.random.default_rng(0).permutation(len(labels))
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        features = features_of(rows)
        loss = F.cross_entropy(LOGIT_SCALE * features @ learner().T, labels[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="tiny-clip")
    parser.add_argument("--images-per-class", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    device = torch.device("cpu")

    clip = load_clip(args.arch, "random", device)
    dataset = load_dataset(DatasetParams(name="demo", demo=WorldParams(images_per_class=args.images_per_class,
                                                                      test_images_per_class=1)))
    train = dataset.frame[dataset.frame["split"] == "train"].reset_index(drop=True)
    labels = torch.tensor(train["label"].to_numpy())
    images = [open_image(None, data) for data in train["image"]]

    def reencode(rows):
        with torch.no_grad():
            batch = torch.stack([clip.preprocess(images[i]) for i in rows])
            return F.normalize(clip.model.encode_image(batch).float(), dim=-1)

    started = time.perf_counter()
    cached = torch.as_tensor(encode_images(clip, train, batch_size=128, num_workers=0, device=device, desc="once"))
    encode_once = time.perf_counter() - started

    timings = {}
    for name, features_of in (("cached", lambda rows: cached[rows]), ("re-encode", reencode)):
        learner = PromptLearner(clip.model, clip.tokenizer, dataset.class_names, ctx_init="a photo of a")
        optimizer = torch.optim.SGD(learner.parameters(), lr=0.002, momentum=0.9)
        epoch(learner, optimizer, labels, args.batch_size, features_of)  # warm-up
        started = time.perf_counter()
        for _ in range(args.epochs):
            epoch(learner, optimizer, labels, args.batch_size, features_of)
        timings[name] = (time.perf_counter() - started) / args.epochs

    print(f"arch={args.arch} images={len(train)} classes={len(dataset.class_names)} batch={args.batch_size} "
          f"threads={torch.get_num_threads()}")
    print(f"one-off feature extraction: {encode_once:.3f} s")
    print(f"seconds per epoch: cached {timings['cached']:.4f}, re-encode {timings['re-encode']:.4f}")
    print(f"speed ratio (re-encode / cached): {timings['re-encode'] / timings['cached']:.1f}x")


if __name__ == "__main__":
    main()
