"""Images the tests make themselves, so the suite means something without shared data."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image, ImageDraw


def photo(seed: int, *, size: int = 400) -> Image.Image:
    """A distinct photo-like picture: a smooth colour field with a few shapes, seeded."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(5, 5, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = (int(v) for v in rng.integers(0, size - 40, size=2))
        x1, y1 = x0 + int(rng.integers(30, size // 2)), y0 + int(rng.integers(30, size // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
    return image


def jpeg_bytes(image: Image.Image, *, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
