"""bench.false_alarms: its building blocks at a tiny scale, and one tiny run end to end."""

from __future__ import annotations

import io
import json
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench import false_alarms as fa
from indexers import avatar as avatar_hashing
from models.profile import identity_key, parse_record
from service.core.settings import Settings
from service.matching.avatar_source import AvatarSource
from service.matching.profile_sides import AvatarReader
from tests.requirements import SHARED_DATA_ABSENT
from training.pairset import default_data_dir

SHARED = default_data_dir()
needs_shared_photos = pytest.mark.skipif(
    not (SHARED / "images" / "faces").is_dir(),
    reason=f"{SHARED_DATA_ABSENT}: no {SHARED / 'images' / 'faces'}",
)
SEED = 3


@pytest.fixture(scope="module")
def split() -> fa.PhotoSplit:
    return fa.split_photos(SHARED)


@pytest.fixture(scope="module")
def index_photos(split: fa.PhotoSplit) -> list[Image.Image]:
    return [fa.load_photo(label, SHARED) for label in split.index]


@pytest.fixture(scope="module")
def names() -> fa.NameModel:
    return fa.NameModel.load()


def _index_people(split: fa.PhotoSplit, names: fa.NameModel, count: int) -> list[fa.Person]:
    weights = split.weights("index")
    return [fa.make_person(SEED, "index", n, names=names, photos=weights) for n in range(count)]


def test_query_photos_never_come_from_the_index_photos(split: fa.PhotoSplit) -> None:
    index_groups = {split.groups[label] for label in split.index}
    query_groups = {split.groups[label] for label in split.query}
    assert index_groups and query_groups
    assert not index_groups & query_groups, "a photo group on both sides"
    # Without the shared data, scikit-learn's two photos still give each side one.
    bare = fa.split_photos(Path("/nonexistent/shared-data"))
    assert {bare.groups[label] for label in bare.index}.isdisjoint(
        bare.groups[label] for label in bare.query
    )
    assert bare.index and bare.query


@needs_shared_photos
def test_the_split_keeps_a_portrait_together_and_faces_on_both_sides(
    split: fa.PhotoSplit,
) -> None:
    obama = {label for label in split.groups if "/obama" in label}
    assert len(obama) > 5 and (obama <= set(split.index) or obama <= set(split.query))
    for side in (split.index, split.query):
        assert any(label.startswith("shared:faces/") for label in side)
    # A group's files share one chance together: eleven files of one portrait weigh as one.
    weights = dict(
        zip(split.query + split.index, split.weights("query") + split.weights("index"), strict=True)
    )
    assert sum(weights[label] for label in obama) == pytest.approx(1.0)


def test_avatars_are_cut_from_real_photos(
    split: fa.PhotoSplit, index_photos: list[Image.Image], names: fa.NameModel
) -> None:
    people = _index_people(split, names, 300)
    kinds = Counter(p.avatar.kind for p in people)
    assert kinds["photo"] > 200 and kinds["default"] > 5 and kinds["none"] > 5
    photos = [p for p in people if p.avatar.kind == "photo"][:40]
    colours, spreads = [], []
    for person in photos:
        data = fa.render_avatar(person.avatar, index_photos)
        assert data is not None and data == fa.render_avatar(person.avatar, index_photos)
        with Image.open(io.BytesIO(data)) as img:
            assert img.format == "JPEG" and img.size == (person.avatar.size,) * 2
            pixels = np.asarray(img.convert("RGB")).reshape(-1, 3)
        colours.append(len(np.unique(pixels, axis=0)))
        spreads.append(float(pixels.std()))
        assert person.avatar.describe(split.index).split(" crop ")[0] in split.index
    # Photos, not shapes: a flat-colour drawing has a handful of colours, a crop hundreds.
    assert float(np.median(colours)) > 300
    # A small crop of a plain wall can be all but flat, as some real avatars are; few are.
    assert sum(1 for spread in spreads if spread < 8) <= 0.1 * len(spreads)
    assert any(len(p.avatar.crops) == 2 for p in people)  # some are blends of two crops


def test_names_repeat_with_realistic_frequency(names: fa.NameModel) -> None:
    rng = random.Random(SEED)
    drawn = Counter(fa.canonical_name(*names.draw(rng)) for _ in range(100_000))
    (top, count), *_ = drawn.most_common(1)
    assert count >= 10, f"the most common name, {top!r}, appears only {count} times"
    shared = sum(c for c in drawn.values() if c > 1) / 100_000
    once = sum(1 for c in drawn.values() if c == 1) / 100_000
    assert shared > 0.05, "too few namesakes"
    assert once > 0.05, "no long tail of rare names"


def test_index_handles_are_unique_and_made_as_people_make_them(
    split: fa.PhotoSplit, names: fa.NameModel
) -> None:
    tally = fa.IndexTally()
    handles = [(p, tally.add(p, SEED)) for p in _index_people(split, names, 3000)]
    keys = [identity_key(p.platform, h) for p, h in handles]
    assert len(set(keys)) == len(keys)
    assert all(len(h) <= fa.HANDLE_LIMITS[p.platform] for p, h in handles)
    tiktok_defaults = [h for p, h in handles if p.platform == "tiktok" and h.startswith("user")]
    assert tiktok_defaults and all(re.fullmatch(r"user\d{10,13}", h) for h in tiktok_defaults)
    styles = Counter(p.handle_style for p, _ in handles)
    assert len(styles) >= 10 and max(styles.values()) < 0.3 * len(handles)
    assert tally.names.most_common(1)[0][1] >= 2
    bios = [p.bio for p, _ in handles]
    assert 0.15 < bios.count("") / len(bios) < 0.4
    assert len(set(bios)) > 0.5 * len(bios)


def test_queries_are_fresh_people_with_common_or_unique_names(
    split: fa.PhotoSplit, names: fa.NameModel
) -> None:
    tally = fa.IndexTally()
    for person in _index_people(split, names, 2000):
        tally.add(person, SEED)
    query_photos = [fa.load_photo(label, SHARED) for label in split.query]
    queries = fa.make_queries(
        8,
        population=30,
        seed=SEED + 1,
        tally=tally,
        names=names,
        photos=query_photos,
        weights=split.weights("query"),
    )
    assert [q.stratum for q in queries] == ["common", "unique"] * 4 + ["population"] * 30
    top = {name for name, _ in tally.names.most_common(fa.COMMON_NAMES_POOL)}
    for query in queries:
        assert identity_key(query.person.platform, query.handle) not in tally.taken
        assert query.person.bio and query.avatar
        assert query.namesakes == tally.names[query.person.name]
        if query.stratum == "common":
            assert query.person.name in top and query.namesakes >= 1
        elif query.stratum == "unique":
            assert query.namesakes == 0
    # The population's names are drawn as anyone's: nothing is picked or turned away.
    weights = split.weights("query")
    for number, query in enumerate(queries[8:], start=8):
        drawn = fa.make_person(
            SEED + 1, "query", fa.POPULATION_NUMBERS + number, names=names, photos=weights
        )
        assert query.person == drawn


def test_pool_hashes_are_the_ones_the_engine_computes(
    tmp_path: Path, split: fa.PhotoSplit, index_photos: list[Image.Image], names: fa.NameModel
) -> None:
    settings = Settings(data_dir=tmp_path)
    person = next(p for p in _index_people(split, names, 50) if p.avatar.kind == "photo")
    jpeg = fa.render_avatar(person.avatar, index_photos)
    assert jpeg is not None
    record = parse_record(fa.person_record(person, person.handle, jpeg), where="test")
    engine_reader = AvatarReader(
        AvatarSource(max_bytes=settings.max_image_bytes, timeout_s=5),
        max_bytes=settings.max_image_bytes,
        max_pixels=settings.max_image_pixels,
    )
    expected = engine_reader.read(record, base_dir=None)
    reader = fa.PrehashedAvatars(settings)
    reader.digests[str(person.number)] = avatar_hashing.decode_avatar(
        jpeg, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
    )
    got = reader.read(record, base_dir=None)
    assert expected is not None and got is not None and reader.used == 1
    assert got.blob == expected.blob and np.array_equal(got.hashes, expected.hashes)
    # A digest of other bytes is not used: the reader hashes the record's own.
    other = next(
        p for p in _index_people(split, names, 50) if p.avatar.kind == "photo" and p != person
    )
    other_jpeg = fa.render_avatar(other.avatar, index_photos)
    assert other_jpeg is not None
    reader.digests[str(person.number)] = avatar_hashing.decode_avatar(
        other_jpeg, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
    )
    again = reader.read(record, base_dir=None)
    assert again is not None and reader.used == 1
    assert np.array_equal(again.hashes, expected.hashes)


def _outcome(number: int, stratum: str, likely: int, possible: int) -> fa.QueryOutcome:
    match = {"label": "likely_clone", "score": 0.97, "drivers": ["same_name", "similar_bio"]}
    return fa.QueryOutcome(
        number=number,
        stratum=stratum,
        namesakes=40 if stratum == "common" else 0,
        likely=likely,
        possible=possible,
        top_score=0.97 if likely else 0.6,
        matches=[match] * likely,
    )


def test_summary_rates_quantiles_and_extrapolation() -> None:
    outcomes = [_outcome(n, "unique", 0, p) for n, p in enumerate([0, 0, 0, 4])]
    outcomes += [_outcome(4 + n, "common", int(n == 0), p) for n, p in enumerate([1, 2, 3, 10])]
    outcomes += [_outcome(8 + n, "population", 0, p) for n, p in enumerate([0, 0, 1, 1, 3])]
    report = fa.summarize(outcomes, index_profiles=5000, worst=3)
    flagged = report["false_likely_clone"]
    assert (flagged["queries_with_any"], flagged["share"]) == (1, round(1 / 13, 5))
    assert flagged["share_95pct_upper"] > flagged["share"]
    assert not flagged["observed_within_target"]
    unique, common = report["by_name"]["unique"], report["by_name"]["common"]
    assert unique["possible_clone_matches"]["median"] == 0.0
    assert common["possible_clone_matches"]["median"] == 2.5
    assert common["possible_clone_matches"]["p90"] == pytest.approx(7.9)
    assert report["what_drove_the_matches"]["likely_clone"] == {"same_name+similar_bio": 1}
    per_million = report["per_1m_scanned_accounts"]
    assert per_million["if_all_common"]["accounts_with_a_false_likely_clone"] == 250_000
    assert per_million["if_all_unique"]["accounts_with_a_false_likely_clone"] == 0
    assert per_million["if_all_unique"]["accounts_with_a_false_likely_clone_95pct_upper"] > 0
    # The population queries: 5 matches in 5 checks, 3 of the 5 checks with any.
    expected = per_million["expected"]
    assert expected["possible_clone_matches_to_review"] == 1_000_000
    assert expected["accounts_with_a_possible_clone"] == 600_000
    bins = report["by_namesakes_in_index"]
    assert set(bins) == {"0", "20 to 99"} and bins["0"]["queries"] == 9
    assert len(report["worst_false_alarms"]) == 1 and len(report["per_query"]) == 13


@pytest.mark.slow
def test_a_tiny_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "false_alarms.json"
    args = ["--profiles", "300", "--queries", "6", "--population-queries", "4"]
    args += ["--seed", str(SEED), "--out", str(out)]
    assert fa.main([*args, "--processes", "0", "--workdir", str(tmp_path / "work")]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["provenance"]["command"].startswith("python -m bench.false_alarms --profiles 300")
    assert report["ingest"]["rejected"] == 0 and report["index"]["avatars"]["photo"] > 200
    assert report["nearest_unrelated_avatar"]["queries"] == 10
    flagged = report["false_likely_clone"]
    assert flagged["queries"] == 10 and 0 <= flagged["share"] <= 1
    for kind, count in (("unique", 3), ("common", 3), ("population", 4)):
        stats = report["by_name"][kind]
        assert stats["queries"] == count
        assert {"median", "p90"} <= set(stats["possible_clone_matches"])
    assert report["by_name"]["unique"]["namesakes_in_index"]["max"] == 0
    assert report["by_name"]["common"]["namesakes_in_index"]["min"] >= 1
    assert len(report["per_query"]) == 10
    per_million = report["per_1m_scanned_accounts"]
    assert per_million["index_profiles"] == 300 and per_million["method"]
    for kind in ("expected", "if_all_unique", "if_all_common"):
        assert "accounts_with_a_false_likely_clone_95pct_upper" in per_million[kind]
    for match in report["worst_false_alarms"]:
        assert match["label"] in ("likely_clone", "possible_clone") and match["reasons"]
        query_avatar = match["query_profile"]["avatar"]
        assert not any(label in query_avatar for label in report["photos"]["index"])
    # The same workdir again: the index is reused, the checks give the same answers.
    again = tmp_path / "again.json"
    assert (
        fa.main([*args[:-1], str(again), "--processes", "0", "--workdir", str(tmp_path / "work")])
        == 0
    )
    second = json.loads(again.read_text(encoding="utf-8"))
    assert second["ingest"]["reused_from"] == str(tmp_path / "work")
    assert second["ingest"]["profiles_per_s"] == report["ingest"]["profiles_per_s"]
    assert second["per_query"] == report["per_query"]
