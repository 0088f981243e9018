"""The matcher: one query profile in, ranked and explained matches out, in one pass.

Ask each index for candidates (avatar hashes, bio vector, name and handle keys), union the ids,
load them in one query, compare every pair in one batch and score them in one batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from indexers import avatar as avatar_hashing
from indexers import text
from indexers.compare import BIO_NEAR_IDENTICAL, Popularity, ProfileSide, compare
from models.profile import identity_key
from models.result import Match, PairEvidence
from models.scoring import ScoringModel
from service.features import side_of_row
from service.indexes import IndexSet
from service.store import ProfileRow, Store

logger = logging.getLogger(__name__)

# Candidates asked of each index; a clone is near the top of at least one of them.
AVATAR_CANDIDATES = 32
BIO_CANDIDATES = 32
NAME_CANDIDATES = 48


@dataclass(frozen=True, slots=True)
class Candidates:
    ids: list[int]
    popularity: Popularity


def name_popularity(query: ProfileSide, rows: Sequence[ProfileRow]) -> int:
    """How many of the candidates carry exactly the query's (folded) name: many means namesakes."""
    if not query.name_key:
        return 0
    return sum(1 for row in rows if row.name_key == query.name_key)


class Matcher:
    """Finds and scores the likely copies of one profile against the indexed store."""

    def __init__(self, store: Store, indexes: IndexSet, scorer: ScoringModel) -> None:
        self._store = store
        self.indexes = indexes
        self._scorer = scorer

    def candidates(self, query: ProfileSide, *, exclude_id: int | None) -> Candidates:
        """Ids the indexes propose, and how common the query's avatar and bio are."""
        found: dict[int, None] = {}
        avatar_popularity = bio_popularity = 0
        with self.indexes.reading():
            if query.avatar_hashes is not None:
                codes = avatar_hashing.query_codes(query.avatar_hashes)
                distances, ids = self.indexes.avatar.search(codes, AVATAR_CANDIDATES)
                near = {
                    int(i)
                    for d, i in zip(distances.ravel(), ids.ravel(), strict=True)
                    if i >= 0 and i != exclude_id and d <= avatar_hashing.SAME_IMAGE_BITS
                }
                avatar_popularity = len(near)
                found.update(dict.fromkeys(int(i) for i in ids.ravel() if i >= 0))
            if query.bio_vector is not None:
                scores, ids = self.indexes.bio.search(query.bio_vector[None, :], BIO_CANDIDATES)
                bio_popularity = sum(
                    1
                    for s, i in zip(scores[0], ids[0], strict=True)
                    if i >= 0 and i != exclude_id and s >= BIO_NEAR_IDENTICAL
                )
                found.update(dict.fromkeys(int(i) for i in ids[0] if i >= 0))
            if query.name_key or query.handle_norm:
                keys = text.candidate_keys(query.name_key, query.handle_norm)
                for profile_id, _shared in self.indexes.names.search(keys, NAME_CANDIDATES):
                    found[int(profile_id)] = None
        found.pop(exclude_id, None)  # type: ignore[arg-type]
        return Candidates(list(found), Popularity(avatar=avatar_popularity, bio=bio_popularity))

    def neighbourhood(
        self, query: ProfileSide, *, exclude_id: int | None
    ) -> tuple[list[ProfileRow], Popularity]:
        """The candidate profiles, loaded in one query, and how common the query's avatar,
        bio and name are among the indexed profiles."""
        found = self.candidates(query, exclude_id=exclude_id)
        rows = self._store.get_many(found.ids)
        return rows, replace(found.popularity, name=name_popularity(query, rows))

    def evidence(
        self, query: ProfileSide, rows: Sequence[ProfileRow], *, popularity: Popularity
    ) -> list[PairEvidence]:
        return compare(query, [side_of_row(row) for row in rows], popularity=popularity)

    def match(
        self,
        query: ProfileSide,
        *,
        query_key: tuple[str, str],
        exclude_id: int | None,
        top_k: int,
        min_score: float,
    ) -> list[Match]:
        """The best `top_k` matches scoring at least `min_score`, highest first."""
        neighbours, popularity = self.neighbourhood(query, exclude_id=exclude_id)
        rows = [row for row in neighbours if identity_key(row.platform, row.handle) != query_key]
        if not rows:
            return []
        evidence = self.evidence(query, rows, popularity=popularity)
        verdicts = self._scorer.score(evidence)
        order = np.argsort([-v.score for v in verdicts], kind="stable")
        matches: list[Match] = []
        for i in order:
            verdict = verdicts[i]
            if verdict.score < min_score or len(matches) >= top_k:
                break
            matches.append(
                Match(
                    profile=rows[i].to_stored().model_dump(mode="json", exclude_none=True),
                    score=verdict.score,
                    label=verdict.label,
                    signals=evidence[i].signals(),
                    reasons=verdict.reasons,
                    likely_impersonator=verdict.likely_impersonator,
                )
            )
        return matches
