"""The `adapt` stage's library: LoRA through peft/diffusers changes the generator, trains only the
adapters, round-trips through diffusers' LoRA files, and keys the generation cache."""

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.adaptation import TrainingImages, adapt_generator, load_adapter, save_adapter
from pipeline.generation import _cache_key
from pipeline.params import AdaptParams, GenerateParams
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
    again = adapt_generator(build_tiny_diffusion(seed=0), _images(4), SETTINGS, torch.device("cpu"), progress=False)
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)


def _write_adapter(folder: Path, value: float) -> Path:
    state = adapt_generator(build_tiny_diffusion(seed=0), _images(2), SETTINGS.model_copy(update={"steps": 1}),
                            torch.device("cpu"), progress=False)
    save_adapter({k: torch.full_like(v, value) for k, v in state.items()}, folder)
    return folder


def test_cache_key_is_unchanged_without_adapter_and_follows_the_adapter_bytes(tmp_path):
    params = GenerateParams(model="tiny-random", images_per_class=2, size=32)
    names = ["cat", "dog"]
    plain = _cache_key(params, names, 0, torch.float32)
    # The key of this configuration before the adapt stage existed (pipeline/generation.py at fab6a61).
    assert plain == "dbf878220bd53ce8"
    assert _cache_key(params, names, 0, torch.float32, adapter=None) == plain
    one = _cache_key(params, names, 0, torch.float32, adapter=_write_adapter(tmp_path / "a", 0.1))
    two = _cache_key(params, names, 0, torch.float32, adapter=_write_adapter(tmp_path / "b", 0.2))
    assert len({plain, one, two}) == 3
