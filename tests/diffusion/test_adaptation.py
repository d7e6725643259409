"""The `adapt` stage's library: LoRA through peft/diffusers changes the generator, trains only the
adapters, round-trips through diffusers' LoRA files, and keys the generation cache."""

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.config.params import AdaptParams, GenerateParams
from pipeline.diffusion.adapt import TrainingImages, adapt_generator
from pipeline.diffusion.generate import _cache_key
from pipeline.diffusion.lora import load_adapter, save_adapter
from pipeline.tiny import build_tiny_diffusion

SETTINGS = AdaptParams(enabled=True, rank=4, steps=4, lr=0.05, batch_size=2, resolution=32, seed=0)


def _images(n: int) -> TrainingImages:
    rng = np.random.default_rng(0)
    pngs = []
    for _ in range(n):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    return TrainingImages([None] * n, pngs, ["a photo"] * n)


def _sample(pipe) -> np.ndarray:
    return pipe(prompt=["a photo of a cat"], height=32, width=32, num_inference_steps=2, guidance_scale=0.0,
                generator=[torch.Generator().manual_seed(7)], output_type="np").images


def test_lora_changes_the_output_trains_only_adapters_and_reloads_exactly(tmp_path):
    pipe = build_tiny_diffusion(seed=0)
    base = {name: tensor.clone() for name, tensor in pipe.unet.state_dict().items()}
    before = _sample(pipe)

    state = adapt_generator(pipe, _images(6), SETTINGS, torch.device("cpu"), progress=False)

    assert state and all("lora_" in name for name in state)
    # Every base weight is byte-identical; peft only wrapped it as `<layer>.base_layer`.
    checked = 0
    for name, tensor in pipe.unet.state_dict().items():
        if "lora_" not in name:
            assert torch.equal(tensor, base[name.replace(".base_layer", "")]), name
            checked += 1
    assert checked == len(base)
    after = _sample(pipe)
    assert np.abs(after - before).max() > 1e-3  # the adapters changed what the generator makes

    save_adapter(state, tmp_path)
    fresh = build_tiny_diffusion(seed=0)
    load_adapter(fresh, tmp_path)
    np.testing.assert_allclose(_sample(fresh), after, atol=1e-5)


def test_adaptation_is_deterministic_for_a_seed():
    first = adapt_generator(build_tiny_diffusion(seed=0), _images(4), SETTINGS, torch.device("cpu"), progress=False)
    torch.rand(1000)  # whatever ran before in the process must not matter
    again = adapt_generator(build_tiny_diffusion(seed=0), _images(4), SETTINGS, torch.device("cpu"), progress=False)
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    other = adapt_generator(build_tiny_diffusion(seed=0), _images(4), SETTINGS.model_copy(update={"seed": 1}),
                            torch.device("cpu"), progress=False)
    assert any(not torch.equal(first[k], other[k]) for k in first)


def _write_adapter(folder: Path, value: float) -> Path:
    state = adapt_generator(build_tiny_diffusion(seed=0), _images(2), SETTINGS.model_copy(update={"steps": 1}),
                            torch.device("cpu"), progress=False)
    save_adapter({k: torch.full_like(v, value) for k, v in state.items()}, folder)
    return folder


def test_cache_key_is_unchanged_without_adapter_and_follows_the_adapter_bytes(tmp_path):
    params = GenerateParams(model="tiny-random", images_per_class=2, size=32)
    names = ["cat", "dog"]
    plain = _cache_key(params, names, 0, torch.float32)
    # The key of this configuration before the adapt stage existed (pipeline/diffusion/generate.py at fab6a61).
    assert plain == "dbf878220bd53ce8"
    assert _cache_key(params, names, 0, torch.float32, adapter=None) == plain
    one = _cache_key(params, names, 0, torch.float32, adapter=_write_adapter(tmp_path / "a", 0.1))
    two = _cache_key(params, names, 0, torch.float32, adapter=_write_adapter(tmp_path / "b", 0.2))
    assert len({plain, one, two}) == 3


def _workspace(labeled: list[bool]):
    import pandas as pd

    from pipeline.workspace import Workspace

    # Six training images and one test image; class c's text weight is the unit vector e_c.
    features = np.array([[1, 0, 0], [0.9, 0.1, 0], [0.2, 0.8, 0], [0, 0.6, 0.4], [0, 0, 1], [0.5, 0.5, 0], [1, 0, 0]],
                        dtype=np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    manifest = pd.DataFrame({"id": [f"i{n}" for n in range(7)], "split": ["train"] * 6 + ["test"],
                             "label": [0, 0, 1, 2, 2, 1, 0], "labeled": labeled + [False], "seen": False,
                             "path": None, "image": [b"png%d" % n for n in range(7)]})
    workspace = Workspace(["cat", "dog", "fox"], manifest.drop(columns=["path", "image"]), features,
                          np.zeros(0, np.int64), np.zeros((0, 3), np.float32), np.eye(3, dtype=np.float32))
    return workspace, manifest


def test_pseudolabel_captions_keep_the_k_most_confident_per_class_and_given_labels():
    from pipeline.config.params import Params
    from pipeline.diffusion.adapt import target_training_images

    params = Params(adapt=AdaptParams(captions="pseudolabel", k=1), generate=GenerateParams(templates=["a {} photo"]))
    workspace, manifest = _workspace([False] * 6)
    data = target_training_images(params, manifest, workspace)
    # Zero-shot argmax: cat for i0, i1, i5 (a tie goes to the lower class), dog for i2, i3, fox for i4;
    # k = 1 keeps the most confident of each: i0, i2, i4.
    assert data.images == [b"png0", b"png2", b"png4"]
    assert data.captions == ["a cat photo", "a dog photo", "a fox photo"]
    assert data.true_accuracy == 1.0
    # A labeled image (SSL) keeps its given label, whatever CLIP says; the test image never enters.
    ssl = target_training_images(params.model_copy(update={"paradigm": "ssl"}), manifest,
                                 _workspace([False, False, False, True, False, False])[0])
    assert "a fox photo" in ssl.captions and b"png3" in ssl.images
    assert ssl.captions[ssl.images.index(b"png3")] == "a fox photo"
    assert b"png6" not in ssl.images
    domain = target_training_images(params.model_copy(update={"adapt": AdaptParams(captions="domain")}), manifest, None)
    assert domain.captions == ["a photo"] * 6 and b"png6" not in domain.images


def test_prior_preservation_off_is_bit_identical_and_on_trains_on_the_class_images():
    prior = TrainingImages([None] * 4, _images(4).images, ["a photo of a cat", "a photo of a dog"] * 2)
    plain = adapt_generator(build_tiny_diffusion(seed=0), _images(4), SETTINGS, torch.device("cpu"), progress=False)
    off = adapt_generator(build_tiny_diffusion(seed=0), _images(4), SETTINGS, torch.device("cpu"), progress=False,
                          prior=prior)  # prior_weight 0: the class images are not drawn at all
    assert all(torch.equal(plain[k], off[k]) for k in plain)
    losses = []
    on = adapt_generator(build_tiny_diffusion(seed=0), _images(4), SETTINGS.model_copy(update={"prior_weight": 1.0}),
                         torch.device("cpu"), progress=False, prior=prior, on_step=lambda step, loss: losses.append(loss))
    assert len(losses) == SETTINGS.steps and any(not torch.equal(plain[k], on[k]) for k in plain)


def test_adapter_scale_zero_samples_the_base_generator_and_one_the_adapter(tmp_path):
    pipe = build_tiny_diffusion(seed=0)
    base = _sample(pipe)
    save_adapter(adapt_generator(pipe, _images(4), SETTINGS, torch.device("cpu"), progress=False), tmp_path)
    adapted = _sample(pipe)
    scaled = {}
    for scale in (0.0, 0.5, 1.0):
        fresh = build_tiny_diffusion(seed=0)
        load_adapter(fresh, tmp_path, scale)
        scaled[scale] = _sample(fresh)
    np.testing.assert_allclose(scaled[0.0], base, atol=1e-6)
    np.testing.assert_allclose(scaled[1.0], adapted, atol=1e-5)
    half = np.abs(scaled[0.5] - base).max()
    assert 1e-4 < half < np.abs(adapted - base).max()


def test_cache_key_follows_the_adapter_scale_and_keeps_old_keys_at_one(tmp_path):
    params = GenerateParams(model="tiny-random", images_per_class=2, size=32)
    adapter = _write_adapter(tmp_path / "a", 0.1)
    one = _cache_key(params, ["cat"], 0, torch.float32, adapter=adapter)
    assert _cache_key(params.model_copy(update={"adapter_scale": 1.0}), ["cat"], 0, torch.float32, adapter=adapter) == one
    assert _cache_key(params.model_copy(update={"adapter_scale": 0.5}), ["cat"], 0, torch.float32, adapter=adapter) != one
