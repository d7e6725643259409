"""Tiny random models built in code, for tests and the offline default run.

They share real architectures and tokenizers with the production models, so every code path runs
end to end without a download; their weights are random (deterministic from a seed), so their
outputs mean nothing.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
from open_clip.tokenizer import SimpleTokenizer
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

TINY_CLIP = "tiny-clip"

_TEXT_HIDDEN = 32
_CONTEXT_LENGTH = 77
_VOCAB_SIZE = 49408
# open_clip names CLIP's two special tokens differently from transformers; the ids are the same.
_SPECIAL_TOKENS = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}


def _clip_tokenizer() -> CLIPTokenizer:
    """CLIP's real BPE tokenizer, rebuilt from the vocabulary open_clip bundles (no hub needed)."""
    simple = SimpleTokenizer()
    vocab = {_SPECIAL_TOKENS.get(token, token): index for token, index in simple.encoder.items()}
    merges = [" ".join(pair) for pair, _ in sorted(simple.bpe_ranks.items(), key=lambda item: item[1])]
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "vocab.json").write_text(json.dumps(vocab))
        Path(folder, "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        return CLIPTokenizer.from_pretrained(folder, model_max_length=_CONTEXT_LENGTH)


def build_tiny_diffusion(seed: int = 0) -> StableDiffusionPipeline:
    """A Stable Diffusion pipeline with tiny random components that makes 32x32 images in milliseconds."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=_TEXT_HIDDEN,
            attention_head_dim=2,
            norm_num_groups=8,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=(16, 16),
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=8,
            sample_size=32,
        )
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=_VOCAB_SIZE,
            hidden_size=_TEXT_HIDDEN,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=_CONTEXT_LENGTH,
            bos_token_id=_VOCAB_SIZE - 2,
            eos_token_id=_VOCAB_SIZE - 1,
            pad_token_id=_VOCAB_SIZE - 1,
        ))
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder.eval(),
        tokenizer=_clip_tokenizer(),
        unet=unet,
        scheduler=EulerDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            steps_offset=1, timestep_spacing="trailing",
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_diffusion(path: str | Path, seed: int = 0) -> Path:
    """Save the tiny pipeline as an ordinary diffusers folder, to exercise `from_pretrained`."""
    path = Path(path)
    build_tiny_diffusion(seed).save_pretrained(path)
    return path
