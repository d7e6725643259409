"""The demo world: coloured shapes on backgrounds, in a clean *source* and a shifted *target* domain.

24 classes = 6 shapes × 4 colours ("red star"), 32×32 RGB, random position, size and rotation. The
source domain (plain or gradient grey backgrounds) is what the tiny CLIP and the tiny generator are
pretrained on; the target domain (stripes, checkerboards, noise textures, distractor blobs, low
contrast, sensor noise, blur) is what the pipeline adapts to. Every shift knob is a field of
`WorldParams`, and every image is a pure function of (knobs, seed, class, index).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pipeline.config.params import WorldParams

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")
COLOURS = {"red": (215, 40, 40), "green": (40, 170, 60), "blue": (45, 75, 215), "yellow": (225, 205, 40)}
SUPERSAMPLE = 4

SOURCE = WorldParams(backgrounds=["plain", "gradient"], distractors=[0, 0], contrast=[1.0, 1.0],
                     noise=2.0, blur=[0.0, 0.0])


def class_names() -> list[str]:
    """Shape-major: red circle, green circle, ..., yellow ring."""
    return [f"{colour} {shape}" for shape in SHAPES for colour in COLOURS]


def class_parts(label: int) -> tuple[str, str]:
    """(colour, shape) of a class index."""
    return list(COLOURS)[label % len(COLOURS)], SHAPES[label // len(COLOURS)]


def image_rng(seed: int, label: int, index: int, salt: str = "") -> np.random.Generator:
    digest = hashlib.sha256(f"{salt}:{seed}:{label}:{index}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _shape_polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    def ring_of(points: int, radii: list[float], offset: float = 0.0) -> list[tuple[float, float]]:
        out = []
        for k in range(points * len(radii)):
            theta = angle + offset + 2 * np.pi * k / (points * len(radii))
            rad = radii[k % len(radii)] * r
            out.append((cx + rad * np.cos(theta), cy + rad * np.sin(theta)))
        return out

    if shape == "square":
        return ring_of(4, [1.0], np.pi / 4)
    if shape == "triangle":
        return ring_of(3, [1.1], -np.pi / 2)
    if shape == "star":
        return ring_of(5, [1.15, 0.45], -np.pi / 2)
    if shape == "cross":
        arm, half = r, r * 0.36
        corners = [(half, arm), (half, half), (arm, half), (arm, -half), (half, -half), (half, -arm),
                   (-half, -arm), (-half, -half), (-arm, -half), (-arm, half), (-half, half), (-half, arm)]
        c, s = np.cos(angle), np.sin(angle)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in corners]
    raise ValueError(shape)


def shape_mask(shape: str, size: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of one shape, drawn supersampled and box-filtered."""
    big = size * SUPERSAMPLE
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    X, Y, R = cx * SUPERSAMPLE, cy * SUPERSAMPLE, r * SUPERSAMPLE
    if shape in ("circle", "ring"):
        draw.ellipse([X - R, Y - R, X + R, Y + R], fill=255)
        if shape == "ring":
            inner = R * 0.55
            draw.ellipse([X - inner, Y - inner, X + inner, Y + inner], fill=0)
    else:
        draw.polygon(_shape_polygon(shape, X, Y, R, angle), fill=255)
    return np.asarray(canvas.resize((size, size), Image.Resampling.BOX), dtype=np.float32) / 255.0


def _background(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A grey-level background [size, size] in 0..255."""
    base = rng.uniform(70, 190)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == "plain":
        return np.full((size, size), base, np.float32)
    if kind == "gradient":
        theta = rng.uniform(0, 2 * np.pi)
        ramp = (xx * np.cos(theta) + yy * np.sin(theta)) / size
        return base + rng.uniform(20, 50) * (ramp - ramp.mean())
    if kind == "stripes":
        theta, period = rng.uniform(0, np.pi), rng.uniform(3, 8)
        phase = (xx * np.cos(theta) + yy * np.sin(theta)) / period
        return base + rng.uniform(25, 55) * np.sign(np.sin(2 * np.pi * phase + rng.uniform(0, 6.3)))
    if kind == "checker":
        cell = rng.integers(3, 8)
        return base + rng.uniform(25, 55) * (((xx // cell + yy // cell) % 2) * 2 - 1)
    if kind == "noise":
        coarse = rng.normal(0, 1, (size // 4 + 1, size // 4 + 1)).astype(np.float32)
        texture = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))
        return base + rng.uniform(20, 40) * texture
    raise ValueError(f"unknown background kind {kind!r}")


@dataclass(frozen=True)
class Scene:
    """What was drawn, for captions: background kind and brightness, shape centre and radius."""

    background: str
    brightness: float
    cx: float
    cy: float
    radius: float


def render(label: int, rng: np.random.Generator, world: WorldParams) -> Image.Image:
    """One image of class `label` under the world's knobs."""
    return render_scene(label, rng, world)[0]


def render_scene(label: int, rng: np.random.Generator, world: WorldParams) -> tuple[Image.Image, Scene]:
    size = world.image_size
    colour_name, shape = class_parts(label)
    kind = str(rng.choice(world.backgrounds))
    grey = _background(kind, size, rng)
    image = np.repeat(grey[..., None], 3, axis=2)

    for _ in range(int(rng.integers(world.distractors[0], world.distractors[1] + 1))):
        tint = rng.uniform(60, 200, 3)
        blob = shape_mask("circle", size, *rng.uniform(2, size - 2, 2), rng.uniform(1.5, 3.5), 0.0)
        image = image * (1 - blob[..., None]) + tint * blob[..., None]

    radius = rng.uniform(world.radius[0], world.radius[1]) * size / 32
    cx, cy = rng.uniform(radius, size - radius, 2)
    mask = shape_mask(shape, size, cx, cy, radius, rng.uniform(0, 2 * np.pi))
    colour = np.clip(np.array(COLOURS[colour_name], np.float32) + rng.normal(0, 12, 3), 0, 255)
    surround = (image * mask[..., None]).sum((0, 1)) / max(mask.sum(), 1e-6)
    colour = surround + rng.uniform(*world.contrast) * (colour - surround)
    image = image * (1 - mask[..., None]) + colour * mask[..., None]

    image = image + rng.normal(0, world.noise, image.shape)
    result = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    blur = rng.uniform(*world.blur)
    if blur > 0:
        result = result.filter(ImageFilter.GaussianBlur(blur))
    return result, Scene(kind, float(grey.mean()), float(cx), float(cy), float(radius))


def render_image(world: WorldParams, seed: int, label: int, index: int) -> Image.Image:
    return render(label, image_rng(seed, label, index), world)
