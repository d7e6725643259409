"""CLIP: loading models, pixels, prompts, and the image and text features."""
