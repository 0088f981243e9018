"""The labelled corpus: deterministic, split-clean, self-consistent, every kind exercised."""

from __future__ import annotations

import base64
import io
import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from indexers import text
from models.profile import identity_key, parse_record
from tests.requirements import SHARED_DATA_ABSENT
from training import transforms as tf
from training.pairset import (
    CLONE_KINDS,
    MIN_DEFAULT_SHARE,
    NEGATIVE_KINDS,
    SELF_DECLARED_KINDS,
    Corpus,
    build_corpus,
    default_data_dir,
    pairs_to_jsonl,
    photo_group,
    read_pairs_jsonl,
    write_corpus_jsonl,
)
from training.synthetic_images import DEFAULT_AVATARS, generate_image

SIZE = 400
SHARED = default_data_dir()
needs_shared = pytest.mark.skipif(
    not (SHARED / "profiles" / "cresci2015-users.csv").is_file(),
    reason=f"{SHARED_DATA_ABSENT}: no {SHARED / 'profiles' / 'cresci2015-users.csv'}",
)


@pytest.fixture(scope="module")
def train() -> Corpus:
    return build_corpus("train", seed=3, size=SIZE)


@pytest.fixture(scope="module")
def test_split() -> Corpus:
    return build_corpus("test", seed=3, size=SIZE)


@pytest.fixture(scope="module")
def validation() -> Corpus:
    return build_corpus("validation", seed=3, size=SIZE)


@pytest.fixture(scope="module")
def generated_only(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    missing = tmp_path_factory.mktemp("nodata") / "missing"
    return build_corpus("test", seed=3, size=SIZE, data_dir=missing)


def _keys(corpus: Corpus) -> list[tuple[str, str]]:
    return [identity_key(p["platform"], p["handle"]) for p in corpus.profiles]


def _check_consistent(corpus: Corpus) -> None:
    keys = _keys(corpus)
    assert len(keys) == len(set(keys)), "identities must be unique"
    known = set(keys)
    for pair in corpus.pairs:
        assert identity_key(*pair.query) in known
        assert identity_key(*pair.candidate) in known
        assert identity_key(*pair.query) != identity_key(*pair.candidate)
        if pair.is_clone:
            assert pair.kind in CLONE_KINDS
            assert pair.copy_side in ("query", "candidate")
        else:
            assert pair.kind in NEGATIVE_KINDS + SELF_DECLARED_KINDS
            assert pair.copy_side == "unknown"
    unordered = [
        frozenset((identity_key(*p.query), identity_key(*p.candidate))) for p in corpus.pairs
    ]
    assert len(unordered) == len(set(unordered)), "no pair may be listed twice"


def test_same_seed_same_corpus(train: Corpus) -> None:
    again = build_corpus("train", seed=3, size=SIZE)
    assert again.profiles == train.profiles
    assert again.pairs == train.pairs
    other = build_corpus("train", seed=4, size=SIZE)
    assert other.pairs != train.pairs


def test_pairs_refer_to_unique_profiles(train: Corpus, test_split: Corpus) -> None:
    _check_consistent(train)
    _check_consistent(test_split)


def test_records_are_valid_profile_records(test_split: Corpus) -> None:
    for i, raw in enumerate(test_split.profiles):
        parse_record(raw, where=f"index {i}")


def test_every_kind_and_transformation_appears(test_split: Corpus) -> None:
    kinds = Counter(p.kind for p in test_split.pairs)
    assert set(CLONE_KINDS) | set(NEGATIVE_KINDS) | set(SELF_DECLARED_KINDS) <= set(kinds)
    applied = {t for p in test_split.pairs if p.is_clone for t in p.transforms}
    vocabulary = (
        tf.NAME_TRANSFORMS
        + tf.HANDLE_TRANSFORMS
        + tf.AVATAR_TRANSFORMS
        + tf.BIO_TRANSFORMS
        + tf.CONTEXT_TRANSFORMS
    )
    assert set(vocabulary) - applied == set()
    assert {"handle:same", "handle:new", "avatar:default", "avatar:none"} <= applied
    sides = Counter(p.copy_side for p in test_split.pairs if p.is_clone)
    assert sides["candidate"] > sides["query"] > 0, "the original is mostly, not always, the query"


def test_avatars_are_decodable_jpegs(test_split: Corpus) -> None:
    with_avatar = [p for p in test_split.profiles if "avatar_base64" in p]
    assert len(with_avatar) > len(test_split.profiles) // 2
    for record in with_avatar[:300]:
        data = base64.b64decode(record["avatar_base64"])
        with Image.open(io.BytesIO(data)) as img:
            assert img.format == "JPEG"
            img.load()
            assert min(img.size) >= 40 and max(img.size) <= 400


def test_default_avatars_are_common(test_split: Corpus) -> None:
    shared = Counter(p["avatar_base64"] for p in test_split.profiles if "avatar_base64" in p)
    common = [count for _, count in shared.most_common(len(DEFAULT_AVATARS))]
    assert len(common) == len(DEFAULT_AVATARS)
    assert min(common) >= MIN_DEFAULT_SHARE
    defaults = {s.default_avatar for s in test_split.sources.values()} - {None}
    assert defaults == set(DEFAULT_AVATARS)


def test_bot_groups_share_a_bio_and_clones_copy(test_split: Corpus) -> None:
    by_key = {identity_key(p["platform"], p["handle"]): p for p in test_split.profiles}
    bots = [p for p in test_split.pairs if p.kind == "neg/same_bio_bot"]
    same = sum(
        by_key[identity_key(*p.query)].get("bio", "")[:20]
        == by_key[identity_key(*p.candidate)].get("bio", "")[:20]
        for p in bots
    )
    assert same == len(bots)
    for pair in test_split.pairs:
        if pair.kind == "clone/full_copy" and "bio:verbatim" in pair.transforms:
            a, c = by_key[identity_key(*pair.query)], by_key[identity_key(*pair.candidate)]
            assert a["bio"] == c["bio"]


def test_clone_context_mostly_points_at_the_copy(test_split: Corpus) -> None:
    by_key = {identity_key(p["platform"], p["handle"]): p for p in test_split.profiles}
    newer = total = 0
    for pair in test_split.pairs:
        if not pair.is_clone:
            continue
        copy, original = (
            (pair.candidate, pair.query)
            if pair.copy_side == "candidate"
            else (pair.query, pair.candidate)
        )
        c, o = by_key[identity_key(*copy)], by_key[identity_key(*original)]
        if "created_at" in c and "created_at" in o:
            total += 1
            newer += c["created_at"] > o["created_at"]
    assert total and newer / total > 0.9


@needs_shared
def test_splits_share_no_source(train: Corpus, validation: Corpus, test_split: Corpus) -> None:
    """Train, validation and test: no person, photo, generated image or bio in two of them."""

    def sources(corpus: Corpus, attr: str) -> set[object]:
        return {getattr(s, attr) for s in corpus.sources.values()} - {None}

    def bios(corpus: Corpus) -> set[str]:
        return {p["bio"] for p in corpus.profiles if p.get("bio") and len(p["bio"]) > 40}

    splits = {"train": train, "validation": validation, "test": test_split}
    for (name_a, a), (name_b, b) in itertools.combinations(splits.items(), 2):
        assert sources(a, "source_id") and sources(b, "source_id")
        assert sources(a, "source_id").isdisjoint(sources(b, "source_id")), (name_a, name_b)
        assert sources(a, "image_seed").isdisjoint(sources(b, "image_seed")), (name_a, name_b)
        photos_a = {photo_group(p) for p in sources(a, "photo")}  # type: ignore[arg-type]
        photos_b = {photo_group(p) for p in sources(b, "photo")}  # type: ignore[arg-type]
        assert photos_a and photos_b
        assert photos_a.isdisjoint(photos_b), (name_a, name_b)
        assert bios(a).isdisjoint(bios(b)), (name_a, name_b)


def test_the_new_ways_of_copying_copy_what_they_say(test_split: Corpus) -> None:
    by_key = {identity_key(p["platform"], p["handle"]): p for p in test_split.profiles}

    def sides(kind: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        return [
            (by_key[identity_key(*p.query)], by_key[identity_key(*p.candidate)])
            for p in test_split.pairs
            if p.kind == kind
        ]

    for a, c in sides("clone/photo_theft") + sides("clone/photo_only"):
        assert "avatar_base64" in a and "avatar_base64" in c
        assert a.get("display_name") != c.get("display_name")
    for a, c in sides("clone/handle_squat"):
        assert not (a.get("bio") and c.get("bio")), "a squatter copies no bio"
    cross = sides("clone/cross_platform")
    assert cross and all(a["platform"] != c["platform"] for a, c in cross)
    assert any(a["handle"] == c["handle"] for a, c in cross)
    families = Counter(
        p.query if p.copy_side == "candidate" else p.candidate
        for p in test_split.pairs
        if p.kind == "clone/family"
    )
    assert families and max(families.values()) >= 2
    for a, c in sides("declared/fan_parody"):
        assert text.declares_unaffiliated(a.get("display_name"), a.get("bio")) or (
            text.declares_unaffiliated(c.get("display_name"), c.get("bio"))
        )


def test_photo_groups_keep_one_portrait_together() -> None:
    assert photo_group("obama-720p.jpg") == photo_group("obama_small.jpg") == "obama"
    assert photo_group("ukbench09380.webp") == photo_group("ukbench09380.jpg")
    assert photo_group("ukbench09380.jpg") != photo_group("ukbench00120.jpg")


def test_works_without_shared_data(generated_only: Corpus) -> None:
    _check_consistent(generated_only)
    assert all(s.source_id is None and s.photo is None for s in generated_only.sources.values())
    kinds = {p.kind for p in generated_only.pairs}
    assert set(CLONE_KINDS) | set(NEGATIVE_KINDS) <= kinds


def test_generated_images_are_distinct_and_stable() -> None:
    def dhash(img: Image.Image) -> int:
        grey = img.convert("L").resize((9, 8), Image.Resampling.LANCZOS)
        px = list(grey.tobytes())
        bits = 0
        for row in range(8):
            for col in range(8):
                bits = bits << 1 | (px[row * 9 + col] > px[row * 9 + col + 1])
        return bits

    images = [generate_image(seed) for seed in range(40)]
    assert all(img.size == (400, 400) for img in images)
    assert images[0].tobytes() == generate_image(0).tobytes()
    hashes = [dhash(img) for img in images]
    distances = [bin(a ^ b).count("1") for a, b in itertools.combinations(hashes, 2)]
    assert min(distances) >= 5
    assert sum(distances) / len(distances) > 20


def test_jsonl_round_trip(test_split: Corpus, tmp_path: Path) -> None:
    profiles_path, pairs_path = tmp_path / "profiles.jsonl", tmp_path / "pairs.jsonl"
    write_corpus_jsonl(test_split, profiles_path)
    pairs_to_jsonl(test_split.pairs, pairs_path)
    assert len(profiles_path.read_text(encoding="utf-8").splitlines()) == len(test_split.profiles)
    assert read_pairs_jsonl(pairs_path) == test_split.pairs


def test_avatar_transforms_keep_a_jpeg() -> None:
    import random

    original = tf.encode_jpeg(generate_image(1))
    rng = random.Random(0)
    for tag in tf.AVATAR_TRANSFORMS:
        out = tf.transform_avatar(original, [tag], rng)
        with Image.open(io.BytesIO(out)) as img:
            assert img.format == "JPEG"
            assert 48 <= min(img.size) <= 400
    assert tf.transform_handle("jane", "handle:l_to_1", rng, platform="twitter") is None
    assert tf.transform_name("Mia", "name:cyrillic", rng) != "Mia"
    assert (
        len(tf.transform_handle("abcdefghijklmno", "handle:affix", rng, platform="twitter") or "")
        <= 15
    )
