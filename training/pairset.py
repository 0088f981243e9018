"""The labelled corpus and pair set that train and measure the scoring model.

`build_corpus(split)` returns profile records (interface.md section 1, avatars as JPEG
`avatar_base64`) and labelled pairs: clones (an original and a copy that took some of its name,
handle, avatar and bio, transformed as impersonators do; see `training.transforms`) and hard
negatives (namesakes, accounts sharing a platform default avatar, bots sharing a template bio,
same first name, similar photos, random pairs). Everything is a pure function of the split and
the seed.

Sources: the real accounts of the Cresci 2015 study (`profiles/cresci2015-users.csv` in the
shared data folder) are the "real people", the shared photos (`images/objects`, `faces`,
`formats`) the real avatars, and `training.synthetic_images` the many generated ones. Where the
shared data folder is absent, people are generated from small built-in name and bio lists and
every avatar is generated, so the builder (and its tests) still work.

Train and test never share a source: real profiles go to a split by a stable hash of their
account id; real photos by a stable hash of their photo group (the file name's stem up to its
first digit or separator, so that `obama-720p.jpg` and `obama_small.jpg`, the same portrait,
land together); generated images use disjoint seed ranges per split; built-in names, bios, bot
templates and common names are split by a stable hash of the text. Split membership never
depends on the seed. Only the platform default avatars are the same in both splits, as on the
platforms themselves; rows of the CSV whose bio is shared with another row are dropped, so no
bio text sits in both splits.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import json
import logging
import math
import os
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from PIL import Image, ImageOps

from models.profile import identity_key
from training import transforms as tf
from training.synthetic_images import DEFAULT_AVATARS, STYLES, default_avatar, generate_image

logger = logging.getLogger(__name__)

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")
CopySide = Literal["query", "candidate", "unknown"]

CLONE_KINDS: tuple[str, ...] = (
    "clone/full_copy",
    "clone/name_avatar",
    "clone/name_bio",
    "clone/avatar_bio",
    "clone/lookalike_name",
    "clone/name_handle",
    "clone/photo_theft",
    "clone/photo_only",
    "clone/handle_squat",
    "clone/cross_platform",
    "clone/family",
    "clone/brand",
)
NEGATIVE_KINDS: tuple[str, ...] = (
    "neg/namesake",
    "neg/namesake_family",
    "neg/shared_default_avatar",
    "neg/stock_photo",
    "neg/same_bio_bot",
    "neg/same_first_name",
    "neg/similar_photo",
    "neg/random",
)
# Pairs whose truth no profile comparison can settle, kept out of training and of the precision
# figures and reported on their own: a person's own second account is a full copy by its owner
# (the owner marks it as theirs), and a declared fan or parody account copies openly.
SELF_DECLARED_KINDS: tuple[str, ...] = ("own/second_account", "declared/fan_parody")
# The label a clone kind must reach: a photo alone (no name, handle or bio of the victim's) is
# a lead for a person to review, never proof.
EXPECTED_LABEL: dict[str, str] = {"clone/photo_only": "possible_clone"}
# Recipe weights: most clones copy name and photo; name+handle-only copies are a minority and
# the hardest to catch (nothing but a name and a handle variant to go on).
_RECIPE_WEIGHTS: dict[str, float] = {
    "clone/full_copy": 0.17,
    "clone/name_avatar": 0.12,
    "clone/name_bio": 0.08,
    "clone/avatar_bio": 0.07,
    "clone/lookalike_name": 0.08,
    "clone/name_handle": 0.06,
    "clone/photo_theft": 0.10,
    "clone/photo_only": 0.06,
    "clone/handle_squat": 0.07,
    "clone/cross_platform": 0.07,
    "clone/brand": 0.12,
}
# Clone families (one victim, 2 to 30 copies) come on top of the recipes, as this share of
# all clone pairs.
FAMILY_SHARE = 0.12
MAX_FAMILY = 30
# Pairs per kind in a full-size split; `size=` scales them.
FULL_COUNTS: dict[str, int] = {
    "clone": 1600,
    "neg/namesake": 420,
    "neg/namesake_family": 200,
    "neg/shared_default_avatar": 360,
    "neg/stock_photo": 240,
    "own/second_account": 60,
    "declared/fan_parody": 60,
    "neg/same_bio_bot": 320,
    "neg/same_first_name": 260,
    "neg/similar_photo": 240,
    "neg/random": 600,
}
_MIN_COUNTS: dict[str, int] = {"clone": 60}
_MIN_NEGATIVES = 6
# Enough accounts per default avatar that its commonness shows at corpus level, at any size.
MIN_DEFAULT_SHARE = 50
_DEFAULT_WEIGHTS = (0.4, 0.25, 0.2, 0.15)
# Words people add to their own name when it is taken ("maria_garcia_art", "drmariagarcia").
NAMESAKE_HANDLE_WORDS = ("art", "music", "photo", "writes", "fit", "design", "travels", "dr",
                         "dev", "reads", "md", "cooks", "films", "law", "coach")  # fmt: skip

_SPLIT_SALT = "clonefinder-split-v1"
_IMAGE_SEED_BASE: dict[str, int] = {"train": 0, "test": 1_000_000_000, "validation": 2_000_000_000}
_IMAGE_SEEDS_PER_BUILD = 1_000_000
_NOW = datetime(2024, 12, 31, tzinfo=UTC)
_PHOTO_FOLDERS = ("objects", "faces", "formats")

# Built-in people for when the shared data is absent, and for bots and crowds; split by hash.
FIRST_NAMES: tuple[str, ...] = (
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
    "Charles", "Karen", "Marco", "Giulia", "Luca", "Francesca", "Matteo", "Chiara", "Alessandro",
    "Sara", "Andrea", "Martina", "Pierre", "Camille", "Louis", "Chloe", "Hugo", "Manon", "Lukas",
    "Anna", "Jonas", "Lea", "Felix", "Hannah", "Carlos", "Lucia", "Javier", "Elena", "Diego",
    "Carmen", "Pablo", "Sofia", "Ahmed", "Fatima", "Omar", "Aisha", "Yusuf", "Leila", "Wei",
    "Mei", "Hiroshi", "Yuki", "Ravi", "Priya", "Arjun", "Ananya", "Olga", "Dmitri", "Ivan",
    "Natalia", "Kwame", "Amara", "Emeka", "Zainab", "Liam", "Emma", "Noah", "Olivia", "Ethan",
    "Ava", "Mason", "Mia",
)  # fmt: skip
LAST_NAMES: tuple[str, ...] = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Anderson",
    "Taylor", "Thomas", "Moore", "Martin", "Jackson", "Thompson", "White", "Harris", "Clark",
    "Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci", "Marino",
    "Greco", "Bruno", "Gallo", "Dubois", "Moreau", "Laurent", "Lefebvre", "Muller", "Schmidt",
    "Schneider", "Fischer", "Weber", "Becker", "Garcia", "Martinez", "Rodriguez", "Lopez",
    "Gonzalez", "Perez", "Sanchez", "Ramirez", "Torres", "Flores", "Hassan", "Khan", "Ali",
    "Rahman", "Zhang", "Wang", "Li", "Chen", "Liu", "Tanaka", "Suzuki", "Sato", "Patel",
    "Sharma", "Singh", "Gupta", "Ivanov", "Petrov", "Smirnov", "Volkov", "Okafor", "Mensah",
    "Adeyemi", "Nwosu", "Kowalski", "Nowak", "Jensen", "Hansen", "Larsen", "Nielsen",
)  # fmt: skip
COMMON_NAMES: tuple[str, ...] = (
    "John Smith", "Maria Rossi", "David Lee", "Anna Muller", "Mohamed Ali", "Wei Zhang",
    "Maria Garcia", "James Brown", "Michael Johnson", "Sarah Wilson", "Juan Martinez",
    "Giuseppe Russo", "Laura Bianchi", "Chris Taylor", "Alex Kim", "Daniel Miller",
    "Emma Martin", "Marco Ferrari", "Ana Silva", "Robert Jones", "Raj Patel", "Kenji Sato",
    "Olga Ivanova", "Paul Martin", "Lisa Anderson", "Mark Davis", "Sophie Laurent",
    "Peter Schmidt", "Fatima Khan", "Carlos Lopez",
)  # fmt: skip
_BIO_ROLES: tuple[str, ...] = (
    "Software engineer", "Teacher", "Nurse", "Photographer", "Graphic designer", "Student",
    "Chef", "Journalist", "Marketing manager", "Architect", "Data scientist", "Musician",
    "Lawyer", "Doctor", "Entrepreneur", "Writer", "Product manager", "Barista", "Researcher",
    "Personal trainer", "Accountant", "Pharmacist", "Film maker", "Illustrator",
)  # fmt: skip
_BIO_INTERESTS: tuple[str, ...] = (
    "coffee lover", "runner", "cat person", "dog mom", "amateur cook", "football fan",
    "bookworm", "traveller", "gamer", "jazz addict", "hiker", "cyclist", "plant parent",
    "climber", "vinyl collector", "foodie", "yoga fan", "sci-fi nerd", "surfer", "chess player",
)  # fmt: skip
_BIO_PLACES: tuple[str, ...] = (
    "Milan", "Rome", "London", "Paris", "Berlin", "Madrid", "New York", "Chicago", "Austin",
    "Toronto", "Lagos", "Nairobi", "Mumbai", "Tokyo", "Seoul", "Sydney", "Lisbon", "Dublin",
    "Oslo", "Mexico City",
)  # fmt: skip
BOT_TEMPLATES: tuple[str, ...] = (
    "Follow me for more! #teamfollowback",
    "I follow back 100% #TFB #followback",
    "Love life, love music, follow me and I follow back",
    "Just a simple girl who loves shopping and selfies 💕",
    "Make money online from home! Link in bio 💰💰",
    "Crypto enthusiast | 100x gems daily 🚀 #bitcoin",
    "Living my best life ✨ DM for promo",
    "Fashion | Beauty | Lifestyle. Follow for follow",
    "Sports fan. Beer lover. Follow back guaranteed",
    "Best deals every day, check my link 👇",
    "Music is my life 🎶 #followtrain",
    "Dreamer. Believer. Achiever. #F4F",
    "Win an iPhone! Retweet and follow 📱",
    "Motivational quotes every day 💪 follow for daily inspiration",
    "Gamer | Streamer | follow for giveaways 🎮",
    "Travel addict ✈️ #wanderlust #followme",
    "Get 1000 followers fast, DM me",
    "Proud mom of 2. Coffee. Wine. Follow back!",
    "Single and ready to mingle 😘 follow me",
    "Nature lover 🌿 #instagood #follow4follow",
    "Business coach | Work from home | DM for info",
    "Foodie 🍕🍔 follow me for yummy pics",
    "God first 🙏 #blessed #teamfollowback",
    "Model 📸 | Bookings via DM",
)  # fmt: skip


@dataclass
class LabelledPair:
    """Two accounts and the truth about them: is one a copy of the other, and which."""

    query: tuple[str, str]
    candidate: tuple[str, str]
    is_clone: bool
    kind: str
    transforms: list[str]
    copy_side: CopySide


@dataclass
class ProfileSource:
    """Where a profile came from: for split hygiene checks and analysis, never for scoring."""

    person: str  # the real or generated person; a clone shares its original's
    role: str  # original, clone, namesake, common_name, crowd, bot, plain
    source_id: str | None = None  # the Cresci account id, for real people
    photo: str | None = None  # shared-data-relative path of a real photo
    image_seed: int | None = None  # seed of a generated image
    default_avatar: str | None = None
    avatar_category: str | None = None  # "face", "photo" or a synthetic style


@dataclass
class Corpus:
    """Profile records (interface.md section 1) and the labelled pairs between them."""

    profiles: list[dict[str, Any]]
    pairs: list[LabelledPair]
    sources: dict[tuple[str, str], ProfileSource] = field(default_factory=dict)


@dataclass
class _Person:
    key: str
    name: str
    handle: str
    bio: str
    created_at: datetime | None
    followers: int
    following: int
    posts: int
    location: str = ""
    url: str = ""
    source_id: str | None = None


@dataclass
class _Photo:
    path: str
    category: str
    jpeg: bytes


def _bucket(key: str) -> Split:
    """Half of all sources train, a fifth validate design choices, the rest are held out."""
    digest = hashlib.sha256(f"{_SPLIT_SALT}:{key}".encode()).digest()
    tenth = digest[0] % 10
    return "train" if tenth < 5 else "validation" if tenth < 7 else "test"


def _in_split(items: Iterable[str], split: Split) -> list[str]:
    return [item for item in items if _bucket(item) == split]


def photo_group(file_name: str) -> str:
    """The photo a file shows: alternative sizes and crops of one portrait share a group."""
    stem = Path(file_name).name.split(".")[0].lower()
    if stem.startswith("ukbench"):
        return re.match(r"ukbench\d*", stem).group(0)  # type: ignore[union-attr]
    letters = re.match(r"[a-z]+", stem)
    return letters.group(0) if letters else stem


def default_data_dir() -> Path:
    """The shared data folder: $CLONEFINDER_SHARED_DATA, else ../shared/data beside the repo."""
    env = os.environ.get("CLONEFINDER_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def _parse_created(text: str) -> datetime | None:
    try:
        return datetime.strptime(text.strip(), "%a %b %d %H:%M:%S %z %Y").astimezone(UTC)
    except ValueError:
        return None


def _int(text: str) -> int:
    try:
        return max(0, int(float(text)))
    except ValueError:
        return 0


def _load_real_people(data_dir: Path, split: Split) -> list[_Person] | None:
    path = data_dir / "profiles" / "cresci2015-users.csv"
    if not path.is_file():
        return None
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # A bio found on two rows (fake followers copy bios) would put one text in both splits.
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        bio = " ".join((row.get("description") or "").split()).casefold()
        if bio:
            counts[bio] += 1
    people = []
    for row in rows:
        bio_key = " ".join((row.get("description") or "").split()).casefold()
        if (bio_key and counts[bio_key] > 1) or not row.get("id") or not row.get("screen_name"):
            continue
        if _bucket(f"cresci:{row['id']}") != split:
            continue
        people.append(
            _Person(
                key=f"cresci:{row['id']}",
                name=(row.get("name") or "").strip(),
                handle=row["screen_name"].strip(),
                bio=(row.get("description") or "").strip(),
                created_at=_parse_created(row.get("created_at") or ""),
                followers=_int(row.get("followers_count") or "0"),
                following=_int(row.get("friends_count") or "0"),
                posts=_int(row.get("statuses_count") or "0"),
                location=(row.get("location") or "").strip(),
                url=(row.get("url") or "").strip(),
                source_id=row["id"],
            )
        )
    people.sort(key=lambda p: p.key)
    return people


def _square_jpeg(img: Image.Image) -> bytes:
    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA", "P"):
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, (0, 0), rgba)
        img = flat
    img = ImageOps.fit(img.convert("RGB"), (400, 400), Image.Resampling.LANCZOS)
    return tf.encode_jpeg(img, quality=85)


def _load_photos(data_dir: Path, split: Split) -> list[_Photo]:
    """One representative file per photo group of this split, as a 400x400 JPEG."""
    groups: dict[str, tuple[str, str, Path]] = {}
    for folder in _PHOTO_FOLDERS:
        directory = data_dir / "images" / folder
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            group = photo_group(path.name)
            if _bucket(f"photo:{group}") != split or group in groups:
                continue
            groups[group] = (f"images/{folder}/{path.name}", folder, path)
    photos = []
    for _group, (rel, folder, path) in sorted(groups.items()):
        try:
            with Image.open(path) as img:
                img.seek(0)
                jpeg = _square_jpeg(img)
        except Exception as exc:  # noqa: BLE001 - one unreadable photo must not stop the build
            logger.info("skipping photo %s: %s", rel, exc)
            continue
        photos.append(_Photo(rel, "face" if folder == "faces" else "photo", jpeg))
    return photos


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scaled_counts(size: int | None) -> dict[str, int]:
    if size is None:
        return dict(FULL_COUNTS)
    scale = size / sum(FULL_COUNTS.values())
    return {
        kind: max(_MIN_COUNTS.get(kind, _MIN_NEGATIVES), round(full * scale))
        for kind, full in FULL_COUNTS.items()
    }


class _Builder:
    """Accumulates profiles and pairs for one split; all randomness comes from one seeded rng."""

    def __init__(
        self,
        split: Split,
        seed: int,
        people: list[_Person] | None,
        photos: list[_Photo],
    ) -> None:
        self.split = split
        self.rng = random.Random(f"{split}/{seed}")
        self.seed_base = _IMAGE_SEED_BASE[split] + (seed % 1000) * _IMAGE_SEEDS_PER_BUILD
        self.image_counter = 0
        real = list(people or [])
        self.rng.shuffle(real)
        self.real_people = real
        self.photos = list(photos)
        self.rng.shuffle(self.photos)
        self.first_names = _in_split(FIRST_NAMES, split)
        self.last_names = _in_split(LAST_NAMES, split)
        self.common_names = _in_split(COMMON_NAMES, split)
        self.bot_templates = _in_split(BOT_TEMPLATES, split)
        self.bio_roles = _in_split(_BIO_ROLES, split)
        self.bio_interests = _in_split(_BIO_INTERESTS, split)
        self.bio_places = _in_split(_BIO_PLACES, split)
        self.generated = 0
        self.profiles: list[dict[str, Any]] = []
        self.sources: dict[tuple[str, str], ProfileSource] = {}
        self.by_key: dict[tuple[str, str], dict[str, Any]] = {}
        self.avatar_jpeg: dict[tuple[str, str], bytes] = {}
        self.pairs: list[LabelledPair] = []
        self.pair_keys: set[tuple[tuple[str, str], tuple[str, str]]] = set()
        self.seen: dict[str, set[str]] = defaultdict(set)
        self.default_b64 = {
            name: _b64(tf.encode_jpeg(default_avatar(name), quality=85)) for name in DEFAULT_AVATARS
        }

    # --- choices ------------------------------------------------------------------------

    def pick(self, category: str, options: Sequence[str], weights: Sequence[float]) -> str:
        """A weighted choice that first makes sure every option has come up once.

        This way even a small corpus exercises every transformation, while a full-size one keeps
        the realistic weights almost untouched.
        """
        unseen = [o for o in options if o not in self.seen[category]]
        choice = unseen[0] if unseen else self.rng.choices(list(options), list(weights))[0]
        self.seen[category].add(choice)
        return choice

    # --- people -------------------------------------------------------------------------

    def generated_name(self) -> str:
        first, last = self.rng.choice(self.first_names), self.rng.choice(self.last_names)
        if self.rng.random() < 0.15:
            return f"{first} {self.rng.choice('ABCDEFGHJKLMNPRSTW')}. {last}"
        return f"{first} {last}"

    def generated_bio(self) -> str:
        rng = self.rng
        parts = [rng.choice(self.bio_roles)]
        if rng.random() < 0.8:
            parts.append(rng.choice(self.bio_interests))
        if rng.random() < 0.6:
            parts.append(f"based in {rng.choice(self.bio_places)}")
        if rng.random() < 0.3:
            parts.append(f"{rng.choice(self.bio_interests)} since {rng.randint(1995, 2015)}")
        return rng.choice([" | ", ". ", ", "]).join(parts)

    def handle_from_name(self, name: str, *, platform: str) -> str:
        words = [re.sub(r"[^a-z0-9]", "", w.lower()) for w in name.split()]
        words = [w for w in words if w] or ["user"]
        first, last = words[0], words[-1]
        rng = self.rng
        style = rng.randrange(5)
        if style == 0:
            base = first + last
        elif style == 1:
            base = f"{first}_{last}"
        elif style == 2:
            base = first[0] + last
        elif style == 3:
            base = last + first[: rng.randint(1, 3)]
        else:
            base = f"{first}.{last}" if platform == "instagram" else first + last[:3]
        if rng.random() < 0.5:
            base += str(rng.randint(1, 999))
        return base[: tf.HANDLE_LIMITS.get(platform, 30)]

    def random_created(self, start: int = 2007, end: int = 2015) -> datetime:
        begin = datetime(start, 1, 1, tzinfo=UTC)
        span = (datetime(end, 12, 31, tzinfo=UTC) - begin).total_seconds()
        return begin + timedelta(seconds=int(self.rng.random() * span))

    def generated_person(self, name: str | None = None) -> _Person:
        self.generated += 1
        name = name or self.generated_name()
        return _Person(
            key=f"gen:{self.split}:{self.generated}",
            name=name,
            handle=self.handle_from_name(name, platform="twitter"),
            bio=self.generated_bio() if self.rng.random() < 0.85 else "",
            created_at=self.random_created(),
            followers=int(self.rng.lognormvariate(5, 1.5)),
            following=int(self.rng.lognormvariate(5.5, 1.0)),
            posts=int(self.rng.lognormvariate(6, 1.5)),
            location=self.rng.choice(self.bio_places) if self.rng.random() < 0.5 else "",
        )

    def take_person(self, accept: Callable[[_Person], bool] | None = None) -> _Person:
        """The next unused real person (meeting `accept`), else a generated one."""
        for i, person in enumerate(self.real_people):
            if accept is None or accept(person):
                return self.real_people.pop(i)
        return self.generated_person()

    # --- profiles -----------------------------------------------------------------------

    def unique_handle(self, platform: str, wanted: str) -> str:
        handle = wanted
        while identity_key(platform, handle) in self.sources:
            limit = tf.HANDLE_LIMITS.get(platform, 30)
            handle = _fit_digits(wanted, self.rng.randint(1, 9999), limit)
        return handle

    def next_image_seed(self) -> int:
        self.image_counter += 1
        if self.image_counter >= _IMAGE_SEEDS_PER_BUILD:
            raise RuntimeError("too many generated images for one build")
        return self.seed_base + self.image_counter

    def own_avatar(
        self, *, default_rate: float = 0.05, none_rate: float = 0.03, use_photo: bool = False
    ) -> tuple[bytes | None, ProfileSource]:
        """A fresh avatar for a new person: a real photo, a generated image, a default or none."""
        source = ProfileSource(person="", role="")
        draw = self.rng.random()
        if draw < none_rate:
            return None, source
        if draw < none_rate + default_rate:
            name = self.rng.choices(DEFAULT_AVATARS, _DEFAULT_WEIGHTS)[0]
            source.default_avatar = name
            return None, source
        if use_photo and self.photos:
            photo = self.photos.pop()
            source.photo, source.avatar_category = photo.path, photo.category
            return photo.jpeg, source
        style = "face" if self.rng.random() < 0.4 else self.rng.choice(STYLES)
        seed = self.next_image_seed()
        source.image_seed, source.avatar_category = seed, style
        return tf.encode_jpeg(generate_image(seed, style=style), quality=85), source

    def add_profile(
        self,
        person: _Person,
        *,
        platform: str,
        handle: str,
        name: str,
        bio: str,
        avatar: bytes | None,
        source: ProfileSource,
        created_at: datetime | None,
        followers: int,
        following: int,
        posts: int,
        verified: bool,
        account_id: str | None,
        extra: bool = True,
    ) -> tuple[str, str]:
        handle = self.unique_handle(platform, handle)
        record: dict[str, Any] = {"platform": platform, "handle": handle}
        if name:
            record["display_name"] = name
        if bio:
            record["bio"] = bio
        if avatar is not None:
            record["avatar_base64"] = _b64(avatar)
        elif source.default_avatar:
            record["avatar_base64"] = self.default_b64[source.default_avatar]
        if account_id:
            record["id"] = account_id
        if created_at is not None:
            record["created_at"] = created_at.isoformat()
        record["followers_count"] = followers
        record["following_count"] = following
        record["posts_count"] = posts
        record["verified"] = verified
        if extra and person.location:
            record["location"] = person.location
        if extra and person.url:
            record["url"] = person.url
        key = identity_key(platform, handle)
        self.profiles.append(record)
        self.by_key[key] = record
        self.sources[key] = source
        if avatar is not None:
            self.avatar_jpeg[key] = avatar
        return platform, handle

    def add_person(
        self,
        person: _Person,
        *,
        role: str,
        platform: str | None = None,
        name: str | None = None,
        avatar: tuple[bytes | None, ProfileSource] | None = None,
    ) -> tuple[str, str]:
        """Add a person as their own account (an original, a namesake, a crowd member...)."""
        platform = platform or ("instagram" if self.rng.random() < 0.15 else "twitter")
        jpeg, source = avatar if avatar is not None else self.own_avatar()
        source.person, source.role, source.source_id = person.key, role, person.source_id
        handle = person.handle.lower() if platform == "instagram" else person.handle
        verified = person.followers > 5000 and self.rng.random() < 0.4
        account_id = person.source_id or str(self.rng.randint(10**8, 10**10))
        return self.add_profile(
            person,
            platform=platform,
            handle=handle,
            name=name if name is not None else person.name,
            bio=person.bio,
            avatar=jpeg,
            source=source,
            created_at=person.created_at,
            followers=person.followers,
            following=person.following,
            posts=person.posts,
            verified=verified,
            account_id=account_id,
        )

    def record(self, key: tuple[str, str]) -> dict[str, Any]:
        return self.by_key[key]

    # --- pairs --------------------------------------------------------------------------

    def add_pair(
        self,
        a: tuple[str, str],
        b: tuple[str, str],
        *,
        kind: str,
        is_clone: bool = False,
        transforms: list[str] | None = None,
        copy_side: CopySide = "unknown",
    ) -> bool:
        ka, kb = identity_key(*a), identity_key(*b)
        pair_key = (min(ka, kb), max(ka, kb))
        if ka == kb or pair_key in self.pair_keys:
            return False
        same_person = self.sources[ka].person == self.sources[kb].person
        if not is_clone and same_person and kind not in SELF_DECLARED_KINDS:
            return False
        self.pair_keys.add(pair_key)
        self.pairs.append(LabelledPair(a, b, is_clone, kind, list(transforms or []), copy_side))
        return True


def _fit_digits(handle: str, number: int, limit: int) -> str:
    suffix = str(number)
    return handle[: max(1, limit - len(suffix))] + suffix


# --- clones ----------------------------------------------------------------------------------


@dataclass
class _Original:
    key: tuple[str, str]
    person: _Person
    clones: int = 0


def _has_letters(name: str) -> bool:
    return sum(ch.isalpha() for ch in name) >= 3


def _make_originals(b: _Builder, count: int) -> list[_Original]:
    originals = []
    for _ in range(count):
        person = b.take_person(lambda p: _has_letters(p.name))
        key = b.add_person(person, role="original", avatar=b.own_avatar(use_photo=True))
        originals.append(_Original(identity_key(*key), person))
    return originals


def _choose_original(b: _Builder, originals: list[_Original], recipe: str) -> _Original:
    needs_avatar = _RECIPES[recipe].avatar == "yes"
    needs_bio = _RECIPES[recipe].bio == "yes"
    eligible = [
        o
        for o in originals
        if (not needs_avatar or o.key in b.avatar_jpeg) and (not needs_bio or o.person.bio.strip())
    ]
    if not eligible:
        eligible = originals
    fewest = min(o.clones for o in eligible)
    # Mostly one clone per person; some people are cloned twice or more, as in real life.
    pool = [o for o in eligible if o.clones == fewest or (o.clones < 3 and b.rng.random() < 0.02)]
    return b.rng.choice(pool)


def _clone_name(b: _Builder, name: str, *, lookalike: bool) -> tuple[str, str]:
    if lookalike:
        applicable = [t for t in tf.LOOKALIKE_NAME_TRANSFORMS if tf.transform_name(name, t, b.rng)]
        if applicable:
            tag = b.pick("name_lookalike", applicable, [1.0] * len(applicable))
            result = tf.transform_name(name, tag, b.rng)
            assert result is not None
            return result, tag
        tag = "name:decoration"
    else:
        tag = b.pick(
            "name_plain", ("name:exact", "name:decoration", "name:case"), (0.7, 0.18, 0.12)
        )
    result = tf.transform_name(name, tag, b.rng)
    if result is None:
        return tf.transform_name(name, "name:decoration", b.rng) or name, "name:decoration"
    return result, tag


def _clone_handle(
    b: _Builder, handle: str, platform: str, *, tricks: Sequence[str] = tf.HANDLE_TRANSFORMS
) -> tuple[str, str]:
    for _ in range(8):
        tag = b.pick(f"handle/{len(tricks)}", tricks, [1.0] * len(tricks))
        out = tf.transform_handle(handle, tag, b.rng, platform=platform)
        if out is not None and identity_key(platform, out) not in b.sources:
            return out, tag
    return _fit_digits(handle, b.rng.randint(1, 99), tf.HANDLE_LIMITS.get(platform, 30)), (
        "handle:digit"
    )


def _clone_avatar_tags(b: _Builder) -> list[str]:
    count = b.rng.choices((1, 2, 3), (0.4, 0.4, 0.2))[0]
    first = b.pick("avatar", tf.AVATAR_TRANSFORMS, [1.0] * len(tf.AVATAR_TRANSFORMS))
    tags = [first]
    rest = [t for t in tf.AVATAR_TRANSFORMS if t != first]
    while len(tags) < count:
        tag = b.rng.choice(rest)
        rest.remove(tag)
        if {tag, *tags} >= {"avatar:grey", "avatar:sepia"}:
            continue
        tags.append(tag)
    return tags


def _clone_bio(b: _Builder, bio: str, *, copy: bool) -> tuple[str, str]:
    if not copy or not bio.strip():
        if b.rng.random() < 0.6:
            return "", "bio:empty"
        return b.generated_bio(), "bio:different"
    for _ in range(6):
        tag = b.pick("bio", tf.BIO_TRANSFORMS, (0.45, 0.15, 0.2, 0.12, 0.08))
        out = tf.transform_bio(bio, tag, b.rng)
        if out is not None:
            return out, tag
    return bio, "bio:verbatim"


# What each recipe copies of its victim: avatar, bio ("yes", "no", "maybe"), the victim's name
# ("plain", "lookalike", "other": another person's) and handle ("variant", "new", "squat",
# "same": kept on another platform).
@dataclass(frozen=True)
class _Recipe:
    avatar: str
    bio: str
    name: str
    handle: str
    cross_platform: bool = False


_RECIPES: dict[str, _Recipe] = {
    "clone/full_copy": _Recipe("yes", "yes", "plain", "variant"),
    "clone/name_avatar": _Recipe("yes", "no", "plain", "maybe"),
    "clone/name_bio": _Recipe("no", "yes", "plain", "maybe"),
    "clone/avatar_bio": _Recipe("yes", "yes", "lookalike", "maybe"),
    "clone/lookalike_name": _Recipe("yes", "maybe", "lookalike", "variant"),
    "clone/name_handle": _Recipe("none", "none", "plain", "variant"),
    # Catfish and romance scams: the victim's own photo and a look-alike of their handle,
    # under another name.
    "clone/photo_theft": _Recipe("yes", "maybe", "other", "variant"),
    "clone/photo_only": _Recipe("yes", "no", "other", "new"),
    # A look-alike handle taken next to the victim's name, nothing else.
    "clone/handle_squat": _Recipe("none", "none", "plain", "squat"),
    "clone/cross_platform": _Recipe("maybe", "maybe", "plain", "same", cross_platform=True),
    "clone/family": _Recipe("yes", "maybe", "lookalike_or_plain", "maybe"),
    "clone/brand": _Recipe("yes", "maybe", "brand", "brand"),
}
# Handle tricks that keep a handle looking like the victim's at a glance.
_SQUAT_HANDLES = ("handle:l_to_1", "handle:l_to_I", "handle:o_to_0", "handle:double_letter",
                  "handle:drop_letter", "handle:underscore", "handle:separator")  # fmt: skip
# What scam accounts add to a brand's name and handle.
BRAND_NAME_WORDS = ("Support", "Help", "Care", "Customer Service", "Helpdesk", "HQ", "Team",
                    "Official", "Assist")  # fmt: skip
BRAND_HANDLE_WORDS = ("support", "help", "care", "helpdesk", "hq", "team", "assist", "desk")


def _yes(b: _Builder, choice: str, rate: float = 0.5) -> bool:
    return choice == "yes" or (choice == "maybe" and b.rng.random() < rate)


def _make_clone(b: _Builder, original: _Original, recipe: str) -> tuple[str, str]:
    """One copy of `original` made as `recipe` says, paired with it; returns the copy's key."""
    rng = b.rng
    spec = _RECIPES[recipe]
    person = original.person
    orig = b.record(original.key)
    tags: list[str] = []
    platform = orig["platform"]
    cross = spec.cross_platform or (
        recipe != "clone/brand" and b.pick("platform", ("same", "cross"), (0.93, 0.07)) == "cross"
    )
    if cross:
        platform = "instagram" if platform == "twitter" else "twitter"
        tags.append("context:cross_platform")

    original_name = orig.get("display_name", person.name)
    if spec.name == "other":
        name, name_tag = b.generated_name(), "name:other_person"
    elif spec.name == "brand":
        word = rng.choice(BRAND_NAME_WORDS)
        name = f"{original_name} {word}" if rng.random() < 0.8 else f"{word} {original_name}"
        name_tag = "name:brand_word"
    else:
        lookalike = spec.name == "lookalike" or (
            spec.name == "lookalike_or_plain" and rng.random() < 0.5
        )
        name, name_tag = _clone_name(b, original_name, lookalike=lookalike)
    tags.append(name_tag)

    if spec.handle == "same" and (not cross or rng.random() < 0.8):
        handle, handle_tag = orig["handle"], "handle:same"
    elif spec.handle == "squat":
        handle, handle_tag = _clone_handle(b, orig["handle"], platform, tricks=_SQUAT_HANDLES)
    elif spec.handle == "brand":
        word = rng.choice(BRAND_HANDLE_WORDS)
        # The platform's length limit shortens the brand, never the scam word.
        base = orig["handle"][: tf.HANDLE_LIMITS.get(platform, 30) - len(word) - 1]
        handle = rng.choice((f"{base}_{word}", f"{base}{word}", f"{word}{base}"))
        handle_tag = "handle:brand_word"
    elif spec.handle == "new":
        handle, handle_tag = b.handle_from_name(name, platform=platform), "handle:new"
    elif spec.handle in ("variant", "same") or rng.random() < 0.55:
        handle, handle_tag = _clone_handle(b, orig["handle"], platform)
    else:
        handle, handle_tag = b.handle_from_name(person.name, platform=platform), "handle:new"
    tags.append(handle_tag)

    # A clone that copies only the name and handle leaves the rest blank or default: with a
    # photo and a bio of its own, nothing would tell it from a namesake, and calling such a
    # pair a clone would teach the model to flag namesakes.
    if spec.bio == "none":
        bio, bio_tag = "", "bio:empty"
    elif recipe == "clone/brand" and rng.random() < 0.5:
        bio, bio_tag = rng.choice(_BRAND_SCAM_BIOS).format(name=original_name), "bio:scam"
    else:
        bio, bio_tag = _clone_bio(b, orig.get("bio", ""), copy=_yes(b, spec.bio))
    tags.append(bio_tag)

    source = ProfileSource(person=person.key, role="clone", source_id=person.source_id)
    original_source = b.sources[original.key]
    jpeg: bytes | None = None
    if _yes(b, spec.avatar, 0.7) and original.key in b.avatar_jpeg:
        avatar_tags = _clone_avatar_tags(b)
        jpeg = tf.transform_avatar(b.avatar_jpeg[original.key], avatar_tags, rng)
        tags.extend(avatar_tags)
        source.photo, source.image_seed = original_source.photo, original_source.image_seed
        source.avatar_category = original_source.avatar_category
    else:
        choice = rng.choices(
            ("none", "default", "different"), (0.4, 0.4, 0.0 if spec.avatar == "none" else 0.2)
        )[0]
        tags.append(f"avatar:{choice}")
        if choice == "default":
            source.default_avatar = rng.choices(DEFAULT_AVATARS, _DEFAULT_WEIGHTS)[0]
        elif choice == "different":
            jpeg, own = b.own_avatar(default_rate=0.0, none_rate=0.0)
            source.image_seed, source.avatar_category = own.image_seed, own.avatar_category

    created, followers, context_tag = _clone_context(b, person)
    if context_tag:
        tags.append(context_tag)
    key = b.add_profile(
        person,
        platform=platform,
        handle=handle,
        name=name,
        bio=bio,
        avatar=jpeg,
        source=source,
        created_at=created,
        followers=followers,
        following=rng.randint(20, 2000),
        posts=rng.randint(0, 300),
        verified=False,
        account_id=str(rng.randint(10**9, 10**12)),
        extra=rng.random() < 0.5,
    )
    original.clones += 1
    original_key = (orig["platform"], orig["handle"])
    # Users mostly check their own identity, so the original is mostly the query.
    if rng.random() < 0.8:
        b.add_pair(original_key, key, kind=recipe, is_clone=True, transforms=tags,
                   copy_side="candidate")  # fmt: skip
    else:
        b.add_pair(key, original_key, kind=recipe, is_clone=True, transforms=tags,
                   copy_side="query")  # fmt: skip
    return key


_BRAND_SCAM_BIOS = (
    "Official {name} support. DM us your account details and we will fix it fast",
    "{name} help desk 24/7. Send us a direct message for refunds",
    "We are here to help with your {name} account. Message us now",
    "{name} customer care. Verify your account via the link below",
)


def _clone_context(b: _Builder, victim: _Person) -> tuple[datetime | None, int, str]:
    """When a copy was made and how followed it is, as mixed as in life: most are new and
    small, some are bought aged accounts, some inflate their followers, some carry no date."""
    rng = b.rng
    noise = b.pick(
        "context",
        ("none", "context:no_created_at", "context:bought_followers", "context:aged_account"),
        (0.78, 0.08, 0.1, 0.04),
    )
    if victim.created_at is not None:
        created: datetime | None = min(
            victim.created_at + timedelta(days=1 + int(rng.lognormvariate(5, 1.2)),
                                          seconds=rng.randint(0, 86399)),
            _NOW,
        )  # fmt: skip
    else:
        created = b.random_created(2012, 2024)
    followers = rng.randint(0, max(5, victim.followers // 20))
    if noise == "context:no_created_at":
        created = None
    elif noise == "context:bought_followers":
        followers = int(victim.followers * rng.uniform(1.5, 4)) + rng.randint(500, 5000)
    elif noise == "context:aged_account":
        # An old account bought and renamed: older than the victim's, often well followed.
        start = victim.created_at or _NOW
        created = start - timedelta(days=rng.randint(30, 2500))
        followers = rng.randint(0, 3 * max(10, victim.followers))
    return created, followers, "" if noise == "none" else noise


def _clone_families(b: _Builder, originals: list[_Original], count: int) -> None:
    """Victims cloned 2 to 30 times with their photo and name, as bot farms do."""
    with_photo = [o for o in originals if o.key in b.avatar_jpeg and o.clones == 0]
    b.rng.shuffle(with_photo)
    made = 0
    for original in with_photo:
        if made >= count:
            break
        size = min(count - made, b.rng.choice((2, 3, 5, 8, 12, 20, MAX_FAMILY)))
        for _ in range(max(2, size)):
            _make_clone(b, original, "clone/family")
            made += 1


_BRAND_WORDS = ("Nova", "Apex", "Lumen", "Orbit", "Cedar", "Vertex", "Harbor", "Summit",
                "Pioneer", "Quantum", "Beacon", "Atlas", "Zenith", "Maple", "Crest", "Falcon",
                "Horizon", "Silver", "Polar", "Cobalt", "Emerald", "Granite", "Sterling",
                "Vista")  # fmt: skip
_BRAND_SECTORS = ("Bank", "Airlines", "Mobile", "Games", "Energy", "Insurance", "Crypto",
                  "Shop", "Pay", "Telecom", "Travel", "Health", "Motors", "Wallet",
                  "Exchange")  # fmt: skip


def _make_brands(b: _Builder, count: int) -> list[_Original]:
    """Organisations: a brand name, a logo for an avatar, verified and widely followed."""
    words, sectors = _in_split(_BRAND_WORDS, b.split), _in_split(_BRAND_SECTORS, b.split)
    # Two words and a sector: every brand of a corpus has a name of its own.
    names = [(w1 + w2.lower(), sector) for w1 in words for w2 in words if w1 != w2
             for sector in sectors]  # fmt: skip
    brands = []
    for word, sector in b.rng.sample(names, min(count, len(names))):
        name = f"{word} {sector}"
        person = b.generated_person(name)
        person.handle = f"{word}{sector}".lower() if b.rng.random() < 0.6 else f"{word}_{sector}"
        person.bio = f"The official account of {name}. {b.rng.choice(_BRAND_TAGLINES)}"
        person.followers = int(b.rng.lognormvariate(10, 1.5))
        seed = b.next_image_seed()
        logo = tf.encode_jpeg(generate_image(seed, style="shapes"), quality=85)
        source = ProfileSource(person="", role="", image_seed=seed, avatar_category="logo")
        key = b.add_person(person, role="original", avatar=(logo, source))
        brands.append(_Original(identity_key(*key), person))
    return brands


_BRAND_TAGLINES = ("Here for you 24/7.", "News, offers and service updates.",
                   "Questions? We are listening.", "Since 1998.", "Built for you.")  # fmt: skip


# --- negatives -------------------------------------------------------------------------------


def _orient(b: _Builder, a: tuple[str, str], c: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return (a, c) if b.rng.random() < 0.5 else (c, a)


def _own_accounts(b: _Builder, originals: list[_Original], seconds: int, fans: int) -> None:
    """A person's own second account, and declared fan or parody accounts of them."""
    rng = b.rng
    pool = [o for o in originals if o.key in b.avatar_jpeg]
    rng.shuffle(pool)
    for i, original in enumerate(pool[: seconds + fans]):
        orig = b.record(original.key)
        person = original.person
        name = orig.get("display_name", person.name)
        platform = orig["platform"]
        jpeg = tf.transform_avatar(b.avatar_jpeg[original.key], ["avatar:jpeg"], rng)
        source = ProfileSource(person=person.key, role="own", source_id=person.source_id)
        source.photo = b.sources[original.key].photo
        if i < seconds:
            kind, bio = "own/second_account", person.bio if rng.random() < 0.5 else ""
            handle = rng.choice(
                (
                    f"{orig['handle']}2",
                    f"{orig['handle']}_{rng.choice(NAMESAKE_HANDLE_WORDS)}",
                    b.handle_from_name(name, platform=platform),
                )
            )
            tags = ["own:second_account"]
        else:
            kind = "declared/fan_parody"
            word = rng.choice(("Fan", "Fans", "Fan Page", "Parody", "Fan Club"))
            declared_in_name = rng.random() < 0.6
            name = f"{name} {word}" if declared_in_name else name
            bio = person.bio if declared_in_name else rng.choice(_DECLARATIONS).format(name=name)
            handle = f"{orig['handle']}{rng.choice(('fan', 'fans', 'parody', 'fp'))}"
            tags = ["declared:name" if declared_in_name else "declared:bio"]
        key = b.add_profile(
            person,
            platform=platform,
            handle=handle[: tf.HANDLE_LIMITS.get(platform, 30)],
            name=name,
            bio=bio,
            avatar=jpeg,
            source=source,
            created_at=b.random_created(2014, 2024),
            followers=rng.randint(0, 2000),
            following=rng.randint(20, 2000),
            posts=rng.randint(0, 500),
            verified=False,
            account_id=str(rng.randint(10**9, 10**12)),
        )
        b.add_pair(original.key, key, kind=kind, transforms=tags)


_DECLARATIONS = (
    "Parody account. Not affiliated with {name}",
    "Fan account of {name} ❤️ not the real one",
    "Fan page dedicated to {name}. Unofficial",
    "Satire / parody of {name}, not the real person",
)


def _namesake_families(b: _Builder, count: int) -> None:
    """Dozens of real people who share one common name, each with their own photo and bio."""
    rng = b.rng
    names = list(b.common_names or COMMON_NAMES)
    rng.shuffle(names)
    made = 0
    for name in names:
        if made >= count:
            break
        members = []
        for _ in range(rng.randint(20, 40)):
            person = b.generated_person(name)
            avatar = b.own_avatar(default_rate=0.1, none_rate=0.05)
            members.append(b.add_person(person, role="common_name", avatar=avatar))
        pairs = [(i, j) for i in range(len(members)) for j in range(i + 1, len(members))]
        rng.shuffle(pairs)
        for i, j in pairs[: max(1, count // 3)]:
            if made < count:
                made += b.add_pair(*_orient(b, members[i], members[j]), kind="neg/namesake_family",
                                   transforms=["namesake:family"])  # fmt: skip


def _stock_photos(b: _Builder, count: int) -> None:
    """Stock photos and memes worn by many unrelated people (each its own name and bio)."""
    rng = b.rng
    made = 0
    while made < count:
        seed = b.next_image_seed()
        style = rng.choice(("face", "field", "gradient"))
        stock = generate_image(seed, style=style)
        members = []
        for _ in range(rng.randint(15, 60)):
            jpeg = tf.encode_jpeg(stock, quality=rng.choice((70, 80, 85, 92)))
            source = ProfileSource(person="", role="", image_seed=seed, avatar_category="stock")
            members.append(b.add_person(b.generated_person(), role="crowd", avatar=(jpeg, source)))
        for _ in range(min(count - made, len(members) * 2)):
            a, c = rng.sample(members, 2)
            made += b.add_pair(a, c, kind="neg/stock_photo", transforms=["stock:" + style])


def _namesakes(b: _Builder, originals: list[_Original], count: int) -> None:
    real_target = round(count * 0.65)
    made = 0
    named = [
        o for o in originals if len(o.person.name.split()) >= 2 and _has_letters(o.person.name)
    ]
    b.rng.shuffle(named)
    for original in named[:real_target]:
        other = b.take_person()
        key = b.add_person(other, role="namesake", name=original.person.name)
        orig = b.record(original.key)
        made += b.add_pair((orig["platform"], orig["handle"]), key, kind="neg/namesake",
                           transforms=["namesake:real_name"])  # fmt: skip
    names = b.common_names or list(COMMON_NAMES)
    while made < count:
        name = b.rng.choice(names)
        group = []
        similar = b.rng.random() < 0.4
        first, last = (w.lower() for w in (name.split()[0], name.split()[-1]))
        word = b.rng.choice(NAMESAKE_HANDLE_WORDS)
        styles = [f"{first}{last}", f"{first}_{last}{b.rng.randint(10, 99)}", f"{first[0]}{last}",
                  f"{last}{first}", f"{first}{last}{b.rng.randint(1970, 2005)}",
                  f"{first}_{last}_{word}", f"{word}{first}{last}"]  # fmt: skip
        b.rng.shuffle(styles)
        for i in range(b.rng.randint(2, 4)):
            person = b.generated_person(name)
            if similar:
                person.handle = styles[i % len(styles)]
            avatar = b.own_avatar(default_rate=0.1, none_rate=0.05)
            group.append(b.add_person(person, role="common_name", platform="twitter",
                                      avatar=avatar))  # fmt: skip
        tag = "namesake:similar_handle" if similar else "namesake:common_name"
        for i in range(len(group)):
            for j in range(i + 1, len(group)):
                if made < count:
                    made += b.add_pair(*_orient(b, group[i], group[j]), kind="neg/namesake",
                                       transforms=[tag])  # fmt: skip


def _default_crowds(b: _Builder, count: int) -> None:
    rng = b.rng
    members: dict[str, list[tuple[str, str]]] = defaultdict(list)

    def refresh() -> None:
        members.clear()
        for p in b.profiles:
            key = identity_key(p["platform"], p["handle"])
            default = b.sources[key].default_avatar
            if default:
                members[default].append((p["platform"], p["handle"]))

    refresh()
    for default in DEFAULT_AVATARS:
        target = max(MIN_DEFAULT_SHARE + 10, count // 3)
        for _ in range(max(0, target - len(members[default]))):
            source = ProfileSource(person="", role="", default_avatar=default)
            b.add_person(b.take_person(), role="crowd", avatar=(None, source))
    refresh()
    similar_target = round(count * 0.3)
    made = 0
    while made < similar_target:
        default = rng.choices(DEFAULT_AVATARS, _DEFAULT_WEIGHTS)[0]
        first, last = rng.choice(b.first_names), rng.choice(b.last_names)
        other_first = first if rng.random() < 0.5 else rng.choice(b.first_names)
        other_last = rng.choice(b.last_names) if other_first == first else last
        keys = []
        for name in (f"{first} {last}", f"{other_first} {other_last}"):
            source = ProfileSource(person="", role="", default_avatar=default)
            keys.append(b.add_person(b.generated_person(name), role="crowd", avatar=(None, source)))
        made += b.add_pair(keys[0], keys[1], kind="neg/shared_default_avatar",
                           transforms=["default:" + default, "default:similar_name"])  # fmt: skip
    refresh()
    attempts = 0
    while made < count and attempts < count * 20:
        attempts += 1
        default = rng.choices(DEFAULT_AVATARS, _DEFAULT_WEIGHTS)[0]
        a, c = rng.sample(members[default], 2)
        made += b.add_pair(
            a, c, kind="neg/shared_default_avatar", transforms=["default:" + default]
        )


def _bots(b: _Builder, count: int) -> None:
    rng = b.rng
    groups = max(1, math.ceil(count / 25))
    per_group = math.ceil(count / groups)
    templates = b.bot_templates or list(BOT_TEMPLATES)
    made = 0
    for g in range(groups):
        template = templates[g % len(templates)]
        size = max(10, min(30, rng.randint(10, 30), per_group + 5))
        size = max(size, min(30, math.ceil((1 + math.sqrt(1 + 8 * per_group)) / 2)))
        burst = b.random_created(2012, 2015)
        keys = []
        for _ in range(size):
            person = b.generated_person()
            words = person.name.split()
            first, last = (re.sub(r"[^A-Za-z]", "", w) for w in (words[0], words[-1]))
            letters = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(3))
            person.handle = (last + letters + first[:4])[:15] or f"bot{rng.randint(1, 10**6)}"
            person.bio = template if rng.random() < 0.8 else f"{template} {rng.choice('✨💯🔥')}"
            person.created_at = burst + timedelta(hours=rng.randint(0, 24 * 20))
            person.followers, person.following = rng.randint(0, 40), rng.randint(150, 2000)
            person.posts = rng.randint(0, 60)
            avatar = b.own_avatar(default_rate=0.3, none_rate=0.0)
            keys.append(b.add_person(person, role="bot", platform="twitter", avatar=avatar))
        combos = [(i, j) for i in range(len(keys)) for j in range(i + 1, len(keys))]
        rng.shuffle(combos)
        for i, j in combos[: min(per_group, count - made)]:
            made += b.add_pair(
                keys[i], keys[j], kind="neg/same_bio_bot", transforms=["bot:template"]
            )


def _first_token(name: str) -> str:
    words = name.split()
    return (
        words[0].casefold() if len(words) >= 2 and words[0].isalpha() and len(words[0]) >= 3 else ""
    )


def _same_first_name(b: _Builder, count: int) -> None:
    rng = b.rng
    by_first: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for p in b.profiles:
        key = identity_key(p["platform"], p["handle"])
        if b.sources[key].role in ("original", "crowd", "plain") and p.get("display_name"):
            first = _first_token(p["display_name"])
            if first:
                by_first[first].append((p["platform"], p["handle"]))
    # Unused real people widen the pool, as their own accounts.
    for person in list(b.real_people):
        first = _first_token(person.name)
        if first and len(by_first.get(first, ())) >= 1:
            b.real_people.remove(person)
            by_first[first].append(b.add_person(person, role="plain"))
    made = 0
    groups = sorted(k for k, v in by_first.items() if len(v) >= 2)
    attempts = 0
    while groups and made < count and attempts < count * 10:
        attempts += 1
        group = by_first[rng.choice(groups)]
        a, c = rng.sample(group, 2)
        if b.record(identity_key(*a)).get("display_name") == b.record(identity_key(*c)).get(
            "display_name"
        ):
            continue
        made += b.add_pair(a, c, kind="neg/same_first_name", transforms=["first_name:natural"])
    while made < count:
        first = rng.choice(b.first_names)
        lasts = rng.sample(b.last_names, 2)
        keys = [b.add_person(b.generated_person(f"{first} {last}"), role="plain") for last in lasts]
        made += b.add_pair(keys[0], keys[1], kind="neg/same_first_name",
                           transforms=["first_name:generated"])  # fmt: skip


def _similar_photos(b: _Builder, count: int) -> None:
    rng = b.rng
    by_category: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for p in b.profiles:
        key = identity_key(p["platform"], p["handle"])
        source = b.sources[key]
        if source.avatar_category and source.role != "clone":
            by_category[source.avatar_category].append((p["platform"], p["handle"]))
    categories = sorted(k for k, v in by_category.items() if len(v) >= 2)
    weights = [3.0 if c in ("face", "photo") else 1.0 for c in categories]
    made = attempts = 0
    while categories and made < count and attempts < count * 20:
        attempts += 1
        category = rng.choices(categories, weights)[0]
        a, c = rng.sample(by_category[category], 2)
        made += b.add_pair(a, c, kind="neg/similar_photo", transforms=["photo:" + category])


def _random_pairs(b: _Builder, count: int) -> None:
    keys = [(p["platform"], p["handle"]) for p in b.profiles]
    made = attempts = 0
    while made < count and attempts < count * 20:
        attempts += 1
        a, c = b.rng.sample(keys, 2)
        made += b.add_pair(a, c, kind="neg/random", transforms=[])


def build_corpus(
    split: Split,
    *,
    seed: int = 7,
    data_dir: Path | None = None,
    size: int | None = None,
) -> Corpus:
    """The labelled corpus of one split: the same split and seed always give the same corpus.

    `size` is the approximate number of pairs (default: the full ~3,400: 1,200 clones and
    ~2,200 hard negatives); smaller builds keep every kind and every transformation. Where
    `data_dir` (default: `default_data_dir()`) lacks the shared data, generated people and
    images stand in, with a warning.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    folder = data_dir if data_dir is not None else default_data_dir()
    people = _load_real_people(folder, split)
    photos = _load_photos(folder, split) if folder.is_dir() else []
    if people is None:
        logger.warning("no shared profiles under %s: generating people instead", folder)
    counts = _scaled_counts(size)
    b = _Builder(split, seed, people, photos)

    families = round(counts["clone"] * FAMILY_SHARE)
    singles = counts["clone"] - families
    brand_clones = round(singles * _RECIPE_WEIGHTS["clone/brand"])
    originals = _make_originals(b, math.ceil((singles - brand_clones) / 1.3) + families // 6)
    brands = _make_brands(b, max(2, math.ceil(brand_clones / 1.5)))
    recipes = [r for r in _RECIPE_WEIGHTS if r != "clone/brand"]
    weights = [_RECIPE_WEIGHTS[r] for r in recipes]
    _clone_families(b, originals, families)
    for _ in range(singles - brand_clones):
        recipe = b.pick("recipe", recipes, weights)
        _make_clone(b, _choose_original(b, originals, recipe), recipe)
    for _ in range(brand_clones):
        _make_clone(b, _choose_original(b, brands, "clone/brand"), "clone/brand")
    _own_accounts(b, originals, counts["own/second_account"], counts["declared/fan_parody"])
    _namesakes(b, originals, counts["neg/namesake"])
    _namesake_families(b, counts["neg/namesake_family"])
    _stock_photos(b, counts["neg/stock_photo"])
    _bots(b, counts["neg/same_bio_bot"])
    _default_crowds(b, counts["neg/shared_default_avatar"])
    _same_first_name(b, counts["neg/same_first_name"])
    _similar_photos(b, counts["neg/similar_photo"])
    _random_pairs(b, counts["neg/random"])
    logger.info(
        "%s corpus (seed %d): %d profiles, %d pairs", split, seed, len(b.profiles), len(b.pairs)
    )
    return Corpus(profiles=b.profiles, pairs=b.pairs, sources=b.sources)


# --- files -----------------------------------------------------------------------------------


def write_corpus_jsonl(corpus: Corpus, path: Path) -> None:
    """Write the corpus profiles as JSON Lines, ready for `clonefinder ingest`."""
    with Path(path).open("w", encoding="utf-8") as out:
        for record in corpus.profiles:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def pairs_to_jsonl(pairs: Sequence[LabelledPair], path: Path) -> None:
    """Write the labelled pairs as JSON Lines, one pair a line, for inspection and benchmarks."""
    with Path(path).open("w", encoding="utf-8") as out:
        for pair in pairs:
            out.write(json.dumps(asdict(pair), ensure_ascii=False) + "\n")


def read_pairs_jsonl(path: Path) -> list[LabelledPair]:
    """Read back what `pairs_to_jsonl` wrote."""
    pairs = []
    with Path(path).open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                raw = json.loads(line)
                raw["query"], raw["candidate"] = tuple(raw["query"]), tuple(raw["candidate"])
                pairs.append(LabelledPair(**raw))
    return pairs


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m training.pairset --split test --out DIR`: write profiles and pairs files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--split", choices=SPLITS, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    corpus = build_corpus(args.split, seed=args.seed, data_dir=args.data_dir, size=args.size)
    args.out.mkdir(parents=True, exist_ok=True)
    profiles_path = args.out / f"profiles-{args.split}.jsonl"
    pairs_path = args.out / f"pairs-{args.split}.jsonl"
    write_corpus_jsonl(corpus, profiles_path)
    pairs_to_jsonl(corpus.pairs, pairs_path)
    logger.info("wrote %s and %s", profiles_path, pairs_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
