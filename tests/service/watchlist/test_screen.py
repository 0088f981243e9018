"""The watchlist's screen: the score bound it relies on, and what it keeps (no model needed)."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime

import numpy as np

from indexers import avatar as avatar_hashing
from indexers import text
from indexers.compare import ProfileSide, compare
from models.bounds import ABSENT, ScoreBounds
from models.result import PairEvidence
from models.scoring import ScoringModel
from service.store.watchlist import EntryRow
from service.watchlist.service import _EntrySet
from tests.images import photo

DIM = 8


def _random_evidence(rng: random.Random) -> PairEvidence:
    """A pair as comparison could measure it: exact flags only where the similarity says so,
    and every other flag or count of the evidence (present or added later) set at random."""

    def similarity(*, exact_at: float = 1.0) -> tuple[float | None, bool]:
        if rng.random() < 0.2:
            return None, False
        value = rng.choice([rng.random(), 1.0, rng.uniform(0.8, 1.0)])
        return value, value >= exact_at and rng.random() < 0.8

    avatar, _ = similarity()
    name, name_exact = similarity()
    handle, handle_exact = similarity()
    bio, bio_exact = similarity(exact_at=0.95)
    known = {
        "avatar": avatar,
        "display_name": name,
        "display_name_exact": name_exact,
        "handle": handle,
        "handle_exact": handle_exact,
        "bio": bio,
        "bio_exact": bio_exact,
    }
    values: dict[str, object] = {}
    for f in dataclasses.fields(PairEvidence):
        if f.name in known:
            values[f.name] = known[f.name]
        elif f.type in ("bool", bool):
            values[f.name] = rng.random() < 0.5
        elif f.type in ("int", int):
            values[f.name] = rng.randint(0, 20)
    return PairEvidence(**values)  # type: ignore[arg-type]


def _index(value: float | None, *, optional: bool) -> int:
    if value is None:
        return ABSENT if optional else int(ScoreBounds.steps(np.asarray(0.0)))
    return int(ScoreBounds.steps(np.asarray(value)))


def test_the_table_bounds_the_score_of_every_pair(
    scorer: ScoringModel, bounds: ScoreBounds
) -> None:
    """What the screen stands on: no pair scores above its looked-up bound. A new feature that
    breaks this (a likeness flag the table leaves unset) fails here, not in production."""
    rng = random.Random(11)
    evidence = [_random_evidence(rng) for _ in range(4000)]
    scores = scorer.probabilities(evidence)
    for e, score in zip(evidence, scores, strict=True):
        bound = bounds.table[
            _index(e.avatar, optional=True),
            _index(e.bio, optional=True),
            _index(e.display_name, optional=False),
            _index(e.handle, optional=False),
        ]
        assert score <= bound + 1e-12, e


def test_the_table_is_not_trivial(bounds: ScoreBounds, scorer: ScoringModel) -> None:
    # Unalike pairs are bounded below possible_clone, so the screen drops them.
    floor = scorer.thresholds.possible_clone
    assert bounds.table[ABSENT, ABSENT, 3, 3] < floor
    assert bounds.table[2, 2, 5, 5] < floor
    assert bounds.table[10, 10, 10, 10] > scorer.thresholds.likely_clone


def _entry(entry_id: int, side: ProfileSide, *, threshold: float = 0.4) -> EntryRow:
    return EntryRow(
        id=entry_id, key_id=1, platform_key=None, handle_key=None, profile_id=None,
        identity={}, display_name=side.display_name, name_key=side.name_key,
        handle_norm=side.handle_norm, bio=side.bio,
        bio_vector=None if side.bio_vector is None else side.bio_vector.tobytes(),
        avatar_hashes=None if side.avatar_hashes is None else side.avatar_hashes.tobytes(),
        account_created_at=None, followers_count=None, verified=None, threshold=threshold,
        webhook_url=None, webhook_secret=None, created_at=datetime.now(UTC),
    )  # fmt: skip


def _side(
    name: str, handle: str, *, seed: int | None = None, bio: int | None = None
) -> ProfileSide:
    vector = None
    if bio is not None:
        vector = np.zeros(DIM, dtype=np.float32)
        vector[bio] = 1.0
    return ProfileSide(
        display_name=name or None,
        name_key=text.normalize_name(name),
        handle_norm=text.normalize_handle(handle),
        bio=f"bio number {bio}" if bio is not None else None,
        avatar_hashes=None if seed is None else avatar_hashing.hash_image(photo(seed, size=96)),
        bio_vector=vector,
    )


def test_the_screen_keeps_what_can_alert_and_drops_what_cannot(
    bounds: ScoreBounds, scorer: ScoringModel
) -> None:
    jane = _side("Jane Doe", "janedoe", seed=1, bio=0)
    omar = _side("Omar Haddad", "ohaddad", seed=2, bio=1)
    entries = _EntrySet((2, 2), [_entry(1, jane), _entry(2, omar, threshold=0.99)], bio_dim=DIM)
    incoming = [
        _side("Jаne Doe", "jane_doe_official", seed=1, bio=0),  # a full copy of Jane
        _side("Luca Rossi", "lrossi", seed=3, bio=2),  # nobody's copy
        _side("Omar Haddad", "omar.haddad", seed=2),  # a copy of Omar's name and photo
        _side("", "x"),  # nothing to compare but a handle
    ]
    kept = entries.screen(incoming, bounds=bounds)
    for position, side in enumerate(incoming):
        for entry_position, entry_side in enumerate(entries.sides):
            score = scorer.probabilities(compare(entry_side, [side]))[0]
            if round(float(score), 4) >= entries.rows[entry_position].threshold:
                assert position in kept.get(entry_position, [])
    assert kept.get(0) == [0]
    assert 1 not in kept.get(0, []) and 3 not in kept.get(0, [])
    assert 1 not in kept.get(1, []) and 3 not in kept.get(1, [])


def test_an_empty_batch_or_watchlist_keeps_nothing(bounds: ScoreBounds) -> None:
    empty = _EntrySet((0, 0), [], bio_dim=DIM)
    assert empty.screen([_side("Jane Doe", "janedoe")], bounds=bounds) == {}
    one = _EntrySet((1, 1), [_entry(1, _side("Jane Doe", "janedoe"))], bio_dim=DIM)
    assert one.screen([], bounds=bounds) == {}
