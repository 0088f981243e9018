"""The avatar indexer: safe decoding, and hashes that keep copies near and distinct photos apart."""

from __future__ import annotations

import hashlib
import io
import itertools
import struct
import zlib
from functools import cache

import numpy as np
import pytest
from PIL import Image

from indexers.avatar import (
    CODE_BYTES,
    NEAR_COPY_BITS,
    VIEWS,
    avatar_distance,
    avatar_distances,
    avatar_similarity,
    decode_avatar,
    hash_image,
    index_codes,
    load_image,
    query_codes,
)
from models.errors import ImageError, PayloadTooLargeError
from tests.indexers.avatar_fixtures import (
    TRANSFORMS,
    encode,
    generated_photo,
    shared_images,
    square_avatar,
)
from tests.requirements import SHARED_DATA_ABSENT

LIMITS = {"max_bytes": 10 * 1024 * 1024, "max_pixels": 40_000_000}
IMAGES = shared_images()
needs_shared = pytest.mark.skipif(IMAGES is None, reason=f"{SHARED_DATA_ABSENT}: no images")

# Same-picture groups among faces/: the letterboxed sizes and crops of one portrait, and one
# photo saved twice. Every other file is a distinct photo.
SAME_PICTURE = {
    "obama.jpg": "obama",
    "obama-240p.jpg": "obama",
    "obama-480p.jpg": "obama",
    "obama-720p.jpg": "obama",
    "obama-1080p.jpg": "obama",
    "obama_partial_face.jpg": "obama",
    "obama_partial_face2.jpg": "obama",
    "obama_small.jpg": "obama",
    "32bit.png": "obama2",
    "obama2.jpg": "obama2",
}
GENERATED_SEEDS = range(8)
DISTINCT_GENERATED_SEEDS = range(100, 120)


def digest(data: bytes) -> np.ndarray:
    return decode_avatar(data, **LIMITS).hashes


def avatar_hash(image: Image.Image) -> np.ndarray:
    """Hash an image the way it reaches us: re-encoded as a JPEG upload."""
    return digest(encode(image.convert("RGB"), quality=85))


@cache
def generated_avatar(seed: int) -> Image.Image:
    return square_avatar(generated_photo(seed))


@cache
def real_photos() -> dict[str, Image.Image]:
    assert IMAGES is not None
    files = sorted((IMAGES / "objects").glob("*")) + sorted((IMAGES / "faces").glob("*"))
    return {path.name: Image.open(path).convert("RGB") for path in files}


def real_avatars(limit: int | None = None) -> list[Image.Image]:
    photos = [image for name, image in real_photos().items() if name not in SAME_PICTURE]
    return [square_avatar(image) for image in photos[:limit]]


def worst_distance(originals: list[Image.Image], transform_name: str) -> int:
    transform = TRANSFORMS[transform_name]
    return max(
        avatar_distance(avatar_hash(transform(image)), avatar_hash(image)) for image in originals
    )


# --- invariance -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_generated_copy_stays_near(name: str) -> None:
    originals = [generated_avatar(seed) for seed in GENERATED_SEEDS]
    assert worst_distance(originals, name) <= NEAR_COPY_BITS


@needs_shared
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_real_copy_stays_near(name: str) -> None:
    assert worst_distance(real_avatars(limit=8), name) <= NEAR_COPY_BITS


def test_copy_found_both_ways_and_with_a_flip() -> None:
    original = avatar_hash(generated_avatar(0))
    copy = avatar_hash(TRANSFORMS["crop_left_10"](TRANSFORMS["hflip"](generated_avatar(0))))
    assert avatar_distance(original, copy) <= NEAR_COPY_BITS
    assert avatar_distance(copy, original) <= NEAR_COPY_BITS


# --- separation -------------------------------------------------------------------------------


def closest_distinct_pair(hashes: list[np.ndarray]) -> int:
    return min(avatar_distance(a, b) for a, b in itertools.permutations(hashes, 2))


def test_distinct_generated_images_stay_apart() -> None:
    hashes = [avatar_hash(generated_avatar(seed)) for seed in DISTINCT_GENERATED_SEEDS]
    assert closest_distinct_pair(hashes) > NEAR_COPY_BITS


@needs_shared
def test_distinct_real_photos_stay_apart() -> None:
    named = {name: avatar_hash(square_avatar(image)) for name, image in real_photos().items()}
    distances = [
        avatar_distance(named[a], named[b])
        for a, b in itertools.permutations(named, 2)
        if SAME_PICTURE.get(a, a) != SAME_PICTURE.get(b, b)
    ]
    assert min(distances) > NEAR_COPY_BITS


@needs_shared
def test_letterboxed_sizes_of_one_portrait_match() -> None:
    assert IMAGES is not None
    original = digest((IMAGES / "faces" / "obama.jpg").read_bytes())
    for name in ("obama-240p.jpg", "obama-480p.jpg", "obama-720p.jpg", "obama-1080p.jpg"):
        assert avatar_distance(digest((IMAGES / "faces" / name).read_bytes()), original) <= (
            NEAR_COPY_BITS
        ), name


@needs_shared
@pytest.mark.parametrize("kind", ["hflip", "resize", "gray"])
def test_provided_transformed_copies_match(kind: str) -> None:
    # The provided rotation copy is turned about 20 degrees with the corners cut: beyond the
    # 5 degrees this hash promises, so it is not asserted here.
    assert IMAGES is not None
    folder = IMAGES / "transformed"
    original = digest((folder / "ukbench00120.jpg").read_bytes())
    copy = digest((folder / f"ukbench00120_{kind}.jpg").read_bytes())
    assert avatar_distance(copy, original) <= NEAR_COPY_BITS


# --- decoding ---------------------------------------------------------------------------------


@needs_shared
@pytest.mark.parametrize(
    "name",
    [
        "alpha_channel_image.png",
        "copyleft.tiff",
        "giphy.gif",
        "ukbench09380.bmp",
        "ukbench09380.jpeg",
        "ukbench09380.png",
        "ukbench09380.webp",
    ],
)
def test_every_provided_format_decodes(name: str) -> None:
    assert IMAGES is not None
    data = (IMAGES / "formats" / name).read_bytes()
    result = decode_avatar(data, **LIMITS)
    with Image.open(io.BytesIO(data)) as raw:
        assert (result.width, result.height) == raw.size
    assert result.hashes.shape == (2, VIEWS, CODE_BYTES)
    assert load_image(data, **LIMITS).mode == "RGB"


@needs_shared
@pytest.mark.parametrize("name", ["Iggy.1024.ppm", "baboon.pgm", "marbles.pbm"])
def test_provided_netpbm_files_are_refused_naming_the_accepted_formats(name: str) -> None:
    assert IMAGES is not None
    with pytest.raises(ImageError, match="JPEG, PNG, WEBP, GIF, BMP or TIFF") as caught:
        decode_avatar((IMAGES / "formats" / name).read_bytes(), **LIMITS)
    assert caught.value.field == "avatar"


@pytest.mark.parametrize("fmt", ["PPM", "ICO", "TGA", "PCX"])
def test_formats_the_readme_does_not_list_are_refused(fmt: str) -> None:
    """Pillow decodes these, but avatars are promised in six formats only."""
    with pytest.raises(ImageError, match="not an image in an accepted format"):
        decode_avatar(encode(generated_avatar(3).resize((64, 64)), fmt), **LIMITS)


@needs_shared
def test_file_named_svg_that_is_a_jpeg_decodes_by_content() -> None:
    assert IMAGES is not None
    result = decode_avatar((IMAGES / "formats" / "ukbench09380.svg").read_bytes(), **LIMITS)
    assert result.mime == "image/jpeg"


def test_transparency_is_flattened_onto_white() -> None:
    image = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    image.paste((0, 0, 255, 255), (16, 16, 48, 48))
    loaded = load_image(encode(image, "PNG"), **LIMITS)
    assert loaded.mode == "RGB"
    assert loaded.getpixel((2, 2)) == (255, 255, 255)
    assert loaded.getpixel((32, 32)) == (0, 0, 255)


@needs_shared
def test_provided_alpha_image_has_no_alpha_left() -> None:
    assert IMAGES is not None
    loaded = load_image((IMAGES / "formats" / "alpha_channel_image.png").read_bytes(), **LIMITS)
    assert loaded.mode == "RGB"


@needs_shared
def test_provided_corrupt_copy_is_rejected() -> None:
    assert IMAGES is not None
    with pytest.raises(ImageError) as caught:
        decode_avatar((IMAGES / "transformed" / "ukbench09268_corrupt.jpg").read_bytes(), **LIMITS)
    assert caught.value.field == "avatar"


def png_claiming(width: int, height: int) -> bytes:
    """A 1-bit PNG of a few hundred bytes whose header claims width x height.

    Its pixel data holds only the first rows: a decoder that waits for the header check never
    gets that far.
    """
    row = b"\x00" + bytes((width + 7) // 8)
    raw = zlib.compress(row * 16, 9)

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = png_claiming(8_000, 8_000)  # 64 Mpx: above the cap, below Pillow's own guard
    assert len(bomb) < 1_000
    with pytest.raises(ImageError, match="8000x8000"):
        decode_avatar(bomb, **LIMITS)


def test_pillow_bomb_guard_holds_under_a_generous_cap() -> None:
    with pytest.raises(ImageError, match="bomb"):
        decode_avatar(png_claiming(30_000, 30_000), max_bytes=10**8, max_pixels=10**12)
    # Below twice Pillow's limit it only warns; here that warning is an error too.
    with pytest.raises(ImageError, match="bomb"):
        decode_avatar(png_claiming(12_000, 12_000), max_bytes=10**8, max_pixels=10**12)


def truncated_png() -> bytes:
    data = encode(generated_avatar(0), "PNG")
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"hello, this is not an image\n" * 10, id="text"),
        pytest.param(
            b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
            b'<rect width="10" height="10"/></svg>',
            id="svg",
        ),
        pytest.param(truncated_png(), id="truncated_png"),
    ],
)
def test_non_images_raise_image_error(data: bytes) -> None:
    with pytest.raises(ImageError) as caught:
        decode_avatar(data, **LIMITS)
    assert caught.value.field == "avatar"
    assert caught.value.message


def test_oversized_bytes_raise_payload_too_large() -> None:
    data = encode(generated_avatar(0), quality=90)
    with pytest.raises(PayloadTooLargeError):
        decode_avatar(data, max_bytes=len(data) - 1, max_pixels=LIMITS["max_pixels"])
    with pytest.raises(PayloadTooLargeError):
        load_image(data, max_bytes=len(data) - 1, max_pixels=LIMITS["max_pixels"])


def test_exif_rotated_jpeg_hashes_as_upright() -> None:
    upright = generated_avatar(1).crop((0, 0, 400, 300))
    # Stored turned on its side, with orientation 6: "rotate 90 clockwise to display".
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = decode_avatar(encode(stored, quality=95, exif=exif.tobytes()), **LIMITS)
    plain = decode_avatar(encode(upright, quality=95), **LIMITS)
    assert (rotated.width, rotated.height) == (400, 300)
    assert avatar_distance(rotated.hashes, plain.hashes) <= 2
    # Ignoring the tag would hash a different picture: the test can tell.
    assert avatar_distance(hash_image(stored), plain.hashes) > NEAR_COPY_BITS


def test_digest_records_exact_bytes_format_and_size() -> None:
    data = encode(generated_avatar(2).resize((400, 320)), quality=80)
    result = decode_avatar(data, **LIMITS)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.mime == "image/jpeg"
    assert (result.width, result.height) == (400, 320)
    assert result.hashes.dtype == np.uint8


def test_large_jpeg_decodes_reduced_but_full_size_on_request() -> None:
    data = encode(generated_avatar(3).resize((1024, 1024)), quality=90)
    assert min(load_image(data, **LIMITS).size) < 1024
    assert load_image(data, **LIMITS, min_side=None).size == (1024, 1024)
    assert (decode_avatar(data, **LIMITS).width, decode_avatar(data, **LIMITS).height) == (
        1024,
        1024,
    )


# --- codes and distances ----------------------------------------------------------------------


def test_codes_shapes_and_distance_agree() -> None:
    a = avatar_hash(generated_avatar(4))
    b = avatar_hash(generated_avatar(5))
    assert index_codes(a).shape == (VIEWS, CODE_BYTES)
    assert query_codes(a).shape == (2 * VIEWS, CODE_BYTES)
    assert np.array_equal(index_codes(a), a[0])
    bits = np.unpackbits(query_codes(a)[:, np.newaxis] ^ index_codes(b)[np.newaxis], axis=-1)
    assert avatar_distance(a, b) == int(bits.sum(axis=-1).min())
    assert avatar_distance(a, a) == 0


def test_vectorised_distances_match_one_by_one() -> None:
    hashes = [avatar_hash(generated_avatar(seed)) for seed in GENERATED_SEEDS]
    query = hashes[0]
    stacked = np.stack(hashes)
    expected = [avatar_distance(query, h) for h in hashes]
    assert avatar_distances(query, stacked).tolist() == expected
    assert avatar_distances(query, stacked[:, 0]).tolist() == expected


def test_similarity_scale() -> None:
    assert avatar_similarity(0) == 1.0
    assert avatar_similarity(32) == 0.0
    assert avatar_similarity(60) == 0.0
    assert 0.5 < avatar_similarity(NEAR_COPY_BITS) < 1.0


def test_hash_is_deterministic_and_mirror_is_the_flip() -> None:
    image = generated_avatar(6)
    assert np.array_equal(hash_image(image), hash_image(image))
    flipped = hash_image(TRANSFORMS["hflip"](image))
    assert avatar_distance(flipped, hash_image(image)) <= 2
