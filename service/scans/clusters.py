"""Clusters of copies: which accounts, in an upload and in the index, are one identity copied.

Every uploaded profile is compared with its candidates in a temporary in-memory index of the
upload itself and in the main index; every pair scoring at least `min_score` is an edge, and
the connected components (union-find) of those edges are the groups. Each group names its
members, its edges with their scores, and its likely original: the member the scoring model's
context clues (verified badge, then creation date, then followers) mark as the original
against the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from indexers import avatar as avatar_hashing
from indexers.compare import ProfileSide, Sharers, SideColumns, identity_popularity
from models.errors import CloneFinderError
from models.profile import ProfileRecord, parse_record
from models.result import Context, PairEvidence
from models.scoring import likely_impersonator
from service.indexes import IndexSet
from service.matching.engine import Engine, scan_error_record
from service.matching.matcher import Candidates, LoadedCandidates, Matcher
from service.matching.pair_screening import ScreenQuery, best_pairs
from service.matching.profile_sides import context_of, name_keys, side_of_row
from service.store import ProfileRow

logger = logging.getLogger(__name__)

BATCH = 256  # profiles prepared (embedded) and searched together
# Above this many members a group's original is decided on its edges only, not on all pairs.
ALL_PAIRS_LIMIT = 64

Node = tuple[str, int]  # ("upload", position among the upload's profiles) or ("index", id)


@dataclass
class _Upload:
    position: int  # the input record's position (its result-order key)
    where: str
    record: ProfileRecord
    side: ProfileSide
    own_id: int | None  # the stored profile of the same identity, if any


@dataclass
class _Edge:
    a: Node  # the query side of the pair
    b: Node
    probability: float
    evidence: PairEvidence


@dataclass
class _Graph:
    parent: dict[Node, Node] = field(default_factory=dict)

    def find(self, node: Node) -> Node:
        root = node
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while node != root:  # path compression
            self.parent[node], node = root, self.parent.get(node, node)
        return root

    def union(self, a: Node, b: Node) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def find_clusters(
    engine: Engine,
    items: Sequence[tuple[str, Any]],
    *,
    min_score: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """The groups of copies among `items` (`(where, raw)`) and the indexed profiles, plus one
    error record per item that could not be read, ordered by their first input record."""
    threshold = engine.possible_clone_threshold if min_score is None else float(min_score)
    total = len(items)
    entries: list[tuple[int, dict[str, Any]]] = []  # (position, record)
    uploads: list[_Upload] = []
    seen: set[tuple[str, str]] = set()

    # Each batch's records are parsed and their avatars decoded in a helper thread while the
    # previous batch is embedded here: the model and the image code both release the GIL.
    starts_read = range(0, total, BATCH)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clusters-read") as reader:
        upcoming = [
            reader.submit(_read, engine, items[s : s + BATCH], offset=s) for s in starts_read[:1]
        ]
        for n, start in enumerate(starts_read):
            parsed, errors = upcoming.pop().result()
            if n + 1 < len(starts_read):
                following = starts_read[n + 1]
                batch_after = items[following : following + BATCH]
                upcoming.append(reader.submit(_read, engine, batch_after, offset=following))
            entries.extend(errors)
            for upload in _prepare(engine, parsed):
                key = upload.record.key
                if key in seen:  # the same account twice: one member
                    continue
                seen.add(key)
                uploads.append(upload)
            if progress is not None:
                progress(min(total, start + BATCH) // 2)

    local = _local_index(engine, uploads)
    local_matcher = Matcher(engine.store, local, engine.scorer)
    edges: dict[tuple[Node, Node], _Edge] = {}
    index_rows: dict[int, tuple[dict[str, Any], Context]] = {}
    # An uploaded profile that is also stored is one account: its stored self is the upload.
    uploaded_ids = {u.own_id: i for i, u in enumerate(uploads) if u.own_id is not None}
    starts = range(0, len(uploads), BATCH)

    def find(start: int) -> tuple[LoadedCandidates, list[Candidates]]:
        batch = uploads[start : start + BATCH]
        sides = [u.side for u in batch]
        in_index = engine.matcher.candidates_many(sides, exclude_ids=[u.own_id for u in batch])
        in_upload = local_matcher.candidates_many(
            sides, exclude_ids=[start + i for i in range(len(batch))]
        )
        if threshold >= engine.possible_clone_threshold:
            in_upload = [c.without_weak() for c in in_upload]
        return engine.matcher.load_candidates(in_index, min_score=threshold), in_upload

    # A two-stage pipeline: the next batch is searched (FAISS, outside the GIL) and its stored
    # candidates read (SQLite, likewise) in a helper thread while this one is compared.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clusters-search") as pool:
        pending = [pool.submit(find, start) for start in starts[:1]]
        for n, start in enumerate(starts):
            found = pending.pop().result()
            if n + 1 < len(starts):
                pending.append(pool.submit(find, starts[n + 1]))
            _search(
                engine,
                uploads,
                uploads[start : start + BATCH],
                found,
                offset=start,
                threshold=threshold,
                edges=edges,
                index_rows=index_rows,
                uploaded_ids=uploaded_ids,
            )
            if progress is not None:
                searched = min(len(uploads), start + BATCH)
                progress(total // 2 + searched * (total - total // 2) // len(uploads))

    entries.extend(_groups(engine, uploads, edges, index_rows))
    entries.sort(key=lambda entry: entry[0])
    groups = 0
    for _, record in entries:
        if "members" in record:
            record["group"] = groups
            groups += 1
    logger.info("clusters: %d records, %d groups, %d edges", total, groups, len(edges))
    return [record for _, record in entries]


_Parsed = tuple[int, str, ProfileRecord, np.ndarray | None]  # (position, where, record, hashes)


def _read(
    engine: Engine, batch: Sequence[tuple[str, Any]], *, offset: int
) -> tuple[list[_Parsed], list[tuple[int, dict[str, Any]]]]:
    """Each record of `batch` parsed and its avatar hashed, or its error record."""
    errors: list[tuple[int, dict[str, Any]]] = []
    parsed: list[_Parsed] = []
    for i, (where, raw) in enumerate(batch):
        try:
            if isinstance(raw, BaseException):
                raise raw
            record = parse_record(raw, where=where)
            avatar = engine.avatars.read(record, base_dir=None)
        except CloneFinderError as exc:
            errors.append((offset + i, scan_error_record(where, raw, exc)))
            continue
        parsed.append((offset + i, where, record, avatar.hashes if avatar else None))
    return parsed, errors


def _prepare(engine: Engine, parsed: Sequence[_Parsed]) -> list[_Upload]:
    """Each read record's side (bio embedded in one model call) and stored twin."""
    owned = engine.store.get_by_identity((r.platform, r.handle) for _, _, r, _ in parsed)
    vectors = engine.embedder.embed_bios([record.bio for _, _, record, _ in parsed])
    uploads = []
    for (position, where, record, hashes), vector in zip(parsed, vectors, strict=True):
        name_key, handle_norm = name_keys(record.display_name, record.handle)
        side = ProfileSide(
            display_name=record.display_name,
            name_key=name_key,
            handle=record.handle,
            handle_norm=handle_norm,
            bio=record.bio,
            avatar_hashes=hashes,
            bio_vector=vector,
            context=context_of(record),
        )
        own = owned.get(record.key)
        uploads.append(_Upload(position, where, record, side, own.id if own else None))
    return uploads


def _local_index(engine: Engine, uploads: Sequence[_Upload]) -> IndexSet:
    """An in-memory index of the upload, keyed by position in `uploads`."""
    local = IndexSet.in_memory(
        embedding_model=engine.embedder.name,
        bio_dim=engine.embedder.dim,
        avatar_code_bytes=avatar_hashing.CODE_BYTES,
    )
    with local.writing():
        local.add_sides((i, upload.side) for i, upload in enumerate(uploads))
    return local


def _tagged(in_index: Sequence[object], in_upload: Sequence[object]) -> tuple[object, ...]:
    return tuple(("index", i) for i in in_index) + tuple(("upload", j) for j in in_upload)


def _tagged_bits(
    in_index: Sequence[tuple[object, int]], in_upload: Sequence[tuple[object, int]]
) -> tuple[tuple[object, int], ...]:
    return tuple((("index", i), d) for i, d in in_index) + tuple(
        (("upload", j), d) for j, d in in_upload
    )


def _search(
    engine: Engine,
    uploads: Sequence[_Upload],
    batch: Sequence[_Upload],
    found: tuple[LoadedCandidates, list[Candidates]],
    *,
    offset: int,
    threshold: float,
    edges: dict[tuple[Node, Node], _Edge],
    index_rows: dict[int, tuple[dict[str, Any], Context]],
    uploaded_ids: dict[int, int],
) -> None:
    """Compare each upload of `batch` with its candidates in both indexes; keep the edges.

    Stored and uploaded candidates of the whole batch are screened together
    (`service.matching.pair_screening`): only pairs that can reach the threshold are compared,
    and only their stored profiles read whole.
    """
    loaded, in_upload = found
    in_index, screened = loaded.found, loaded.rows
    by_id = {row.id: row for row in screened}
    local = sorted({j for c in in_upload for j in c.ids})
    # Candidate columns: the stored rows, then the uploads that are candidates.
    column = {("index", row.id): k for k, row in enumerate(screened)}
    column.update((("upload", j), len(screened) + k) for k, j in enumerate(local))
    local_sides = [uploads[j].side for j in local]
    columns = SideColumns.of_bytes(
        name_keys=[row.name_key for row in screened] + [s.name_key for s in local_sides],
        handle_norms=[row.handle_norm for row in screened] + [s.handle_norm for s in local_sides],
        avatar_hashes=[row.avatar_hashes for row in screened]
        + [None if s.avatar_hashes is None else s.avatar_hashes.tobytes() for s in local_sides],
        bio_vectors=[row.bio_vector for row in screened]
        + [None if s.bio_vector is None else s.bio_vector.tobytes() for s in local_sides],
        bio_dim=int(engine.indexes.bio.dim),
    )
    queries = []
    for i, upload in enumerate(batch):
        key = upload.record.key
        stored = [
            by_id[pid] for pid in sorted(in_index[i].ids) if pid in by_id and by_id[pid].key != key
        ]
        local_ids = sorted(in_upload[i].ids)
        # Sharers and identities of both indexes, told apart by where they live.
        sharers = Sharers(
            avatar=_tagged(in_index[i].sharers.avatar, in_upload[i].sharers.avatar),
            bio=_tagged(in_index[i].sharers.bio, in_upload[i].sharers.bio),
            avatar_near=_tagged(in_index[i].sharers.avatar_near, in_upload[i].sharers.avatar_near),
            avatar_bits=_tagged_bits(
                in_index[i].sharers.avatar_bits, in_upload[i].sharers.avatar_bits
            ),
        )
        identities: dict[Any, tuple[str, str, str]] = {
            ("index", pid): (by_id[pid].name_key, by_id[pid].handle_norm, by_id[pid].handle_key)
            for pid in in_index[i].ids
            if pid in by_id
        }
        identities.update(
            (("upload", j), (s.name_key, s.handle_norm, s.handle or ""))
            for j in local_ids
            for s in [uploads[j].side]
        )
        popularity = identity_popularity(upload.side, sharers, identities)
        candidates = [column[("index", row.id)] for row in stored]
        candidates += [column[("upload", j)] for j in local_ids]
        queries.append(ScreenQuery(upload.side, candidates, popularity))

    whole: dict[int, ProfileRow] = {}

    def read_sides(wanted: list[int]) -> dict[int, ProfileSide]:
        stored = [c for c in wanted if c < len(screened)]
        sides = {c: local_sides[c - len(screened)] for c in wanted if c >= len(screened)}
        for row in engine.store.get_many([screened[c].id for c in stored]):
            whole[row.id] = row
            sides[column[("index", row.id)]] = side_of_row(row)
        return sides

    best = best_pairs(
        engine.scorer,
        engine.matcher.bounds,
        queries,
        columns,
        read_sides,
        top_k=None,
        min_score=threshold,
    )
    for i, pairs in enumerate(best):
        me: Node = ("upload", offset + i)
        for c, e, p in pairs:
            other: Node
            if c < len(screened):
                pid = screened[c].id
                other = ("upload", uploaded_ids[pid]) if pid in uploaded_ids else ("index", pid)
            else:
                other = ("upload", local[c - len(screened)])
            if other == me:
                continue
            pair = (me, other) if me < other else (other, me)
            kept = edges.get(pair)
            if kept is None or p > kept.probability:
                edges[pair] = _Edge(me, other, p, e)
            if other[0] == "index" and other[1] not in index_rows:
                row = whole[other[1]]
                info = {"platform": row.platform, "handle": row.handle}
                if row.display_name:
                    info["display_name"] = row.display_name
                index_rows[other[1]] = (info, context_of(row))


def _groups(
    engine: Engine,
    uploads: Sequence[_Upload],
    edges: dict[tuple[Node, Node], _Edge],
    index_rows: dict[int, tuple[dict[str, Any], Context]],
) -> list[tuple[int, dict[str, Any]]]:
    graph = _Graph()
    for a, b in edges:
        graph.union(a, b)
    members_of: dict[Node, list[Node]] = {}
    for node in {n for pair in edges for n in pair}:
        members_of.setdefault(graph.find(node), []).append(node)
    by_root: dict[Node, list[_Edge]] = {}
    for pair, edge in edges.items():
        by_root.setdefault(graph.find(pair[0]), []).append(edge)

    out = []
    for root, nodes in members_of.items():
        # Uploads first, in input order, then indexed profiles by id.
        nodes.sort(key=lambda n: (n[0] != "upload", n[1]))
        number = {node: i for i, node in enumerate(nodes)}
        members, contexts = [], []
        for kind, ident in nodes:
            if kind == "upload":
                upload = uploads[ident]
                member = {"source": "upload", "where": upload.where}
                member.update(_ref(upload.record))
                contexts.append(upload.side.context)
            else:
                info, context = index_rows[ident]
                member = {"source": "index", **info}
                contexts.append(context)
            members.append(member)
        group_edges = sorted(
            by_root[root],
            key=lambda e: (min(number[e.a], number[e.b]), max(number[e.a], number[e.b])),
        )
        rendered = []
        for edge in group_edges:
            verdict = engine.scorer.verdict(edge.evidence, edge.probability)
            copy = {"query": number[edge.a], "candidate": number[edge.b]}.get(
                verdict.likely_impersonator
            )
            rendered.append(
                {
                    "a": number[edge.a],
                    "b": number[edge.b],
                    "score": verdict.score,
                    "label": verdict.label,
                    "signals": edge.evidence.signals(),
                    "reasons": verdict.reasons,
                    "likely_copy": copy,
                }
            )
        original = _likely_original(contexts, [(number[e.a], number[e.b]) for e in group_edges])
        first = min(uploads[n[1]].position for n in nodes if n[0] == "upload")
        out.append(
            (
                first,
                {
                    "group": 0,  # numbered once the groups are in order
                    "size": len(members),
                    "members": members,
                    "edges": rendered,
                    "likely_original": None
                    if original is None
                    else {"member": original, **_member_ref(members[original])},
                },
            )
        )
    return out


def _likely_original(contexts: Sequence[Context], edges: Sequence[tuple[int, int]]) -> int | None:
    """The member the context clues mark as the original against most others, when one
    stands out; None when they do not tell (no dates, no badges, or a tie)."""
    pairs: Sequence[tuple[int, int]] = (
        list(combinations(range(len(contexts)), 2)) if len(contexts) <= ALL_PAIRS_LIMIT else edges
    )
    wins = [0] * len(contexts)
    for a, b in pairs:
        copy = likely_impersonator(contexts[a], contexts[b])
        if copy == "candidate":
            wins[a] += 1
            wins[b] -= 1
        elif copy == "query":
            wins[b] += 1
            wins[a] -= 1
    best = max(wins)
    if best <= 0 or wins.count(best) > 1:
        return None
    return wins.index(best)


def _ref(record: ProfileRecord) -> dict[str, Any]:
    ref: dict[str, Any] = {"platform": record.platform, "handle": record.handle}
    if record.display_name:
        ref["display_name"] = record.display_name
    return ref


def _member_ref(member: dict[str, Any]) -> dict[str, Any]:
    return {"platform": member["platform"], "handle": member["handle"]}
