"""Generated profiles for speed benchmarks: varied names, handles and bios; some avatars."""

from __future__ import annotations

import base64
import io
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image

SYLLABLES = [
    "ka",
    "ri",
    "to",
    "ma",
    "ne",
    "lo",
    "sa",
    "vi",
    "an",
    "el",
    "mar",
    "co",
    "li",
    "na",
    "ju",
    "st",
    "en",
    "be",
    "ra",
    "do",
    "mi",
    "ch",
    "ol",
    "fa",
    "gi",
    "ha",
    "is",
    "ta",
    "ro",
    "su",
    "yu",
    "ze",
    "ph",
    "th",
    "ia",
    "ou",
    "er",
    "al",
    "ke",
    "bo",
    "pe",
    "wi",
    "lu",
    "ny",
]
WORDS = [
    "coffee",
    "travel",
    "music",
    "photography",
    "runner",
    "dad",
    "mom",
    "teacher",
    "engineer",
    "startup",
    "founder",
    "design",
    "football",
    "fan",
    "writer",
    "reader",
    "art",
    "film",
    "food",
    "lover",
    "nature",
    "hiking",
    "yoga",
    "developer",
    "student",
    "life",
    "dreamer",
    "books",
    "science",
    "politics",
    "news",
    "marketing",
    "family",
    "gamer",
    "cats",
    "dogs",
    "tech",
    "crypto",
    "fashion",
    "beauty",
    "fitness",
    "health",
    "coach",
    "speaker",
    "author",
    "podcast",
    "host",
    "journalist",
    "lawyer",
    "doctor",
    "nurse",
    "chef",
    "baker",
    "painter",
    "singer",
    "guitar",
    "piano",
    "dance",
    "theatre",
    "history",
    "math",
    "physics",
    "biology",
    "travel",
]


def _name(rng: random.Random) -> str:
    def word() -> str:
        return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()

    return f"{word()} {word()}"


def _avatar(rng: random.Random, size: int) -> str:
    """A small distinct JPEG: a random smooth colour field, base64."""
    np_rng = np.random.default_rng(rng.getrandbits(32))
    coarse = np_rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def generated_profiles(
    count: int, *, seed: int = 1, avatar_share: float = 0.3, avatar_size: int = 96
) -> Iterator[dict[str, Any]]:
    """`count` distinct profiles; `avatar_share` of them carry a generated avatar."""
    rng = random.Random(seed)
    for i in range(count):
        name = _name(rng)
        handle = f"{name.replace(' ', '_').lower()}{i}"
        record: dict[str, Any] = {
            "platform": rng.choice(("twitter", "twitter", "instagram")),
            "handle": handle,
            "display_name": name,
            "bio": " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))),
            "followers_count": rng.randint(0, 50_000),
            "created_at": f"20{rng.randint(8, 24):02d}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
        }
        if rng.random() < avatar_share:
            record["avatar_base64"] = _avatar(rng, avatar_size)
        yield record
