"""The screen in front of full comparison: it must keep exactly what scoring every pair keeps."""

from __future__ import annotations

import random

import numpy as np
import pytest

from indexers import text
from indexers.compare import Popularity, ProfileSide, SideColumns, compare
from models.bounds import ScoreBounds
from models.scoring import ScoringModel
from service.matching.pair_screening import ScreenQuery, best_pairs

DIM = 16
FIRST = ["maria", "jane", "daniele", "devon", "paul", "olga", "sam"]
LAST = ["garcia", "doe", "cotronei", "holcomb", "martin", "ivanova", "foler"]


def _profiles(rng: random.Random, n: int) -> list[ProfileSide]:
    """Few names, handles, photos and bios, so that many pairs are alike in some field and
    some in all: clones, namesakes, strangers and ties."""
    photos = np.random.default_rng(rng.randint(0, 1000)).integers(0, 256, (6, 2, 7, 8), np.uint8)
    topics = np.random.default_rng(rng.randint(0, 1000)).standard_normal((5, DIM))
    sides = []
    for _ in range(n):
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        handle = name.replace(" ", rng.choice(["", "_", "."])) + rng.choice(["", "1", "99"])
        if rng.random() < 0.2:
            handle = handle.replace("o", "0")
        hashes = None
        if rng.random() < 0.6:
            hashes = photos[rng.randrange(6)].copy()
            hashes[0, 0, 0] ^= rng.choice([0, 1, 7, 255])  # a few bits off, or many
        vector = None
        if rng.random() < 0.6:
            v = topics[rng.randrange(5)] + rng.choice([0.0, 0.2, 1.0]) * rng.random()
            vector = (v / np.linalg.norm(v)).astype(np.float32)
        sides.append(
            ProfileSide(
                display_name=name.title(),
                name_key=text.normalize_name(name),
                handle=handle,
                handle_norm=text.normalize_handle(handle),
                bio="bio" if vector is not None else None,
                avatar_hashes=hashes,
                bio_vector=vector,
            )
        )
    return sides


def _everything_scored(
    scorer: ScoringModel,
    query: ScreenQuery,
    sides: list[ProfileSide],
    top_k: int | None,
    min_score: float,
) -> list[tuple[int, float]]:
    evidence = compare(
        query.side, [sides[c] for c in query.candidates], popularity=query.popularity
    )
    probabilities = scorer.probabilities(evidence)
    scored = [
        (round(float(p), 4), i, c)
        for i, (c, p) in enumerate(zip(query.candidates, probabilities, strict=True))
        if round(float(p), 4) >= min_score
    ]
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [(c, score) for score, _, c in scored[:top_k]]


@pytest.mark.parametrize(
    ("top_k", "min_score"), [(10, 0.4), (3, 0.0), (1, 0.0), (None, 0.4), (None, 0.0), (5, 0.8)]
)
def test_the_screen_keeps_exactly_what_scoring_every_pair_keeps(
    scorer: ScoringModel, bounds: ScoreBounds, top_k: int | None, min_score: float
) -> None:
    rng = random.Random(3)
    sides = _profiles(rng, 300)
    columns = SideColumns.of(sides, bio_dim=DIM)
    queries = [
        ScreenQuery(
            side=_profiles(rng, 1)[0],
            candidates=sorted(rng.sample(range(len(sides)), 80)),
            popularity=Popularity(name=rng.choice([0, 1, 5])),
        )
        for _ in range(40)
    ]
    read: list[int] = []

    def sides_of(wanted: list[int]) -> dict[int, ProfileSide]:
        read.extend(wanted)
        return {c: sides[c] for c in wanted}

    screened = best_pairs(
        scorer, bounds, queries, columns, sides_of, top_k=top_k, min_score=min_score
    )
    kept = 0
    for query, pairs in zip(queries, screened, strict=True):
        expected = _everything_scored(scorer, query, sides, top_k, min_score)
        assert [(c, round(p, 4)) for c, _, p in pairs] == expected
        kept += len(pairs)
    assert kept >= 5  # likely clones among them: the comparison means something
    if min_score > 0:
        # And it is a screen: most pairs are never compared in full.
        assert len(read) < 0.5 * sum(len(q.candidates) for q in queries)


def test_a_candidate_gone_before_it_is_read_is_left_out(
    scorer: ScoringModel, bounds: ScoreBounds
) -> None:
    sides = _profiles(random.Random(5), 50)
    query = ScreenQuery(side=sides[0], candidates=list(range(1, 50)), popularity=Popularity())
    [everything] = best_pairs(
        scorer, bounds, [query], SideColumns.of(sides, bio_dim=DIM),
        lambda wanted: {c: sides[c] for c in wanted}, top_k=None, min_score=0.0,
    )  # fmt: skip
    gone = everything[0][0]
    [without] = best_pairs(
        scorer, bounds, [query], SideColumns.of(sides, bio_dim=DIM),
        lambda wanted: {c: sides[c] for c in wanted if c != gone}, top_k=None, min_score=0.0,
    )  # fmt: skip
    assert [c for c, _, _ in without] == [c for c, _, _ in everything if c != gone]
