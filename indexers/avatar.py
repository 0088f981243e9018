"""Avatar signal: safe image decoding and multi-view perceptual hashes.

A clone's avatar is the original re-encoded, resized, cropped, flipped, framed, filtered, put in
a circle or captioned. One 64-bit DCT hash of the whole picture survives only some of that, so
each image is hashed in several nested centre views, on the image as is and mirrored, after a
uniform border (frame, letterbox) is trimmed away. Two avatars are as close as their closest
pair of views: a framed copy's full view meets the original's centre view, a circular crop or a
caption leaves the innermost view untouched.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image, ImageOps

from models.errors import ImageError, PayloadTooLargeError

logger = logging.getLogger(__name__)

__all__ = [
    "CODE_BYTES",
    "NEAR_COPY_BITS",
    "SAME_IMAGE_BITS",
    "VIEWS",
    "AvatarDigest",
    "aligned_distance",
    "avatar_distance",
    "avatar_distances",
    "avatar_similarity",
    "decode_avatar",
    "hash_image",
    "index_codes",
    "load_image",
    "paired_distances",
    "query_codes",
]

CODE_BYTES: Final = 8
"""One 64-bit hash per view, packed into bytes (FAISS binary indexes take packed uint8)."""

VIEW_BOXES: Final[tuple[tuple[float, float, float, float], ...]] = (
    (0.0, 0.0, 1.0, 1.0),
    (0.1, 0.1, 0.9, 0.9),
    (0.2, 0.2, 0.8, 0.8),
    (0.1, 0.0, 1.0, 1.0),
    (0.0, 0.0, 0.9, 1.0),
    (0.0, 0.1, 1.0, 1.0),
    (0.0, 0.0, 1.0, 0.9),
)
"""Each hashed view as (left, top, right, bottom) fractions of the trimmed image.

The whole image (re-encodes, resizes, filters, frames once trimmed); the centre 80% (a crop of
all sides, a frame painted over the edges); the centre 60% (a circular mask, a caption strip
over the lower sixth); and the image less 10% on each one side (a crop of one side).
"""

VIEWS: Final = len(VIEW_BOXES)

NEAR_COPY_BITS: Final = 12
"""Largest distance still taken for a copy of the same picture.

Measured (tests/indexers/test_avatar.py) on 25 real photos and generated images, each made a
400x400 JPEG: every listed clone transformation (JPEG q40, 48x48, crops to 10%, flips, frames,
colour filters, 5 degree rotations, circular masks, captions) stays at or below 12 bits; the
closest distinct real photos are 14 bits apart. Distances are even (each code has 32 ones).
"""

SAME_IMAGE_BITS: Final = 4
"""Largest distance taken for the very same picture, re-encoded or resized.

How common an avatar is (a default silhouette, a stock photo) is counted at this distance, not
at NEAR_COPY_BITS: the minimum over many view pairs brings some distinct photos within 12 bits,
and those must not make a rare photo look common.
"""

AGREEING_VIEWS_BITS: Final = 10
"""Largest distance, view for view, at which two pictures agree as a whole (`aligned_distance`).

A copy of a whole picture (re-encoded, resized, filtered, slightly cropped) keeps its views in
step; two unrelated pictures that meet in one pair of views at the minimum do not. On photos
cut from real ones (`python -m bench.avatar_chance`), about two in three transformed copies
agree this closely, and about one in a hundred nearest strangers among 150,000 avatars.
"""

UNRELATED_BITS: Final = 32
"""Distance where similarity reaches 0: half the bits, what two unrelated pictures differ by."""

FIELD: Final = "avatar"

# Pillow format name -> MIME type; the allow-list of what we decode at all: the formats the
# README promises, those platforms and browsers serve. Anything else (PPM, ICO, PSD...) never
# reaches a decoder.
_FORMATS: Final[dict[str, str]] = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",  # camera JPEGs with extra frames open as MPO
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}

_DRAFT_SIDE: Final = 128
"""JPEGs decode at the smallest scale that keeps both sides at least this big."""

_WORK_SIDE: Final = 256
"""Images are reduced (by whole factors) until a side is no longer above twice this."""

_HASH_SIDE: Final = 32
_LOW: Final = 8

_TRIM_GRID: Final = 96
_TRIM_TOLERANCE: Final = 10.0
_TRIM_BORDER_SHARE: Final = 0.97
_TRIM_MIN_KEEP: Final = 0.4


def _dct_matrix(n: int, k: int) -> np.ndarray:
    """The first k rows of the orthonormal DCT-II basis of size n (scaling does not move bits)."""
    x = np.arange(n)
    rows = [np.cos(np.pi * (2 * x + 1) * u / (2 * n)) for u in range(k)]
    return np.asarray(rows, dtype=np.float64)


_DCT: Final = _dct_matrix(_HASH_SIDE, _LOW)
# A horizontal mirror flips the sign of every odd horizontal frequency of a DCT-II.
_MIRROR_SIGNS: Final = np.where(np.arange(_LOW) % 2 == 0, 1.0, -1.0)[np.newaxis, :]
_POPCOUNT: Final = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


@dataclass(frozen=True)
class AvatarDigest:
    """What clonefinder keeps of one avatar: the exact bytes' digest, the format and the hashes."""

    sha256: str
    mime: str
    width: int
    height: int
    hashes: np.ndarray  # uint8 (2, VIEWS, CODE_BYTES): [orientation, view, packed bits]


def decode_avatar(data: bytes, *, max_bytes: int, max_pixels: int) -> AvatarDigest:
    """Decode and hash one avatar; raise ImageError (or PayloadTooLargeError) for unusable input.

    `width` and `height` are the upright size of the stored image, before any reduced decoding.
    """
    image, mime, size = _decode(data, max_bytes=max_bytes, max_pixels=max_pixels)
    return AvatarDigest(
        sha256=hashlib.sha256(data).hexdigest(),
        mime=mime,
        width=size[0],
        height=size[1],
        hashes=hash_image(image),
    )


def load_image(
    data: bytes, *, max_bytes: int, max_pixels: int, min_side: int | None = _DRAFT_SIDE
) -> Image.Image:
    """Decode image bytes into an upright RGB image with any transparency flattened onto white.

    Caps the byte count and the pixel count (read from the header, before decoding), refuses
    decompression bombs and formats outside the allow-list, and wraps every decoder failure in
    ImageError. Large JPEGs decode at a reduced scale whose sides stay >= `min_side` (enough for
    hashing); pass None for full resolution.
    """
    image, _, _ = _decode(data, max_bytes=max_bytes, max_pixels=max_pixels, min_side=min_side)
    return image


def _decode(
    data: bytes, *, max_bytes: int, max_pixels: int, min_side: int | None = _DRAFT_SIDE
) -> tuple[Image.Image, str, tuple[int, int]]:
    if len(data) > max_bytes:
        raise PayloadTooLargeError(
            f"avatar image is {len(data)} bytes, above the limit of {max_bytes}",
            details=[{"field": FIELD, "bytes": len(data), "max_bytes": max_bytes}],
        )
    if not data:
        raise ImageError("avatar is empty: no image bytes", field=FIELD)
    try:
        with warnings.catch_warnings():
            # Pillow only warns below twice its bomb limit; a bomb is an error here, locally.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _decode_checked(data, max_pixels=max_pixels, min_side=min_side)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"avatar is a decompression bomb: {exc}", field=FIELD) from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageError(
            "avatar is not an image in an accepted format (JPEG, PNG, WEBP, GIF, BMP or TIFF)",
            field=FIELD,
        ) from exc
    except Exception as exc:  # any decoder failure: truncated, corrupt, unsupported variant
        raise ImageError(f"avatar image is corrupt or truncated: {exc}", field=FIELD) from exc


def _decode_checked(
    data: bytes, *, max_pixels: int, min_side: int | None
) -> tuple[Image.Image, str, tuple[int, int]]:
    # The JPEG plugin itself returns MPO files; MPO is no plugin of its own to ask for.
    image = Image.open(io.BytesIO(data), formats=[f for f in _FORMATS if f != "MPO"])
    fmt = image.format or ""
    if fmt not in _FORMATS:  # pragma: no cover - `formats=` already restricts the plugins
        raise ImageError(f"avatar format {fmt or 'unknown'} is not allowed", field=FIELD)
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError("avatar image has no pixels", field=FIELD)
    if width * height > max_pixels:
        raise ImageError(
            f"avatar image is {width}x{height} = {width * height} pixels, "
            f"above the limit of {max_pixels}",
            field=FIELD,
        )
    orientation = image.getexif().get(0x0112, 1)
    upright = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    if min_side is not None and fmt in ("JPEG", "MPO"):
        image.draft("RGB", (min_side, min_side))
    image.load()
    upright_image: Image.Image = ImageOps.exif_transpose(image) or image
    return _to_rgb(upright_image), _FORMATS[fmt], upright


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB with alpha flattened onto white, so a transparent avatar hashes as it is shown."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # High bit-depth grey: stretch to 8 bits instead of letting convert() clip at 255.
        values = np.asarray(image, dtype=np.float64)
        top = float(values.max()) or 1.0
        image = Image.fromarray(np.clip(values * (255.0 / top), 0, 255).astype(np.uint8), "L")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def hash_image(image: Image.Image) -> np.ndarray:
    """Hash an image: uint8 (2, VIEWS, CODE_BYTES), orientation 0 as is, 1 mirrored.

    Each view (VIEW_BOXES) is a crop of the border-trimmed grey image, squashed to 32x32 (so aspect
    changes do not matter), and hashed as the signs of its lowest 8x8 DCT frequencies against
    their median (pHash).
    """
    gray = _working_gray(image)
    left, top, right, bottom = _trim_box(gray)
    w, h = right - left, bottom - top
    views = np.stack(
        [
            np.asarray(
                gray.resize(
                    (_HASH_SIDE, _HASH_SIDE),
                    Image.Resampling.LANCZOS,
                    box=(left + fl * w, top + ft * h, left + fr * w, top + fb * h),
                ),
                dtype=np.float64,
            )
            for fl, ft, fr, fb in VIEW_BOXES
        ]
    )
    # All views' low-frequency DCT blocks in one product: (VIEWS, 8, 8).
    coeffs = np.einsum("ij,vjk,lk->vil", _DCT, views, _DCT, optimize=True)
    out = np.empty((2, VIEWS, CODE_BYTES), dtype=np.uint8)
    out[0] = _bits(coeffs.reshape(VIEWS, -1))
    out[1] = _bits((coeffs * _MIRROR_SIGNS).reshape(VIEWS, -1))
    return out


def _working_gray(image: Image.Image) -> Image.Image:
    gray = image.convert("L")
    factor = max(1, min(gray.size) // _WORK_SIDE)
    return gray.reduce(factor) if factor > 1 else gray


def _bits(coeffs: np.ndarray) -> np.ndarray:
    """One packed code per row: each coefficient above its row's median is a 1."""
    return np.packbits(coeffs > np.median(coeffs, axis=1, keepdims=True), axis=1)


def _trim_box(gray: Image.Image) -> tuple[float, float, float, float]:
    """The box inside a uniform frame or letterbox, or the whole image when there is none.

    The border colour comes from the four corners, which must agree; then whole rows and
    columns are peeled off each side while they are (almost) all that colour. Requiring whole
    uniform lines, not a bounding box of "different" pixels, keeps a circular mask, a rotated
    copy's corners or a photo's dark edge from trimming into the picture. A box that would keep
    too little is refused: then the "border" is more likely the picture itself.
    """
    width, height = gray.size
    whole = (0.0, 0.0, float(width), float(height))
    small = np.asarray(gray.resize((_TRIM_GRID, _TRIM_GRID), Image.Resampling.BOX), np.float64)
    patch = 2
    corners = np.array(
        [
            small[:patch, :patch].mean(),
            small[:patch, -patch:].mean(),
            small[-patch:, :patch].mean(),
            small[-patch:, -patch:].mean(),
        ]
    )
    if corners.max() - corners.min() > _TRIM_TOLERANCE / 2:
        return whole
    border = np.abs(small - corners.mean()) <= _TRIM_TOLERANCE
    row_border = border.mean(axis=1) >= _TRIM_BORDER_SHARE
    col_border = border.mean(axis=0) >= _TRIM_BORDER_SHARE
    top = _run_length(row_border)
    bottom = _TRIM_GRID - _run_length(row_border[::-1])
    left = _run_length(col_border)
    right = _TRIM_GRID - _run_length(col_border[::-1])
    if top == 0 and left == 0 and bottom == _TRIM_GRID and right == _TRIM_GRID:
        return whole
    keep_w, keep_h = (right - left) / _TRIM_GRID, (bottom - top) / _TRIM_GRID
    if min(keep_w, keep_h) < _TRIM_MIN_KEEP:
        return whole
    sx, sy = width / _TRIM_GRID, height / _TRIM_GRID
    return (left * sx, top * sy, right * sx, bottom * sy)


def _run_length(flags: np.ndarray) -> int:
    """How many leading entries are True."""
    misses = np.flatnonzero(~flags)
    return int(misses[0]) if misses.size else len(flags)


def index_codes(hashes: np.ndarray) -> np.ndarray:
    """The codes stored in the binary index: the unmirrored views, (VIEWS, CODE_BYTES)."""
    return np.ascontiguousarray(_check(hashes)[0])


def query_codes(hashes: np.ndarray) -> np.ndarray:
    """The codes a query searches with: both orientations, (2 * VIEWS, CODE_BYTES).

    Mirroring only the query side is enough: a flipped copy compared with its original's
    mirrored views is the same comparison.
    """
    return np.ascontiguousarray(_check(hashes).reshape(2 * VIEWS, CODE_BYTES))


def avatar_distance(query: np.ndarray, candidate: np.ndarray) -> int:
    """Smallest Hamming distance in bits between any view of the query (either orientation)
    and any unmirrored view of the candidate. `candidate` is (2, VIEWS, 8) or (VIEWS, 8)."""
    return int(avatar_distances(query, candidate[np.newaxis])[0])


def avatar_distances(query: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """`avatar_distance` for many candidates at once: (N, 2, VIEWS, 8) or (N, VIEWS, 8) -> (N,)."""
    q = query_codes(query)
    if candidates.ndim == 4:
        candidates = candidates[:, 0]
    if candidates.ndim != 3 or candidates.shape[1:] != (VIEWS, CODE_BYTES):
        raise ValueError(f"candidates must be (N, 2, {VIEWS}, 8) or (N, {VIEWS}, 8)")
    xor = np.bitwise_xor(q[np.newaxis, :, np.newaxis, :], candidates[:, np.newaxis, :, :])
    bits = _POPCOUNT[xor].sum(axis=-1, dtype=np.int64)
    return bits.reshape(len(candidates), -1).min(axis=1)


def aligned_distance(query: np.ndarray, candidate: np.ndarray) -> int:
    """How far apart two pictures are as wholes: the median, over views, of the distance
    between each view and the *same* view of the other picture, in the better orientation.

    `avatar_distance` takes the closest pair of any views, which is what finds a cropped,
    framed or captioned copy, but over 98 pairs two unrelated pictures often meet in one by
    chance. A copy of the whole picture agrees view for view too."""
    q = _check(query)
    c = candidate[0] if candidate.ndim == 3 else candidate
    per_view = _POPCOUNT[np.bitwise_xor(q, c[np.newaxis])].sum(axis=-1, dtype=np.int64)
    return int(np.median(per_view, axis=1).min())


def paired_distances(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """`avatar_distance` of each pair (queries[k], candidates[k]): both (P, 2, VIEWS, 8) -> (P,).

    For screening many pairs of many queries at once; each 64-bit code is one machine word.
    """
    if not len(queries):
        return np.zeros(0, dtype=np.int64)
    q = np.ascontiguousarray(queries).reshape(len(queries), 2 * VIEWS, CODE_BYTES)
    c = np.ascontiguousarray(candidates[:, 0])
    q_words, c_words = q.view(np.uint64)[..., 0], c.view(np.uint64)[..., 0]
    bits = np.bitwise_count(q_words[:, :, np.newaxis] ^ c_words[:, np.newaxis, :])
    return bits.reshape(len(q), -1).min(axis=1).astype(np.int64)


def avatar_similarity(bits: int) -> float:
    """Map a distance to [0, 1]: 1 for identical hashes, 0 at or beyond unrelated (32 bits)."""
    return max(0.0, 1.0 - bits / UNRELATED_BITS)


def _check(hashes: np.ndarray) -> np.ndarray:
    if hashes.shape != (2, VIEWS, CODE_BYTES) or hashes.dtype != np.uint8:
        raise ValueError(f"avatar hashes must be uint8 (2, {VIEWS}, {CODE_BYTES})")
    return hashes
