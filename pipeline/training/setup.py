"""What `train` builds before its rounds: the CLIP model, the pixel store when the image tower trains,
the learner factory (one learner per ensemble member and round) and the resumable checkpoints."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from pipeline.clip.models import load_clip
from pipeline.clip.pixels import PixelSpec
from pipeline.config.params import Params
from pipeline.core import paths
from pipeline.core.paths import shared_root
from pipeline.core.pool import Pool
from pipeline.methods.base import Method
from pipeline.training.checkpoints import Checkpoints
from pipeline.training.learners import make_learner_factory
from pipeline.workspace import Workspace, training_images

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingSetup:
    make_learner: Optional[Callable[[int], torch.nn.Module]]  # None: the method trains nothing
    checkpoints: Optional[Checkpoints]                        # image-space training only
    image_space: bool                                         # the image tower trains, on cached pixels


def prepare_training(params: Params, method: Method, workspace: Workspace, pool: Pool,
                     device: torch.device) -> TrainingSetup:
    clip = load_clip(params.clip.arch, params.clip.pretrained, device) if method.trains else None
    image_space = method.trains_image_tower()
    store = None
    if image_space:
        store = training_images(pool, PixelSpec.from_preprocess(clip.preprocess),
                                params.synthetic_plan(method.reads_synthetic_images), workspace.class_names)
        log.info("image-space training on %d cached images", len(store))
    make_learner = make_learner_factory(params, clip, workspace.class_names, workspace.zero_shot_weights, store,
                                        device) if method.trains else None
    checkpoints = Checkpoints(shared_root() / paths.TRAIN_CHECKPOINTS, params.train.checkpoint_every) \
        if image_space else None
    return TrainingSetup(make_learner, checkpoints, image_space)
