"""Read the artifacts that earlier stages wrote into the in-memory views later stages need."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.clip.pixels import PixelSpec, pixel_cache
from pipeline.config.params import GenerateParams
from pipeline.core import paths
from pipeline.core.artifacts import load_tensors, read_json, read_table
from pipeline.core.errors import PipelineError
from pipeline.core.pool import Pool
from pipeline.datasets.candidate_sets import candidate_masks
from pipeline.datasets.manifest import pseudo_label_classes


def zero_shot_weights(text: pd.DataFrame, embeddings: np.ndarray, n_classes: int) -> np.ndarray:
    """Class weights from the prompt ensemble: mean of each class's prompt embeddings, renormalised."""
    weights = np.zeros((n_classes, embeddings.shape[1]), dtype=np.float32)
    np.add.at(weights, text["class_index"].to_numpy(), embeddings)
    return weights / np.linalg.norm(weights, axis=1, keepdims=True).clip(1e-12)


@dataclass
class Workspace:
    class_names: list[str]
    manifest: pd.DataFrame          # without image bytes, in `images.parquet` row order for real images
    real: np.ndarray                # features of manifest rows
    synthetic_labels: np.ndarray
    synthetic: np.ndarray
    zero_shot_weights: np.ndarray

    def split(self, name: str) -> np.ndarray:
        return (self.manifest["split"] == name).to_numpy()


def load_workspace(with_synthetic: bool = True) -> Workspace:
    """Features of the manifest's images (in manifest order), the synthetic images' (none when
    `with_synthetic` is false: the stages before generation) and the zero-shot class weights."""
    class_names = read_json(paths.CLASSES)
    manifest, _ = read_table(paths.MANIFEST, columns=["id", "split", "label", "labeled", "seen"])
    frame, embeddings = read_table(paths.IMAGE_FEATURES)
    position = pd.Series(np.arange(len(frame)), index=frame["id"].to_numpy())
    missing = ~manifest["id"].isin(position.index)
    if missing.any():
        raise PipelineError(f"{int(missing.sum())} manifest images have no features; re-run the features stage "
                            "(dvc repro features_real)")
    if with_synthetic:
        synthetic, synthetic_embeddings = read_table(paths.SYNTHETIC_FEATURES)
        synthetic_labels = synthetic["label"].to_numpy(dtype=np.int64)
    else:
        synthetic_labels = np.zeros(0, dtype=np.int64)
        synthetic_embeddings = np.zeros((0, embeddings.shape[1]), dtype=np.float32)
    text, text_embeddings = read_table(paths.TEXT_FEATURES)
    return Workspace(
        class_names=class_names,
        manifest=manifest,
        real=embeddings[position[manifest["id"]].to_numpy()],
        synthetic_labels=synthetic_labels,
        synthetic=synthetic_embeddings,
        zero_shot_weights=zero_shot_weights(text, text_embeddings, len(class_names)),
    )


def training_pool(workspace: Workspace, paradigm: str, with_prototypes: bool, with_candidate_sets: bool = False
                  ) -> Pool:
    """The training split as a method sees it; the auxiliary prototypes and the candidates paradigm's
    label sets are read only when asked for (the stage then declares them as DVC deps)."""
    train = workspace.split("train")
    manifest = workspace.manifest[train]
    prototypes, synthetic_rows = None, np.arange(len(workspace.synthetic_labels))
    if with_prototypes:  # AiR: the synthetic images the auxiliary stage kept are those its loss sees
        tensors = load_tensors(paths.PROTOTYPES)[0]
        prototypes = tensors["prototypes"]
        synthetic_rows = np.flatnonzero(tensors["synthetic_kept"].astype(bool))
    candidate_sets = None
    if with_candidate_sets:
        table, _ = read_table(paths.CANDIDATE_SETS)
        candidate_sets = candidate_masks(table, manifest["id"].to_numpy(), len(workspace.class_names))
    return Pool(
        features=workspace.real[train],
        true_labels=manifest["label"].to_numpy(dtype=np.int64),
        labeled=manifest["labeled"].to_numpy(dtype=bool),
        allowed_classes=pseudo_label_classes(workspace.manifest, len(workspace.class_names), paradigm),
        n_classes=len(workspace.class_names),
        synthetic_features=workspace.synthetic[synthetic_rows],
        synthetic_labels=workspace.synthetic_labels[synthetic_rows],
        synthetic_rows=synthetic_rows,
        prototypes=prototypes,
        candidate_sets=candidate_sets,
        zero_shot_weights=workspace.zero_shot_weights,
    )


def split_images(split: str, spec: PixelSpec) -> np.ndarray:
    """The pixel store of one split's images, in manifest order (the pool's row order for `train`)."""
    manifest, _ = read_table(paths.MANIFEST)
    frame = manifest[manifest["split"] == split]
    return pixel_cache(frame, spec, paths.shared_root() / paths.PIXEL_CACHE, f"{split} images")


def training_images(pool: Pool, spec: PixelSpec, generate: GenerateParams, class_names: list[str]) -> np.ndarray:
    """One pixel store of the training split's images followed by the synthetic ones (when the pool
    has any); sets `pool.images` and `pool.synthetic_images` to their rows in it."""
    store = split_images("train", spec)
    pool.images = np.arange(len(store))
    synthetic = np.zeros((0,) + store.shape[1:], np.uint8)
    if len(pool.synthetic_labels):
        from pipeline.diffusion.synthetic import read_planned_synthetic  # diffusers: only when synthetic images train

        frame = read_planned_synthetic(paths.SYNTHETIC, generate, class_names)
        synthetic = pixel_cache(frame, spec, paths.shared_root() / paths.PIXEL_CACHE, "synthetic images")
    pool.synthetic_images = len(store) + (np.arange(len(synthetic)) if pool.synthetic_rows is None
                                          else pool.synthetic_rows)
    return np.concatenate([store, synthetic])
