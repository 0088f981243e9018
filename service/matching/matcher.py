"""The matcher: one query profile in, ranked and explained matches out, in one pass.

Ask each index for candidates (avatar hashes, bio vector, name and handle keys), union the ids,
read them as narrow rows in one query, and let the screen (`service.matching.pair_screening`)
compare and score in full only the pairs that can reach the result.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
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
    """One side of a person in a batch: the query's, or one of the person's own accounts.

    `keys`: the person's identities (the query's and their own accounts'), never a match.
    `exclude_ids`: the stored profiles among them, left out of the candidates (and of those
    counted as sharing the person's photo or bio). `person`: the check it belongs to; the
    sides of one person are answered together. `platforms`: where the person named an account
    (a match elsewhere that looks like the original may be one more of theirs)."""

    side: ProfileSide
    keys: frozenset[tuple[str, str]]
    exclude_ids: frozenset[int]
    person: int
    platforms: frozenset[str] = frozenset()


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
        self,
        queries: Sequence[ProfileSide],
        *,
        exclude_ids: Sequence[int | None | AbstractSet[int]],
    ) -> list[Candidates]:
        """`candidates` of many queries, asking each FAISS index once for the whole batch.

        Each query's answer is the one it gets alone: FAISS ranks every query row on its own,
        and the name index is asked per query. `exclude_ids`: per query, the stored profile
        (or profiles) never proposed.
        """
        excluded = [_id_set(ids) for ids in exclude_ids]
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
                    for j in excluded[i]:
                        best.pop(j, None)
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
                        if j >= 0 and j not in excluded[i] and sim >= BIO_NEAR_IDENTICAL
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
            for j in excluded[i]:
                proposed.pop(j, None)
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
        excluded = frozenset() if exclude_id is None else frozenset({exclude_id})
        return self.match_many(
            [MatchQuery(query, keys=frozenset({query_key}), exclude_ids=excluded, person=0)],
            top_k=top_k,
            min_score=min_score,
        )[0]

    def match_many(
        self, queries: Sequence[MatchQuery], *, top_k: int, min_score: float
    ) -> list[list[Match]]:
        """`match` for many queries in one pass: each index asked once for the batch, every
        candidate of the batch loaded in one store query and turned into a comparable side
        once; then each query is compared and scored on its own, so its matches are exactly
        those it gets alone. One list per person (see `match_candidates`)."""
        if not queries:
            return []
        found = self.candidates_many(
            [q.side for q in queries], exclude_ids=[q.exclude_ids for q in queries]
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
        for this `min_score`): a pipeline searches and loads its next batches meanwhile.

        One list of matches per person, in the order the persons first come in `queries`: a
        candidate scored against several sides of one person is one match, at its best score,
        with the reasons of the side that gave it. The best `top_k` over the sides are among
        the best `top_k` of each, so each side is screened for its own `top_k`."""
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
            rows = [row for row in neighbours if row.key not in query.keys]
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
        # Per person, each candidate at its best side: (rounded score, row id, evidence,
        # probability, the side's query). On a tie the earlier side (the query's) is kept.
        people: dict[int, dict[int, tuple[float, int, PairEvidence, float, MatchQuery]]] = {}
        for query, pairs in zip(queries, best, strict=True):
            kept = people.setdefault(query.person, {})
            for c, e, p in pairs:
                score, row_id = round(p, 4), screened[c].id
                if row_id not in kept or score > kept[row_id][0]:
                    kept[row_id] = (score, row_id, e, p, query)
        ranked = [
            # As one side ranks them: by score, ties in id order.
            sorted(kept.values(), key=lambda item: (-item[0], item[1]))[:top_k]
            for kept in people.values()
        ]
        return [
            [self._match(whole[row_id], e, p, query) for _, row_id, e, p, query in matches]
            for matches in ranked
        ]

    def _match(
        self, row: ProfileRow, evidence: PairEvidence, probability: float, query: MatchQuery
    ) -> Match:
        """A reported match, explained (reasons are only worked out for these)."""
        verdict = self._scorer.verdict(evidence, probability)
        return match_of(
            row,
            evidence,
            verdict,
            may_be_yours=may_be_theirs(row.platform, evidence, verdict, query.platforms),
        )


def may_be_theirs(
    platform: str, evidence: PairEvidence, verdict: Verdict, platforms: AbstractSet[str]
) -> bool:
    """Whether a match may be one more account of the person checked, not a copy: on a
    platform where they named none, it wears the very same photo (SAME_IMAGE_BITS, a copy
    re-encoded or resized at most) and display name, and its context (older, verified, more
    followed) says the person's side is the copy: as their own account on another platform
    would. Only the person can tell it from a clone of someone with no other account."""
    return (
        platform not in platforms
        and evidence.avatar_bits is not None
        and evidence.avatar_bits <= avatar_hashing.SAME_IMAGE_BITS
        and evidence.display_name_verbatim
        and verdict.likely_impersonator == "query"
    )


def match_of(
    row: ProfileRow, evidence: PairEvidence, verdict: Verdict, *, may_be_yours: bool = False
) -> Match:
    """A stored profile as a match: its full record, the pair's signals and the verdict."""
    return Match(
        profile=row.to_stored().model_dump(mode="json", exclude_none=True),
        score=verdict.score,
        label=verdict.label,
        signals=evidence.signals(),
        reasons=verdict.reasons,
        likely_impersonator=verdict.likely_impersonator,
        may_be_yours=may_be_yours,
    )


def _id_set(ids: int | None | AbstractSet[int]) -> AbstractSet[int]:
    if ids is None:
        return frozenset()
    return frozenset({ids}) if isinstance(ids, int) else ids
