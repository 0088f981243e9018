"""Seeded, visually distinct generated "photos" and platform default avatars.

The shared data holds about 40 real photos, far too few for a corpus of thousands of accounts,
so most avatars are generated here. Every image is a pure function of its seed: the same seed
gives the same pixels on every machine, and two different seeds give images whose layouts
differ (each draws its own background, colours and foreground), so unrelated accounts never
share an avatar by accident. The `face` style draws simple head-and-shoulders compositions:
distinct images that still look alike, the hard negatives for avatar matching.

Default avatars are the opposite on purpose: fixed images (a platform's silhouette, an egg, a
plain colour, a grey person icon) that many unrelated accounts share.
"""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

STYLES: tuple[str, ...] = ("field", "blobs", "shapes", "gradient", "texture", "face")
DEFAULT_AVATARS: tuple[str, ...] = ("silhouette", "egg", "plain", "person_grey")

# Drawing at half size and upscaling keeps generation fast; the images are smooth anyway.
_WORK = 200


def _colour(rng: np.random.Generator, *, sat: tuple[float, float] = (0.3, 0.9)) -> tuple[int, ...]:
    hue = float(rng.random())
    light = float(rng.uniform(0.25, 0.8))
    saturation = float(rng.uniform(*sat))
    r, g, b = colorsys.hls_to_rgb(hue, light, saturation)
    return int(r * 255), int(g * 255), int(b * 255)


def _field(rng: np.random.Generator, n: int) -> Image.Image:
    """A smooth random colour field: a tiny random grid upsampled bicubically."""
    cells = int(rng.integers(2, 6))
    grid = rng.integers(0, 256, size=(cells, cells, 3), dtype=np.uint8)
    return Image.fromarray(grid, "RGB").resize((n, n), Image.Resampling.BICUBIC)


def _gradient(rng: np.random.Generator, n: int) -> Image.Image:
    angle = float(rng.uniform(0, 2 * np.pi))
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    t = np.cos(angle) * xx + np.sin(angle) * yy
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    stops = np.array([_colour(rng) for _ in range(int(rng.integers(2, 4)))], dtype=np.float32)
    pos = t * (len(stops) - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, len(stops) - 2)
    frac = (pos - lo)[..., None]
    arr = stops[lo] * (1 - frac) + stops[lo + 1] * frac
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def _texture(rng: np.random.Generator, n: int) -> Image.Image:
    """A noise texture at a random scale, blurred so that JPEG stays small."""
    scale = int(rng.integers(6, 24))
    noise = rng.integers(0, 256, size=(n // scale + 1, n // scale + 1, 3), dtype=np.uint8)
    base = Image.fromarray(noise, "RGB").resize((n, n), Image.Resampling.BILINEAR)
    tint = Image.new("RGB", (n, n), _colour(rng))
    return Image.blend(base, tint, float(rng.uniform(0.2, 0.6))).filter(
        ImageFilter.GaussianBlur(1.0)
    )


def _background(rng: np.random.Generator, n: int) -> Image.Image:
    kind = int(rng.integers(0, 4))
    if kind == 0:
        return _field(rng, n)
    if kind == 1:
        return _gradient(rng, n)
    if kind == 2:
        return _texture(rng, n)
    return Image.new("RGB", (n, n), _colour(rng, sat=(0.05, 0.5)))


def _blobs(img: Image.Image, rng: np.random.Generator) -> None:
    n = img.width
    layer = Image.new("RGB", (n, n))
    mask = Image.new("L", (n, n), 0)
    draw, mdraw = ImageDraw.Draw(layer), ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(3, 8))):
        cx, cy = rng.uniform(0, n, 2)
        rx, ry = rng.uniform(n * 0.08, n * 0.35, 2)
        box = (cx - rx, cy - ry, cx + rx, cy + ry)
        draw.ellipse(box, fill=_colour(rng))
        mdraw.ellipse(box, fill=int(rng.integers(160, 256)))
    blur = float(rng.uniform(2, 8))
    img.paste(
        layer.filter(ImageFilter.GaussianBlur(blur)),
        (0, 0),
        mask.filter(ImageFilter.GaussianBlur(blur)),
    )


def _shapes(img: Image.Image, rng: np.random.Generator) -> None:
    n = img.width
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(4, 10))):
        kind = int(rng.integers(0, 4))
        x0, y0 = (float(v) for v in rng.uniform(-0.1 * n, 0.9 * n, 2))
        w, h = (float(v) for v in rng.uniform(0.1 * n, 0.5 * n, 2))
        fill = _colour(rng)
        if kind == 0:
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=fill)
        elif kind == 1:
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=fill)
        elif kind == 2:
            pts = [(float(a), float(b)) for a, b in rng.uniform(-0.1 * n, 1.1 * n, (3, 2))]
            draw.polygon(pts, fill=fill)
        else:
            draw.line((x0, y0, x0 + w, y0 + h), fill=fill, width=int(rng.integers(3, 12)))


def _face(img: Image.Image, rng: np.random.Generator) -> None:
    """A head-and-shoulders composition: alike in layout, distinct in detail."""
    n = img.width
    draw = ImageDraw.Draw(img)
    cx = n * float(rng.uniform(0.35, 0.65))
    cy = n * float(rng.uniform(0.35, 0.5))
    hw = n * float(rng.uniform(0.14, 0.24))
    hh = hw * float(rng.uniform(1.15, 1.45))
    skin_l = float(rng.uniform(0.25, 0.8))
    r, g, b = colorsys.hls_to_rgb(
        float(rng.uniform(0.03, 0.1)), skin_l, float(rng.uniform(0.3, 0.6))
    )
    skin = (int(r * 255), int(g * 255), int(b * 255))
    shirt = _colour(rng)
    draw.ellipse((cx - hw * 2.3, cy + hh * 0.8, cx + hw * 2.3, cy + hh * 3.5), fill=shirt)
    draw.rectangle((cx - hw * 0.35, cy + hh * 0.6, cx + hw * 0.35, cy + hh * 1.1), fill=skin)
    hair = _colour(rng, sat=(0.0, 0.5))
    hair_kind = int(rng.integers(0, 3))
    if hair_kind == 0:
        draw.ellipse((cx - hw * 1.1, cy - hh * 1.15, cx + hw * 1.1, cy + hh * 0.3), fill=hair)
    elif hair_kind == 1:
        draw.ellipse((cx - hw * 1.3, cy - hh * 1.1, cx + hw * 1.3, cy + hh * 1.2), fill=hair)
    draw.ellipse((cx - hw, cy - hh, cx + hw, cy + hh), fill=skin)
    eye_y = cy - hh * float(rng.uniform(0.05, 0.25))
    eye_dx = hw * float(rng.uniform(0.3, 0.5))
    eye_r = hw * float(rng.uniform(0.08, 0.15))
    eye = _colour(rng, sat=(0.0, 0.6))
    for sx in (-1, 1):
        ex = cx + sx * eye_dx
        draw.ellipse((ex - eye_r, eye_y - eye_r, ex + eye_r, eye_y + eye_r), fill=eye)
    mouth_y = cy + hh * float(rng.uniform(0.35, 0.55))
    mw = hw * float(rng.uniform(0.25, 0.5))
    draw.arc(
        (cx - mw, mouth_y - mw * 0.5, cx + mw, mouth_y + mw * 0.5),
        10,
        170,
        fill=(120, 40, 40),
        width=max(2, int(hw * 0.06)),
    )
    if rng.random() < 0.4:
        gl = hw * 0.2
        for sx in (-1, 1):
            ex = cx + sx * eye_dx
            draw.ellipse((ex - gl, eye_y - gl, ex + gl, eye_y + gl), outline=(20, 20, 20), width=2)


def generate_image(seed: int, *, size: int = 400, style: str | None = None) -> Image.Image:
    """A distinct RGB square for `seed`: the same seed always gives the same image.

    `style` picks the foreground (one of STYLES); by default the seed picks it.
    """
    rng = np.random.default_rng([0x5EED, seed])
    chosen = style if style is not None else STYLES[int(rng.integers(0, len(STYLES)))]
    if chosen not in STYLES:
        raise ValueError(f"unknown style {chosen!r}; expected one of {STYLES}")
    n = _WORK
    if chosen == "field":
        img = _field(rng, n)
        _blobs(img, rng)
    elif chosen == "gradient":
        img = _gradient(rng, n)
        _shapes(img, rng)
    elif chosen == "texture":
        img = _texture(rng, n)
        _blobs(img, rng)
    else:
        img = _background(rng, n)
        if chosen == "blobs":
            _blobs(img, rng)
        elif chosen == "shapes":
            _shapes(img, rng)
        else:
            _face(img, rng)
    return img.resize((size, size), Image.Resampling.BICUBIC)


def default_avatar(name: str, *, size: int = 400) -> Image.Image:
    """One of the fixed platform default avatars (see DEFAULT_AVATARS), shared by many accounts."""
    if name not in DEFAULT_AVATARS:
        raise ValueError(f"unknown default avatar {name!r}; expected one of {DEFAULT_AVATARS}")
    n = size
    if name == "plain":
        return Image.new("RGB", (n, n), (225, 232, 237))
    if name == "egg":
        img = Image.new("RGB", (n, n), (0, 132, 180))
        draw = ImageDraw.Draw(img)
        draw.ellipse((n * 0.3, n * 0.2, n * 0.7, n * 0.8), fill=(255, 255, 255))
        return img
    background = (204, 214, 221) if name == "silhouette" else (239, 239, 239)
    figure = (245, 248, 250) if name == "silhouette" else (199, 199, 199)
    img = Image.new("RGB", (n, n), background)
    draw = ImageDraw.Draw(img)
    draw.ellipse((n * 0.32, n * 0.18, n * 0.68, n * 0.54), fill=figure)
    draw.ellipse((n * 0.14, n * 0.6, n * 0.86, n * 1.2), fill=figure)
    return img
