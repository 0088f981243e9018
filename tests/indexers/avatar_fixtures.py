"""Test helpers for the avatar indexer: what clones do to an avatar, and generated photos.

The generated "photos" (smooth colour fields with blobs and shapes, seeded) let the invariance
tests mean something where the shared real images are absent.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

Transform = Callable[[Image.Image], Image.Image]


def shared_images() -> Path | None:
    """The shared real images folder, or None where it is absent (a fresh clone)."""
    env = os.environ.get("CLONEFINDER_SHARED_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    folder = root / "images"
    return folder if folder.is_dir() else None


def encode(image: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def generated_photo(seed: int, size: int = 400) -> Image.Image:
    """A seeded stand-in for a photo: a smooth colour field, soft blobs, shapes and texture."""
    rng = np.random.default_rng(seed)
    # Smooth parts are drawn on a coarse grid and scaled up: the same look, far less work.
    coarse = 100
    yy, xx = np.mgrid[0:coarse, 0:coarse] / coarse
    field = np.zeros((coarse, coarse, 3))
    for channel in range(3):
        for _ in range(4):
            fx, fy = rng.uniform(0.3, 2.5, size=2)
            phase = rng.uniform(0, 2 * np.pi)
            field[..., channel] += rng.uniform(0.3, 1.0) * np.cos(
                2 * np.pi * (fx * xx + fy * yy) + phase
            )
    field = (field - field.min()) / (np.ptp(field) + 1e-9)
    base = rng.uniform(0.2, 0.8, size=3)
    pixels = 255 * np.clip(0.5 * field + 0.5 * base, 0, 1)
    for _ in range(int(rng.integers(3, 7))):  # soft blobs
        cx, cy = rng.uniform(0.1, 0.9, size=2)
        radius = rng.uniform(0.08, 0.3)
        weight = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius**2))[..., None]
        pixels = pixels * (1 - weight) + weight * rng.uniform(0, 255, size=3)
    image = Image.fromarray(pixels.astype(np.uint8), "RGB").resize(
        (size, size), Image.Resampling.BICUBIC
    )
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 8))):  # hard-edged shapes
        x0, y0 = rng.uniform(0, size * 0.8, size=2)
        w, h = rng.uniform(size * 0.08, size * 0.4, size=2)
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        box = (x0, y0, min(size, x0 + w), min(size, y0 + h))
        if rng.random() < 0.5:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)
    noise = rng.normal(0, 6, size=(size, size, 3)).astype(np.float32)
    textured = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(textured, "RGB").filter(ImageFilter.GaussianBlur(1.0))


def square_avatar(image: Image.Image, size: int = 400) -> Image.Image:
    """What a platform stores: a centre square, 400x400, re-encoded as JPEG."""
    square = ImageOps.fit(image.convert("RGB"), (size, size), Image.Resampling.LANCZOS)
    return Image.open(io.BytesIO(encode(square, quality=90))).convert("RGB")


def _jpeg(quality: int) -> Transform:
    def apply(image: Image.Image) -> Image.Image:
        return Image.open(io.BytesIO(encode(image, quality=quality))).convert("RGB")

    return apply


def _crop(left: float, top: float, right: float, bottom: float) -> Transform:
    def apply(image: Image.Image) -> Image.Image:
        w, h = image.size
        return image.crop(
            (round(left * w), round(top * h), round(w - right * w), round(h - bottom * h))
        )

    return apply


def _framed(width: float, colour: tuple[int, int, int]) -> Transform:
    """A solid border around the shrunk image, same outer size."""

    def apply(image: Image.Image) -> Image.Image:
        w, h = image.size
        bw, bh = round(width * w), round(width * h)
        inner = image.resize((w - 2 * bw, h - 2 * bh), Image.Resampling.LANCZOS)
        out = Image.new("RGB", image.size, colour)
        out.paste(inner, (bw, bh))
        return out

    return apply


def _painted_frame(width: float, colour: tuple[int, int, int]) -> Transform:
    """A border painted over the image's own edges."""

    def apply(image: Image.Image) -> Image.Image:
        w, h = image.size
        out = image.copy()
        ImageDraw.Draw(out).rectangle((0, 0, w - 1, h - 1), outline=colour, width=round(width * w))
        return out

    return apply


def _enhance(kind: type[ImageEnhance._Enhance], factor: float) -> Transform:
    def apply(image: Image.Image) -> Image.Image:
        return kind(image).enhance(factor)  # type: ignore[call-arg]

    return apply


def _sepia(image: Image.Image) -> Image.Image:
    grey = ImageOps.grayscale(image)
    return ImageOps.colorize(grey, black=(40, 26, 13), white=(255, 240, 192))


def _grey(image: Image.Image) -> Image.Image:
    return image.convert("L").convert("RGB")


def _rotate(degrees: float, fill: tuple[int, int, int] | None) -> Transform:
    def apply(image: Image.Image) -> Image.Image:
        return image.rotate(
            degrees, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=fill
        )

    return apply


def _circle(background: tuple[int, int, int]) -> Transform:
    def apply(image: Image.Image) -> Image.Image:
        mask = Image.new("L", image.size, 0)
        ImageDraw.Draw(mask).ellipse((0, 0, image.width - 1, image.height - 1), fill=255)
        out = Image.new("RGB", image.size, background)
        out.paste(image, (0, 0), mask)
        return out

    return apply


def _caption(image: Image.Image) -> Image.Image:
    """A dark bar over the lower sixth with white text on it."""
    out = image.copy()
    w, h = out.size
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, h - h // 6, w, h), fill=(20, 20, 20))
    font = ImageFont.load_default(size=max(10, h // 12))
    draw.text((w // 20, h - h // 6 + h // 40), "OFFICIAL FAN PAGE", fill="white", font=font)
    return out


def _small(image: Image.Image) -> Image.Image:
    return image.resize((48, 48), Image.Resampling.LANCZOS)


def _hflip(image: Image.Image) -> Image.Image:
    return ImageOps.mirror(image)


TRANSFORMS: dict[str, Transform] = {
    "jpeg_q40": _jpeg(40),
    "resize_48": _small,
    "crop_left_10": _crop(0.10, 0, 0, 0),
    "crop_top_10": _crop(0, 0.10, 0, 0),
    "crop_all_10": _crop(0.10, 0.10, 0.10, 0.10),
    "crop_all_5": _crop(0.05, 0.05, 0.05, 0.05),
    "hflip": _hflip,
    "frame_10_white": _framed(0.10, (255, 255, 255)),
    "frame_5_black": _framed(0.05, (0, 0, 0)),
    "painted_frame_10": _painted_frame(0.10, (255, 255, 255)),
    "painted_frame_5": _painted_frame(0.05, (200, 30, 30)),
    "grey": _grey,
    "sepia": _sepia,
    "brighter_30": _enhance(ImageEnhance.Brightness, 1.3),
    "darker_30": _enhance(ImageEnhance.Brightness, 0.7),
    "contrast_up_30": _enhance(ImageEnhance.Contrast, 1.3),
    "contrast_down_30": _enhance(ImageEnhance.Contrast, 0.7),
    "saturated": _enhance(ImageEnhance.Color, 1.8),
    "rotate_5": _rotate(5, None),
    "rotate_-5_filled": _rotate(-5, (255, 255, 255)),
    "circle_white": _circle((255, 255, 255)),
    "circle_black": _circle((0, 0, 0)),
    "caption": _caption,
}
