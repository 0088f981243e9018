"""Score only the pairs that can matter: bound every pair from four similarities, compare few.

A check's candidates number in the dozens and a batch's in the tens of thousands, but only a
handful of pairs reach the least score asked for. Comparing a pair in full (look-alike notes,
handle spellings, popularity, context) costs microseconds of Python; measuring its four field
similarities for a whole batch costs a few array operations, and the score table
(`models.bounds.ScoreBounds`) turns them into the most each pair could score. Pairs are then
compared and scored in full, highest bound first, only while they can still reach the result:
below `min_score` never, and past the best `top_k` once the next bound falls short of the k-th
score. The result is exactly the one of scoring every pair.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from indexers.compare import Popularity, ProfileSide, SideColumns, compare, pair_similarities
from models.bounds import ScoreBounds
from models.result import PairEvidence
from models.scoring import ScoringModel

# Pairs compared and scored in full per query at a time, best bound first, while the rest
# could still reach the query's top_k.
COMPARE_SLICE = 32
# A score is rounded to 4 places before it is ranked or meets min_score.
_ROUNDING_MARGIN = 1e-4

Scored = tuple[int, PairEvidence, float]  # (candidate column, evidence, probability)


@dataclass(frozen=True, slots=True)
class ScreenQuery:
    """One query of a screened batch: its side, its candidates (rows of the batch's candidate
    columns, in the order ties are broken in) and how common its avatar, bio and name are."""

    side: ProfileSide
    candidates: list[int]
    popularity: Popularity


def best_pairs(
    scorer: ScoringModel,
    bounds: ScoreBounds,
    queries: Sequence[ScreenQuery],
    candidates: SideColumns,
    sides_of: Callable[[list[int]], dict[int, ProfileSide]],
    *,
    top_k: int | None,
    min_score: float,
) -> list[list[Scored]]:
    """Each query's best `top_k` pairs (all of them when None) scoring at least `min_score`,
    best first, ties in candidate order.

    `sides_of` gives the full sides of some candidate columns (read from the store, say); a
    column it leaves out (a profile deleted meanwhile) is not compared. Each round reads the
    sides of all queries' next slices at once and scores them in one model call.
    """
    if not queries:
        return []
    bio_dim = candidates.bio_vectors.shape[1]
    counts = [len(q.candidates) for q in queries]
    query_of = np.repeat(np.arange(len(queries)), counts)
    candidate_of = np.fromiter(
        (c for q in queries for c in q.candidates), dtype=np.intp, count=len(query_of)
    )
    alike = pair_similarities(
        SideColumns.of([q.side for q in queries], bio_dim=bio_dim),
        candidates,
        query_of,
        candidate_of,
    )
    bound = bounds.of(avatar=alike.avatar, bio=alike.bio, name=alike.name, handle=alike.handle)
    ends = np.cumsum(counts).tolist()
    screens = [
        _Screen(q, bound[end - len(q.candidates) : end], min_score=min_score)
        for q, end in zip(queries, ends, strict=True)
    ]
    limit = sys.maxsize if top_k is None else top_k
    sides: dict[int, ProfileSide] = {}
    pending = [screen for screen in screens if screen.has_next()]
    while pending:
        sliced = [(screen, screen.next_slice()) for screen in pending]
        needed = {column for _, taken in sliced for column in taken} - sides.keys()
        if needed:
            sides.update(sides_of(sorted(needed)))
        present = [(screen, [c for c in taken if c in sides]) for screen, taken in sliced]
        evidence = [
            compare(
                screen.query.side, [sides[c] for c in taken], popularity=screen.query.popularity
            )
            for screen, taken in present
        ]
        flat = [e for pairs in evidence for e in pairs]
        probabilities = iter(scorer.probabilities(flat).tolist())
        for (screen, taken), pairs in zip(present, evidence, strict=True):
            for column, e in zip(taken, pairs, strict=True):
                screen.add(column, e, next(probabilities))
        pending = [s for s in pending if s.has_next() and s.may_improve(limit)]
    return [screen.best(limit) for screen in screens]


class _Screen:
    """One query's candidates on their way to its best pairs: the bound of each pair, and the
    pairs scored so far. Pairs are scored in order of their bound; once `top_k` scores are in
    and the next bound is below the k-th of them, no pair left can enter, nor tie with, the
    best `top_k`. A pair whose bound is below `min_score` is never scored."""

    def __init__(self, query: ScreenQuery, bound: np.ndarray, *, min_score: float) -> None:
        self.query = query
        self._min_score = min_score
        order = np.argsort(-bound, kind="stable")
        reachable = bound[order] >= min_score - _ROUNDING_MARGIN
        self._order = order[reachable].tolist()  # positions in query.candidates
        self._bounds = bound[order][reachable].tolist()
        self._next = 0
        # (rounded score, position in query.candidates, column, evidence, probability)
        self._scored: list[tuple[float, int, int, PairEvidence, float]] = []
        self._position = {column: i for i, column in enumerate(query.candidates)}

    def has_next(self) -> bool:
        return self._next < len(self._order)

    def next_slice(self) -> list[int]:
        """The candidate columns of the next slice, best bound first."""
        taken = self._order[self._next : self._next + COMPARE_SLICE]
        self._next += len(taken)
        return [self.query.candidates[i] for i in taken]

    def add(self, column: int, evidence: PairEvidence, probability: float) -> None:
        score = round(probability, 4)
        if score >= self._min_score:
            self._scored.append((score, self._position[column], column, evidence, probability))

    def may_improve(self, top_k: int) -> bool:
        """Whether an unscored pair could still enter (or tie with) the best `top_k`."""
        if len(self._scored) < top_k:
            return True
        kth = sorted(item[0] for item in self._scored)[-top_k]
        return self._bounds[self._next] >= kth - _ROUNDING_MARGIN

    def best(self, top_k: int) -> list[Scored]:
        ranked = sorted(self._scored, key=lambda item: (-item[0], item[1]))[:top_k]
        return [(column, e, p) for _, _, column, e, p in ranked]
