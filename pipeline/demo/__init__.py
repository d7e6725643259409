"""The embedded demo world: a procedural image domain, and the tiny models pretrained on its source."""
