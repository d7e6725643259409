"""Pretrain the demo's tiny CLIP contrastively on captioned *source*-domain images.

The result plays the part of a web-pretrained CLIP: near-perfect zero-shot on the source domain and
clearly imperfect on the shifted target domain, which is the gap the pipeline's methods close.
Captions vary the wording (size, position, background) so that the text tower learns class words
rather than one template. Deterministic for a seed on a given machine and thread count.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from pipeline.clip.models import register_model_configs
from pipeline.config.params import WorldParams
from pipeline.core.artifacts import save_tensors
from pipeline.demo import world

log = logging.getLogger(__name__)

ARCH = "demo-clip"
TEMPLATES = (
    "a photo of a {c}.", "a {c}.", "a {size} {c}.", "a photo of a {size} {c}.", "a {c} in the {where}.",
    "a {c} on a {bg} background.", "a {size} {c} on a {bg} background.", "a picture of a {c}.",
    "a {colour} {shape} in the {where}.", "{c}", "a drawing of a {c}.", "there is a {c} in the {where}.",
)


def caption(label: int, scene: world.Scene, size: int, rng: np.random.Generator) -> str:
    colour, shape = world.class_parts(label)
    radius = scene.radius * 32 / size
    size_word = "small" if radius < 7 else "large" if radius > 10 else "medium"
    third = lambda v: ("left", "middle", "right")[min(2, int(3 * v / size))]  # noqa: E731
    vertical = ("top", "middle", "bottom")[min(2, int(3 * scene.cy / size))]
    horizontal = third(scene.cx)
    where = "center" if vertical == horizontal == "middle" else f"{vertical} {horizontal}".replace("middle ", "")
    bg = ("dark " if scene.brightness < 110 else "light " if scene.brightness > 150 else "") + (
        "plain" if scene.background == "plain" else scene.background)
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    return template.format(c=f"{colour} {shape}", colour=colour, shape=shape, size=size_word, where=where, bg=bg)


def render_corpus(n_images: int, seed: int, domain: WorldParams = world.SOURCE) -> tuple[torch.Tensor, list[str], np.ndarray]:
    """Uint8 images [N, 3, H, W], captions and labels, classes balanced and shuffled."""
    n_classes = len(world.class_names())
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n_images) % n_classes)
    images = np.empty((n_images, domain.image_size, domain.image_size, 3), np.uint8)
    captions = []
    for index, label in enumerate(tqdm(labels, desc="render source corpus", unit="image")):
        image, scene = world.render_scene(int(label), world.image_rng(seed, int(label), index, "clip"), domain)
        images[index] = np.asarray(image)
        captions.append(caption(int(label), scene, domain.image_size, rng))
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), captions, labels


def _normalise(images: torch.Tensor, model) -> torch.Tensor:
    mean = torch.tensor(model.visual.image_mean or open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(model.visual.image_std or open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


@torch.inference_mode()
def zero_shot_accuracy(model, tokenizer, images: torch.Tensor, labels: np.ndarray) -> float:
    """Top-1 with "a photo of a {c}." on uint8 images, batched."""
    text = F.normalize(model.encode_text(tokenizer([f"a photo of a {c}." for c in world.class_names()])), dim=-1)
    correct = 0
    for start in range(0, len(images), 512):
        features = F.normalize(model.encode_image(_normalise(images[start:start + 512], model)), dim=-1)
        correct += int(((features @ text.T).argmax(1).numpy() == labels[start:start + 512]).sum())
    return correct / len(images)


def pretrain(out: Path, n_images: int = 48_000, steps: int = 1_000, batch_size: int = 256, lr: float = 2e-3,
             seed: int = 0) -> dict[str, float]:
    register_model_configs()
    torch.manual_seed(seed)
    model = open_clip.create_model(ARCH)
    tokenizer = open_clip.get_tokenizer(ARCH)
    images, captions, labels = render_corpus(n_images, seed)
    labels = torch.as_tensor(labels)
    tokens = tokenizer(captions)

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "token_embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "token_embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                                  lr=lr, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / (steps - warmup))))
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    model.train()
    bar = tqdm(range(steps), desc="pretrain demo CLIP", unit="step")
    for step in bar:
        batch = torch.randint(0, n_images, (batch_size,), generator=generator)
        image_features = F.normalize(model.encode_image(_normalise(images[batch], model)), dim=-1)
        text_features = F.normalize(model.encode_text(tokens[batch]), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * image_features @ text_features.T
        # With 24 classes a batch holds many pairs of one class: treat them all as positives.
        same = (labels[batch][:, None] == labels[batch][None]).float()
        targets = same / same.sum(1, keepdim=True)
        loss = 0.5 * (torch.sum(-targets * F.log_softmax(logits, 1), 1).mean()
                      + torch.sum(-targets * F.log_softmax(logits.T, 1), 1).mean())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    minutes = (time.perf_counter() - started) / 60

    report = {"train_minutes": round(minutes, 2)}
    for name, domain in (("source", world.SOURCE), ("target", WorldParams())):
        check, _, labels = render_corpus(2_400, seed + 1_000, domain)
        report[f"{name}_zero_shot"] = zero_shot_accuracy(model, tokenizer, check, labels)
    state = {key: value.detach().half().numpy() for key, value in model.state_dict().items()}
    save_tensors(out, state, {"arch": ARCH, "seed": str(seed), "steps": str(steps), **{k: str(v) for k, v in report.items()}})
    log.info("demo CLIP: %s -> %s", report, out)
    return report
