"""The whole-picture view of the avatar hash is the standard pHash (`imagehash.phash`), bit for
bit: its codes can be compared with any other pHash of the same picture, and the benchmarks that
set clonefinder beside a pHash compare the extra views, not a different hash."""

from __future__ import annotations

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageOps

from indexers.avatar import hash_image
from tests.images import photo

WHOLE_VIEW = 0
AS_IS, MIRRORED = 0, 1


def _phash_code(image: Image.Image) -> np.ndarray:
    """imagehash's 8x8 bits, row by row, packed as the avatar index packs its codes."""
    return np.packbits(imagehash.phash(image).hash.flatten())


# Photos of several sizes and shapes below 512 pixels a side: larger ones are first reduced by a
# whole factor for speed, which pHash does not do.
@pytest.mark.parametrize(
    ("seed", "size"),
    [(1, (400, 400)), (7, (200, 200)), (23, (64, 64)), (42, (300, 200)), (99, (150, 400))],
)
def test_the_whole_view_is_imagehash_phash(seed: int, size: tuple[int, int]) -> None:
    image = photo(seed, size=400).resize(size)
    hashes = hash_image(image)
    assert np.array_equal(hashes[AS_IS, WHOLE_VIEW], _phash_code(image))
    assert np.array_equal(hashes[MIRRORED, WHOLE_VIEW], _phash_code(ImageOps.mirror(image)))


def test_different_photos_give_different_codes() -> None:
    # Guards the comparison above: equal codes must not come from both sides being constant.
    codes = {hash_image(photo(seed))[AS_IS, WHOLE_VIEW].tobytes() for seed in range(5)}
    assert len(codes) == 5
