"""Text-to-image generation: loading the generator, adapting it (LoRA), generating, the synthetic store."""
