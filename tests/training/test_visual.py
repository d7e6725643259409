"""Image-space training: the visual learners start from the frozen tower exactly and train only what
they should; the pixel cache reproduces the preprocess; a killed run resumes exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import pipeline.clip.pixels as pixels
from pipeline.clip.models import load_clip
from pipeline.clip.pixels import PixelSpec, augment, pixel_cache
from pipeline.config.params import parse_params
from pipeline.config.protocols import PROTOCOLS
from pipeline.core.errors import PipelineError
from pipeline.datasets.images import png_bytes
from pipeline.methods.base import LossTerm, one_hot
from pipeline.training.checkpoints import Checkpoints
from pipeline.training.learners import ImageSpaceLearner, make_learner_factory
from pipeline.training.loop import fit_prompt
from pipeline.training.visual import VisualLearner

NAMES = ["red circle", "blue circle", "red square", "blue square"]
DEVICE = torch.device("cpu")


@pytest.fixture(scope="module")
def demo_clip():
    """The shipped demo CLIP: a ResNet image tower (no tokens, so visual prompts are padding prompts)."""
    return load_clip("demo-clip", "data/demo/demo-clip.safetensors", DEVICE)


def images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def frozen_features(clip, store: np.ndarray) -> torch.Tensor:
    spec = PixelSpec.from_preprocess(clip.preprocess)
    with torch.no_grad():
        return clip.model.encode_image(spec.normalise(torch.from_numpy(store)))


def test_vpt_with_zero_tokens_is_the_frozen_tower_exactly(tiny_clip):
    store = images(6)
    learner = VisualLearner(tiny_clip.model.visual, tokens=0, kind="vpt")
    spec = PixelSpec.from_preprocess(tiny_clip.preprocess)
    with torch.no_grad():
        assert torch.equal(learner(spec.normalise(torch.from_numpy(store))), frozen_features(tiny_clip, store))


def test_vpt_tokens_change_the_features_and_only_the_tokens_get_gradients(tiny_clip):
    store = images(6)
    learner = VisualLearner(tiny_clip.model.visual, tokens=4, kind="vpt", seed=1)
    width = tiny_clip.model.visual.class_embedding.shape[-1]
    assert learner.prompt.shape == (4, width)
    assert abs(learner.prompt.std().item() - width ** -0.5) < 0.5 * width ** -0.5  # GRIP's init scale
    spec = PixelSpec.from_preprocess(tiny_clip.preprocess)
    features = learner(spec.normalise(torch.from_numpy(store)))
    assert (features - frozen_features(tiny_clip, store)).abs().max() > 1e-4
    features.sum().backward()
    assert learner.prompt.grad is not None and learner.prompt.grad.abs().sum() > 0
    trainable = [name for name, p in learner.named_parameters() if p.requires_grad]
    assert trainable == ["prompt"]
    assert all(p.grad is None for p in tiny_clip.model.visual.parameters())


def test_padding_prompt_and_adapter_start_as_the_identity_on_a_resnet_tower(demo_clip):
    store = images(5)
    learner = VisualLearner(demo_clip.model.visual, tokens=16, kind="auto", adapter=True)
    assert learner.kind == "padding"
    border = learner.border
    assert border[0].all() and not border[16, 16] and int(border[:, 16].sum()) == 2 * round(32 * 30 / 224)
    spec = PixelSpec.from_preprocess(demo_clip.preprocess)
    features = learner(spec.normalise(torch.from_numpy(store)))
    assert torch.equal(features.detach(), F.normalize(frozen_features(demo_clip, store), dim=-1))
    features.sum().backward()
    grads = {name: p.grad for name, p in learner.named_parameters() if p.requires_grad}
    assert set(grads) == {"prompt", "adapter.0.weight", "adapter.0.bias", "adapter.2.weight", "adapter.2.bias"}
    assert grads["prompt"][:, 16, 16].abs().sum() == 0 and grads["prompt"][:, 0, 0].abs().sum() > 0  # border only
    with pytest.raises(PipelineError, match="VPT needs a ViT"):
        VisualLearner(demo_clip.model.visual, tokens=4, kind="vpt")


def test_full_finetune_trains_every_tower_weight_and_keeps_frozen_statistics(demo_clip):
    import copy

    tower = copy.deepcopy(demo_clip.model.visual)
    learner = VisualLearner(tower, full_finetune=True).train()
    assert not tower.training  # batch-norm statistics stay the pretrained ones
    spec = PixelSpec.from_preprocess(demo_clip.preprocess)
    learner(spec.normalise(torch.from_numpy(images(4)))).sum().backward()
    assert all(p.requires_grad and p.grad is not None for p in tower.parameters())
    assert set(learner.trainable_state()) >= {f"visual.{name}" for name, _ in tower.named_parameters()}


def test_pixel_cache_reproduces_the_preprocess_and_is_decoded_once(tiny_clip, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)) for i in range(5)]
    frame = pd.DataFrame({"id": [f"im{i}" for i in range(5)], "image": [png_bytes(p) for p in pictures]})
    spec = PixelSpec.from_preprocess(tiny_clip.preprocess)
    store = pixel_cache(frame, spec, tmp_path)
    expected = torch.stack([tiny_clip.preprocess(p) for p in pictures])
    assert torch.allclose(spec.normalise(torch.from_numpy(store)), expected, atol=1e-6)
    assert len(list(tmp_path.rglob("*.parquet"))) == 1

    monkeypatch.setattr(pixels, "decode_pixels", lambda *a: pytest.fail("a cached shard was decoded again"))
    assert np.array_equal(pixel_cache(frame, spec, tmp_path), store)
    changed = frame.assign(image=[png_bytes(pictures[0].rotate(90))] + frame["image"].tolist()[1:])
    with pytest.raises(pytest.fail.Exception):
        pixel_cache(changed, spec, tmp_path)  # other bytes, other key: decoded, never the stale shard


def test_augment_without_crop_or_flip_is_the_identity_and_with_them_keeps_shape():
    batch = torch.rand(3, 3, 16, 16)
    same = augment(batch, torch.Generator().manual_seed(0), (1.0, 1.0), flip=False, ratio=(1.0, 1.0))
    assert torch.allclose(same, batch, atol=1e-5)
    flipped = augment(batch, torch.Generator().manual_seed(0), (1.0, 1.0), flip=True, ratio=(1.0, 1.0))
    assert all(torch.allclose(f, b, atol=1e-5) or torch.allclose(f, b.flip(-1), atol=1e-5)
               for f, b in zip(flipped, batch))
    cropped = augment(batch, torch.Generator().manual_seed(0), (0.1, 0.3))
    assert cropped.shape == batch.shape and not torch.allclose(cropped, batch, atol=1e-2)


def _image_terms(n=24, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(NAMES), n)
    return [LossTerm("pseudo", np.zeros((n, 1), np.float32), one_hot(labels, len(NAMES)), 1.0,
                     images=np.arange(n)),
            LossTerm("synthetic", np.zeros((8, 1), np.float32), one_hot(labels[:8], len(NAMES)), 0.5,
                     images=n + np.arange(8))]


def _image_learner(clip, prompt="multimodal", **train):
    config = parse_params({"train": {"prompt": prompt, "visual_tokens": 2, "n_ctx": 2, "ctx_init": "",
                                     "epochs": 3, "batch_size": 8, "warmup_epochs": 1, "augment": "crop_flip",
                                     **train}})
    weights = np.eye(len(NAMES), 32, dtype=np.float32)
    factory = make_learner_factory(config, clip, NAMES, weights, images(32), DEVICE)
    return factory, config.train


class _Killed(Exception):
    pass


@pytest.mark.parametrize("protocol,optimizer", [("project", "adam"), ("cpl", "sgd")])
def test_a_killed_image_space_run_resumes_to_exactly_the_uninterrupted_result(tiny_clip, tmp_path, protocol,
                                                                              optimizer, caplog):
    factory, train = _image_learner(tiny_clip, optimizer=optimizer)
    terms = _image_terms()
    whole = factory(3)
    assert isinstance(whole, ImageSpaceLearner)
    history = fit_prompt(whole, terms, train, seed=5, device=DEVICE, protocol=PROTOCOLS[protocol])

    checkpoints = Checkpoints(tmp_path, every=1)
    killed = factory(3)

    def kill(epoch, loss):
        if epoch == 1:
            raise _Killed
    with pytest.raises(_Killed):
        fit_prompt(killed, terms, train, 5, DEVICE, kill, PROTOCOLS[protocol], checkpoints=checkpoints,
                   checkpoint_key="round")
    assert len(list(tmp_path.glob("*.safetensors"))) == 1

    resumed, seen = factory(3), []
    caplog.set_level("INFO", logger="pipeline.training.loop")
    resumed_history = fit_prompt(resumed, terms, train, 5, DEVICE, lambda e, l: seen.append(e), PROTOCOLS[protocol],
                                 checkpoints=checkpoints, checkpoint_key="round")
    assert "resuming from the checkpoint after epoch 1/3" in caplog.text  # not a fresh start
    assert resumed_history == history and seen == [0, 1, 2]  # the restored epoch is reported again, once
    for name, value in whole.context_state().items():
        assert torch.equal(value, resumed.context_state()[name]), name
    checkpoints.clear()
    assert not list(tmp_path.glob("*.safetensors"))


def test_visual_prompt_keeps_the_handcrafted_text_and_trains_only_the_image_side(tiny_clip):
    factory, train = _image_learner(tiny_clip, prompt="visual")
    learner = factory(0)
    before = learner().clone()
    fit_prompt(learner, _image_terms(), train, 0, DEVICE)
    assert torch.equal(learner(), before)
    assert set(learner.context_state()) == {"visual.prompt"}
    assert learner.visual.prompt.abs().sum() > 0


def test_gradient_accumulation_gives_the_whole_batchs_update(tiny_clip):
    factory, train = _image_learner(tiny_clip, augment="none", lr=0.05)
    one, two = factory(0), factory(0)
    fit_prompt(one, _image_terms(), train, 0, DEVICE)
    fit_prompt(two, _image_terms(), train.model_copy(update={"accumulate": 2}), 0, DEVICE)
    for name, value in one.context_state().items():
        assert torch.allclose(value, two.context_state()[name], atol=1e-5), name
    assert F.cosine_similarity(one().flatten(), factory(0)().flatten(), dim=0) < 1  # it did train
