"""The matcher: one query profile in, ranked and explained matches out, in one pass.

Ask each index for candidates (avatar hashes, bio vector, name and handle keys), union the ids,
read them as narrow rows in one query, and let the screen (`service.matching.pair_screening`)
compare and score in full only the pairs that can reach the result.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from indexers import avatar as avatar_hashing
from indexers import text
from indexers.compare import (
    BIO_NEAR_IDENTICAL,
    NEAR_COPY_BITS,
    RIVAL_SEARCH_BITS,
    Popularity,
    ProfileSide,
    Sharers,
    compare,
    identity_popularity,
)
from models.bounds import ScoreBounds
from models.result import Match, PairEvidence, Verdict
from models.scoring import AVATAR_EVIDENCE_FROM, BIO_EVIDENCE_FROM, ScoringModel
from service.indexes import IndexSet
from service.indexes.base import NameIndex
from service.matching.pair_screening import ScreenQuery, best_pairs
from service.matching.profile_sides import columns_of_rows, hashes_from_bytes, side_of_row
from service.store import ComparableRow, ProfileRow, Store

logger = logging.getLogger(__name__)

# Candidates asked of each index; a clone is near the top of at least one of them.
AVATAR_CANDIDATES = 32
BIO_CANDIDATES = 32
NAME_CANDIDATES = 48
# The name index proposes a pool ranked by shared n-grams, which the true name and handle
# similarities then re-rank. How deep in that ranking the most alike names lie grows with the
# number of indexed names, so the pool does too: a 160th of them, within these bounds.
NAME_POOL_MIN = 400
NAME_POOL_MAX = 12_800
NAME_POOL_SHARE = 160
# Names are re-ranked within the pool's best part only: a handle's likeness (one Indel ratio)
# follows shared grams less closely than a name's, so the most alike handles lie deeper, and
# the name's three ratios cost most of the re-ranking.
NAME_SHARE_OF_POOL = 5 / 8
# The farthest avatar that is still evidence of a copy (its strength is above 0).
AVATAR_EVIDENCE_BITS = next(
    bits
    for bits in range(avatar_hashing.UNRELATED_BITS, -1, -1)
    if avatar_hashing.avatar_similarity(bits) > AVATAR_EVIDENCE_FROM
)


def _best_distance_per_id(distances: np.ndarray, ids: np.ndarray) -> dict[int, int]:
    """Each id found by any of a query's views, at its smallest distance."""
    best: dict[int, int] = {}
    for d, j in zip(distances.ravel().tolist(), ids.ravel().tolist(), strict=True):
        if j >= 0 and d < best.get(j, 1 << 30):
            best[j] = d
    return best


@dataclass(frozen=True, slots=True)
class Candidates:
    ids: list[int]
    # Which of them carry the query's avatar or bio: how common those are is judged once the
    # sharers' names and handles are read (`popularity`).
    sharers: Sharers
    # Proposed only by an index whose field is no evidence for them (an avatar more than
    # AVATAR_EVIDENCE_BITS away, a bio at most BIO_EVIDENCE_FROM alike): such a pair cannot
    # reach possible_clone on that field, and had it other likeness, another index would have
    # proposed it. Only rankings read to the bottom (min_score below possible_clone) need them.
    weak: frozenset[int] = frozenset()

    def without_weak(self) -> Candidates:
        """These candidates but the weak ones: enough for results at or above possible_clone."""
        return replace(self, ids=[i for i in self.ids if i not in self.weak], weak=frozenset())


@dataclass(frozen=True, slots=True)
class LoadedCandidates:
    """A batch's candidates and their rows as screening reads them, for one `min_score`
    (which decides whether the weak candidates were read)."""

    found: list[Candidates]
    rows: list[ComparableRow]
    min_score: float


@dataclass(frozen=True, slots=True)
class MatchQuery:
    """One query of a batch: its side, its identity (never its own match) and, when it is a
    stored profile, that profile's id (left out of its candidates)."""

    side: ProfileSide
    key: tuple[str, str]
    exclude_id: int | None


def name_pool(indexed: int) -> int:
    """How many candidates to ask the name index for, when it holds `indexed` profiles."""
    return min(NAME_POOL_MAX, max(NAME_POOL_MIN, indexed // NAME_POOL_SHARE))


def name_candidates(
    index: NameIndex,
    name_key: str,
    handle_norm: str,
    *,
    pool: int,
    k: int = NAME_CANDIDATES,
) -> list[int]:
    """The indexed profiles most alike the query by name or by handle: the `k` of them best
    by `text.name_similarity` and `text.handle_similarity`, half taken from each ranking in
    turn (so the most alike by either is there), out of the index's `pool` best by n-grams
    (names out of its best `NAME_SHARE_OF_POOL`).

    The n-gram ranking only approximates these similarities (a name can share few grams yet
    be one letter or one word order away), so it is read deep and re-ranked exactly; the
    caller's screen then compares the `k` in full."""
    if not (name_key or handle_norm):
        return []
    hits = index.search_texts(text.candidate_keys(name_key, handle_norm), max(pool, k))
    if len(hits.ids) <= k:
        return hits.ids.tolist()  # type: ignore[no-any-return]
    # Stable sorts: among equally alike names, the pool's own order (more shared grams).
    names = hits.names[: max(k, round(pool * NAME_SHARE_OF_POOL))]
    by_name = np.argsort(-text.name_scores(name_key, names), kind="stable")
    by_handle = np.argsort(-text.handle_scores(handle_norm, hits.handles), kind="stable")
    turns = np.stack([by_name, by_handle[: len(by_name)]], axis=1).reshape(-1)
    _, first = np.unique(turns, return_index=True)
    chosen = turns[np.sort(first)][:k]
    return hits.ids[chosen].tolist()  # type: ignore[no-any-return]


def popularity_among(
    query: ProfileSide, found: Candidates, rows: Sequence[ProfileRow | ComparableRow]
) -> Popularity:
    """How many unrelated identities among the candidates share the query's avatar, bio and
    name (`indexers.compare.identity_popularity`), from the candidates' rows."""
    return identity_popularity(
        query,
        replace(found.sharers, avatar_bits=_chance_meetings(query, found.sharers, rows)),
        {row.id: (row.name_key, row.handle_norm, _handle_of(row)) for row in rows},
    )


def _chance_meetings(
    query: ProfileSide, sharers: Sharers, rows: Sequence[ProfileRow | ComparableRow]
) -> tuple[tuple[object, int], ...]:
    """The avatar search's finds whose pictures meet the query's by chance: a find that agrees
    with it view for view is a copy of the same picture (counted as a sharer, stock or
    stolen), not a rival that makes a match ambiguous."""
    if query.avatar_hashes is None or not sharers.avatar_bits:
        return ()
    stored = {row.id: row.avatar_hashes for row in rows}

    def by_chance(key: object) -> bool:
        picture = hashes_from_bytes(stored.get(key))  # type: ignore[call-overload]
        return picture is not None and (
            avatar_hashing.aligned_distance(query.avatar_hashes, picture)  # type: ignore[arg-type]
            > avatar_hashing.AGREEING_VIEWS_BITS
        )

    return tuple((key, bits) for key, bits in sharers.avatar_bits if by_chance(key))


def _handle_of(row: ProfileRow | ComparableRow) -> str:
    # A narrow row keeps the handle folded (case aside, as handle_edits compares them).
    return row.handle if isinstance(row, ProfileRow) else row.handle_key


class Matcher:
    """Finds and scores the likely copies of one profile against the indexed store."""

    def __init__(self, store: Store, indexes: IndexSet, scorer: ScoringModel) -> None:
        self._store = store
        self.indexes = indexes
        self._scorer = scorer

    @functools.cached_property
    def bounds(self) -> ScoreBounds:
        """Each pair's most possible score from its four similarities (built at first use)."""
        return ScoreBounds(self._scorer)

    def candidates(self, query: ProfileSide, *, exclude_id: int | None) -> Candidates:
        """Ids the indexes propose, and how common the query's avatar and bio are."""
        return self.candidates_many([query], exclude_ids=[exclude_id])[0]

    def candidates_many(
        self, queries: Sequence[ProfileSide], *, exclude_ids: Sequence[int | None]
    ) -> list[Candidates]:
        """`candidates` of many queries, asking each FAISS index once for the whole batch.

        Each query's answer is the one it gets alone: FAISS ranks every query row on its own,
        and the name index is asked per query.
        """
        found: list[dict[int, None]] = [{} for _ in queries]
        weak: list[set[int]] = [set() for _ in queries]
        strong: list[set[int]] = [set() for _ in queries]
        avatar_sharers: list[tuple[int, ...]] = [() for _ in queries]
        avatar_near: list[tuple[int, ...]] = [() for _ in queries]
        avatar_bits: list[tuple[tuple[int, int], ...]] = [() for _ in queries]
        bio_sharers: list[tuple[int, ...]] = [() for _ in queries]
        with self.indexes.reading():
            with_avatar = [i for i, q in enumerate(queries) if q.avatar_hashes is not None]
            if with_avatar:
                blocks = [
                    avatar_hashing.query_codes(queries[i].avatar_hashes)  # type: ignore[arg-type]
                    for i in with_avatar
                ]
                all_distances, all_ids = self.indexes.avatar.search(
                    np.concatenate(blocks), AVATAR_CANDIDATES
                )
                start = 0
                for i, block in zip(with_avatar, blocks, strict=True):
                    best = _best_distance_per_id(
                        all_distances[start : start + len(block)],
                        all_ids[start : start + len(block)],
                    )
                    start += len(block)
                    best.pop(exclude_ids[i], None)  # type: ignore[arg-type]
                    avatar_sharers[i] = tuple(
                        j for j, d in best.items() if d <= avatar_hashing.SAME_IMAGE_BITS
                    )
                    avatar_near[i] = tuple(j for j, d in best.items() if d <= NEAR_COPY_BITS)
                    avatar_bits[i] = tuple(
                        (j, d) for j, d in best.items() if d <= RIVAL_SEARCH_BITS
                    )
                    # Each profile once, at its best view.
                    nearest = sorted((d, j) for j, d in best.items())[:AVATAR_CANDIDATES]
                    for d, j in nearest:
                        found[i][j] = None
                        (strong if d <= AVATAR_EVIDENCE_BITS else weak)[i].add(j)
            with_bio = [i for i, q in enumerate(queries) if q.bio_vector is not None]
            if with_bio:
                matrix = np.stack([queries[i].bio_vector for i in with_bio])  # type: ignore[misc]
                all_scores, all_ids = self.indexes.bio.search(matrix, BIO_CANDIDATES)
                for row, i in enumerate(with_bio):
                    bio_sharers[i] = tuple(
                        int(j)
                        for sim, j in zip(all_scores[row], all_ids[row], strict=True)
                        if j >= 0 and j != exclude_ids[i] and sim >= BIO_NEAR_IDENTICAL
                    )
                    for sim, j in zip(all_scores[row].tolist(), all_ids[row].tolist(), strict=True):
                        if j >= 0:
                            found[i][j] = None
                            (strong if sim > BIO_EVIDENCE_FROM else weak)[i].add(j)
            # The index's size may be a server round trip (Milvus): asked only when needed.
            named = any(q.name_key or q.handle_norm for q in queries)
            pool = name_pool(len(self.indexes.names)) if named else 0
            for i, query in enumerate(queries):
                if query.name_key or query.handle_norm:
                    for profile_id in name_candidates(
                        self.indexes.names, query.name_key, query.handle_norm, pool=pool
                    ):
                        found[i][profile_id] = None
                        strong[i].add(profile_id)
        out = []
        for i, proposed in enumerate(found):
            proposed.pop(exclude_ids[i], None)  # type: ignore[arg-type]
            sharers = Sharers(
                avatar=avatar_sharers[i],
                bio=bio_sharers[i],
                avatar_near=avatar_near[i],
                avatar_bits=avatar_bits[i],
            )
            out.append(Candidates(list(proposed), sharers, frozenset(weak[i] - strong[i])))
        return out

    def neighbourhood(
        self, query: ProfileSide, *, exclude_id: int | None
    ) -> tuple[list[ProfileRow], Popularity]:
        """The candidate profiles, loaded in one query, and how common the query's avatar,
        bio and name are among the indexed profiles."""
        found = self.candidates(query, exclude_id=exclude_id)
        rows = self._store.get_many(found.ids)
        return rows, popularity_among(query, found, rows)

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
        return self.match_many(
            [MatchQuery(query, key=query_key, exclude_id=exclude_id)],
            top_k=top_k,
            min_score=min_score,
        )[0]

    def match_many(
        self, queries: Sequence[MatchQuery], *, top_k: int, min_score: float
    ) -> list[list[Match]]:
        """`match` for many queries in one pass: each index asked once for the batch, every
        candidate of the batch loaded in one store query and turned into a comparable side
        once; then each query is compared and scored on its own, so its matches are exactly
        those it gets alone."""
        if not queries:
            return []
        found = self.candidates_many(
            [q.side for q in queries], exclude_ids=[q.exclude_id for q in queries]
        )
        return self.match_candidates(queries, found, top_k=top_k, min_score=min_score)

    def load_candidates(self, found: Sequence[Candidates], *, min_score: float) -> LoadedCandidates:
        """The candidates of a batch read from the store as narrow rows, in one query; the weak
        ones are left out when `min_score` is at or above possible_clone. A pipeline does this
        in the stage that searches the indexes, ahead of the one that scores."""
        if min_score >= self._scorer.thresholds.possible_clone:
            found = [c.without_weak() for c in found]
        wanted = sorted({i for c in found for i in c.ids})
        return LoadedCandidates(list(found), self._store.get_comparable(wanted), min_score)

    def match_candidates(
        self,
        queries: Sequence[MatchQuery],
        found: Sequence[Candidates] | LoadedCandidates,
        *,
        top_k: int,
        min_score: float,
    ) -> list[list[Match]]:
        """The second half of `match_many`, on candidates already found (and maybe loaded,
        for this `min_score`): a pipeline searches and loads its next batches meanwhile."""
        if not queries:
            return []
        if not isinstance(found, LoadedCandidates) or found.min_score != min_score:
            found = self.load_candidates(
                found.found if isinstance(found, LoadedCandidates) else found, min_score=min_score
            )
        screened = found.rows
        by_id = {row.id: row for row in screened}
        column = {row.id: k for k, row in enumerate(screened)}
        batch = []
        for query, proposed in zip(queries, found.found, strict=True):
            # In id order, so that ties keep one order whatever else was in the batch.
            neighbours = [by_id[i] for i in sorted(proposed.ids) if i in by_id]
            common = popularity_among(query.side, proposed, neighbours)
            rows = [row for row in neighbours if row.key != query.key]
            batch.append(ScreenQuery(query.side, [column[row.id] for row in rows], common))
        whole: dict[int, ProfileRow] = {}

        def read_whole(columns: list[int]) -> dict[int, ProfileSide]:
            rows = self._store.get_many([screened[c].id for c in columns])
            whole.update((row.id, row) for row in rows)
            return {column[row.id]: side_of_row(row) for row in rows}

        best = best_pairs(
            self._scorer,
            self.bounds,
            batch,
            columns_of_rows(screened, bio_dim=int(self.indexes.bio.dim)),
            read_whole,
            top_k=top_k,
            min_score=min_score,
        )
        return [[self._match(whole[screened[c].id], e, p) for c, e, p in pairs] for pairs in best]

    def _match(self, row: ProfileRow, evidence: PairEvidence, probability: float) -> Match:
        """A reported match, explained (reasons are only worked out for these)."""
        return match_of(row, evidence, self._scorer.verdict(evidence, probability))


def match_of(row: ProfileRow, evidence: PairEvidence, verdict: Verdict) -> Match:
    """A stored profile as a match: its full record, the pair's signals and the verdict."""
    return Match(
        profile=row.to_stored().model_dump(mode="json", exclude_none=True),
        score=verdict.score,
        label=verdict.label,
        signals=evidence.signals(),
        reasons=verdict.reasons,
        likely_impersonator=verdict.likely_impersonator,
    )
