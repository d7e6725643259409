"""Image grids a person would rather look at than read: one labelled row per class."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from pipeline.core.artifacts import atomic_path

CELL = 64  # every image fits a CELL x CELL square, whatever its size: the sheet's size is fixed by its rows
LABEL_WIDTH = 170


def _placeholder(text: str) -> Image.Image:
    image = Image.new("RGB", (256, 64), "white")
    ImageDraw.Draw(image).text((10, 26), text, fill="black")
    return image


def _fitted(image: Image.Image) -> Image.Image:
    """`image` scaled to fit a CELL square, keeping its shape: small ones up (nearest, pixels stay
    sharp), large ones down."""
    scale = CELL / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BICUBIC
    return image.convert("RGB").resize(size, resample)


def grid_image(rows: list[tuple[str, list[Image.Image]]], empty_text: str) -> Image.Image:
    """A grid: a class name, then its images, each centred in a CELL square."""
    rows = [(name, images) for name, images in rows if images]
    if not rows:
        return _placeholder(empty_text)
    columns = max(len(images) for _, images in rows)
    sheet = Image.new("RGB", (LABEL_WIDTH + columns * CELL, len(rows) * CELL), "white")
    draw = ImageDraw.Draw(sheet)
    for row, (name, images) in enumerate(rows):
        top = row * CELL
        draw.text((4, top + CELL // 2 - 6), name[:27], fill="black")
        for column, image in enumerate(images):
            image = _fitted(image)
            sheet.paste(image, (LABEL_WIDTH + column * CELL + (CELL - image.width) // 2,
                                top + (CELL - image.height) // 2))
    return sheet


def class_grid(rows: list[tuple[str, list[Image.Image]]], png_path: Path, empty_text: str) -> None:
    """Write `grid_image(rows, empty_text)` as a PNG."""
    sheet = grid_image(rows, empty_text)
    with atomic_path(png_path) as tmp:
        sheet.save(tmp, format="PNG")
