"""Image grids a person would rather look at than read: one labelled row per class."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

from pipeline.artifacts import atomic_path

MIN_CELL = 64
LABEL_WIDTH = 170


def _placeholder(text: str) -> Image.Image:
    image = Image.new("RGB", (256, 64), "white")
    ImageDraw.Draw(image).text((10, 26), text, fill="black")
    return image


def class_grid(rows: list[tuple[str, list[Image.Image]]], png_path: Path, empty_text: str) -> None:
    """Write a PNG grid: a class name, then its images scaled up (nearest) to at least MIN_CELL px."""
    rows = [(name, images) for name, images in rows if images]
    if not rows:
        sheet = _placeholder(empty_text)
    else:
        first = rows[0][1][0]
        scale = max(1, math.ceil(MIN_CELL / max(first.size)))
        cell_w, cell_h = first.width * scale, first.height * scale
        columns = max(len(images) for _, images in rows)
        sheet = Image.new("RGB", (LABEL_WIDTH + columns * cell_w, len(rows) * cell_h), "white")
        draw = ImageDraw.Draw(sheet)
        for row, (name, images) in enumerate(rows):
            top = row * cell_h
            draw.text((4, top + cell_h // 2 - 6), name[:27], fill="black")
            for column, image in enumerate(images):
                image = image.convert("RGB").resize((cell_w, cell_h), Image.Resampling.NEAREST)
                sheet.paste(image, (LABEL_WIDTH + column * cell_w, top))
    with atomic_path(png_path) as tmp:
        sheet.save(tmp, format="PNG")
