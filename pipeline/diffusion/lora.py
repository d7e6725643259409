"""The adapter's file format: diffusers' LoRA file (`pytorch_lora_weights.safetensors`) of peft layers.

`adapt` trains the layers `lora_config` describes and saves them with `save_adapter`; `generate` and
every script load them back with `load_adapter`, through diffusers' own `load_lora_weights`, so an
adapter made here for Stable Diffusion loads anywhere diffusers does.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig

from pipeline.config.params import AdaptParams

LORA_FILE = "pytorch_lora_weights.safetensors"  # diffusers' default name: load_lora_weights(folder) finds it

ADAPTER_NAME = "target"


def lora_config(params: AdaptParams) -> LoraConfig:
    # alpha = rank: a scale of 1, the same whether diffusers reads the alpha back or infers it.
    return LoraConfig(r=params.rank, lora_alpha=params.rank, init_lora_weights="gaussian",
                      target_modules=list(params.target_modules))



def save_adapter(state_dict: dict[str, torch.Tensor], folder: Path) -> Path:
    """Write the adapter as diffusers writes LoRA files (`unet.`-prefixed keys, safetensors)."""
    StableDiffusionPipeline.save_lora_weights(
        folder, unet_lora_layers={k: v.detach().float().cpu().contiguous() for k, v in
                                  convert_state_dict_to_diffusers(state_dict).items()},
        weight_name=LORA_FILE, safe_serialization=True)
    return Path(folder) / LORA_FILE



def load_adapter(pipe, folder: Path, scale: float = 1.0) -> None:
    """Load a saved adapter into a generator through diffusers' `load_lora_weights`, at `scale`
    (peft's adapter weight: 0 samples as the base generator, 1 as trained)."""
    pipe.load_lora_weights(str(folder), weight_name=LORA_FILE, adapter_name=ADAPTER_NAME)
    if scale != 1.0:
        pipe.unet.set_adapters([ADAPTER_NAME], weights=[scale])


def install_adapter(state_dict: dict[str, torch.Tensor], folder: Path) -> Path:
    """`save_adapter` into `folder` through a scratch folder beside it, so a crash leaves no half-written file."""
    folder = Path(folder)
    with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(save_adapter(state_dict, Path(scratch)), folder / LORA_FILE)
    return folder / LORA_FILE
