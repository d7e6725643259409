"""Open a manifest row's image as 8-bit RGB, whatever mode its file stores.

Pillow's `convert("RGB")` clips high-bit-depth pixels instead of scaling them (a 16-bit PNG turns
white) and drops alpha (transparent pixels show whatever colour they hide). The rule here:

- 16-bit grey (`I;16*`): value / 257, rounded, so 0..65535 maps exactly onto 0..255;
- 32-bit integer (`I`): the same / 257 when every value lies in 0..65535 (16-bit data, as some
  readers store it), otherwise the image's own min..max is stretched onto 0..255;
- float (`F`): value * 255 when every value lies in 0..1, otherwise min..max stretched onto 0..255;
- with alpha (`RGBA`, `LA`, `PA`, premultiplied `RGBa`) or a transparent colour (PNG `tRNS`, GIF-style
  palettes): composited on white, as image viewers show them;
- everything else (`L`, `1`, `P`, `CMYK`, `YCbCr`, `RGB`): Pillow's own conversion.
"""

from __future__ import annotations

import io
import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.core.errors import PipelineError

log = logging.getLogger(__name__)

SIXTEEN_BIT_STEP = 257  # 65535 / 255
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "PA"}


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def open_image(path: str | None, data: bytes | None) -> Image.Image:
    """Open a manifest row's image as RGB, from its path or its bytes (decodes every pixel)."""
    source = io.BytesIO(data) if data is not None else path
    with Image.open(source) as image:
        return to_rgb(image)


def open_thumbnail(path: str | None, data: bytes | None, size: int) -> Image.Image:
    """The image as RGB within `size` x `size` px, for contact sheets: a JPEG is decoded at a reduced
    scale (`draft`), so a huge photo is never held at full size; other formats are shrunk in their own
    mode before the RGB conversion, so a 10000 px 1-bit scan costs one byte a pixel, not three."""
    source = io.BytesIO(data) if data is not None else path
    with Image.open(source) as image:
        image.draft("RGB", (size, size))
        image = image.convert("L") if image.mode == "1" else image  # resized as grey, not nearest-neighbour
        image.thumbnail((size, size))
        return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I") or image.mode == "F":
        return _grey_to_8bit(image).convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def _grey_to_8bit(image: Image.Image) -> Image.Image:
    values = np.asarray(image, dtype=np.float64)
    low, high = values.min(), values.max()
    if image.mode.startswith("I;16") or (image.mode == "I" and low >= 0 and high <= 65535):
        scaled = values / SIXTEEN_BIT_STEP
    elif image.mode == "F" and low >= 0 and high <= 1:
        scaled = values * 255
    else:
        scaled = (values - low) * (255 / (high - low)) if high > low else np.zeros_like(values)
    return Image.fromarray(np.rint(scaled).astype(np.uint8))


def check_decodable(paths: list[str]) -> None:
    """Decode every image in full, as training will (PIL's verify() passes a truncated JPEG); once each."""
    log.info("decoding %d images to check them", len(paths))
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # PIL decodes without the GIL
        problems = sorted(p for p in pool.map(_decode_problem, paths) if p)
    if problems:
        raise PipelineError(f"{len(problems)} image(s) cannot be read: {_listing(problems)}. "
                            "Remove or replace them, then run again.")


def _decode_problem(path: str) -> str | None:
    try:
        open_image(path, None)
    except UnidentifiedImageError:
        return f"{path} (not an image format Pillow reads)"
    except Exception as error:  # PIL raises many kinds; all mean the same to the user
        return f"{path} ({type(error).__name__}: {error})"
    return None


def _listing(items: list[str], shown: int = 5) -> str:
    return "; ".join(items[:shown]) + (f"; ... ({len(items)} in all)" if len(items) > shown else "")
