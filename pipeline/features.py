"""Encode real images, synthetic images and class prompts with a frozen open_clip model.

Everything downstream (auxiliary classifier, pseudo-labels, prompt training, evaluation) works on
these cached, L2-normalised vectors, so the image tower runs once per image, not once per epoch.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from pipeline.datasets.images import open_image
from pipeline.errors import PipelineError
from pipeline.models import Clip
from pipeline.prompts import class_prompts

log = logging.getLogger(__name__)


class _ImageRows(torch.utils.data.Dataset):
    """Rows with a `path` or PNG `image` bytes, decoded and preprocessed in DataLoader workers."""

    def __init__(self, paths: list, images: list, preprocess):
        self.paths, self.images, self.preprocess = paths, images, preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        path, data = self.paths[index], self.images[index]
        try:
            image = open_image(path, data)
        except Exception as error:
            where = path if path is not None else f"in-memory image #{index}"
            raise PipelineError(f"cannot read image {where}: {error}. Remove or replace it and run prepare again.") from None
        return self.preprocess(image)


@torch.inference_mode()
def encode_images(clip: Clip, frame: pd.DataFrame, batch_size: int, num_workers: int, device: torch.device,
                  desc: str = "images") -> np.ndarray:
    """L2-normalised image embeddings for a frame with `path` and/or `image` columns."""
    if frame.empty:
        return np.zeros((0, clip.model.visual.output_dim), dtype=np.float32)
    paths = frame["path"].tolist() if "path" in frame else [None] * len(frame)
    images = frame["image"].tolist() if "image" in frame else [None] * len(frame)
    loader = torch.utils.data.DataLoader(_ImageRows(paths, images, clip.preprocess), batch_size=batch_size,
                                         num_workers=num_workers, shuffle=False)
    chunks = []
    for batch in tqdm(loader, desc=f"encode {desc}", unit="batch"):
        chunks.append(F.normalize(clip.model.encode_image(batch.to(device)).float(), dim=-1).cpu())
    return torch.cat(chunks).numpy()


@torch.inference_mode()
def encode_prompts(clip: Clip, templates: list[str], class_names: list[str], device: torch.device
                   ) -> tuple[pd.DataFrame, np.ndarray]:
    """One L2-normalised embedding per (class, template)."""
    pairs = class_prompts(templates, class_names)
    tokens = clip.tokenizer([prompt for _, prompt in pairs]).to(device)
    embeddings = F.normalize(clip.model.encode_text(tokens).float(), dim=-1).cpu().numpy()
    frame = pd.DataFrame({"class_index": [c for c, _ in pairs], "prompt": [p for _, p in pairs]})
    return frame, embeddings


def zero_shot_weights(text: pd.DataFrame, embeddings: np.ndarray, n_classes: int) -> np.ndarray:
    """Class weights from the prompt ensemble: mean of each class's prompt embeddings, renormalised."""
    weights = np.zeros((n_classes, embeddings.shape[1]), dtype=np.float32)
    np.add.at(weights, text["class_index"].to_numpy(), embeddings)
    return weights / np.linalg.norm(weights, axis=1, keepdims=True).clip(1e-12)
