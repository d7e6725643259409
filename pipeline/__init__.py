"""AiR and its baselines: unsupervised adaptation of CLIP with diffusion-synthesised class images."""

__version__ = "0.1.0"
