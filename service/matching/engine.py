"""The engine: the one object the API, the command line and the benchmarks talk to.

It owns the heavy parts, built once at start (store, embedding model, indexes, scoring model),
and keeps the indexes a faithful copy of the store: every write goes to the database first (the
acknowledgement), and the indexes then follow the store's change log. The same catch-up runs at
start, so a process killed mid-ingest loses nothing it acknowledged.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np

from indexers import avatar as avatar_hashing
from indexers import text
from indexers.bio import BioEmbedder
from indexers.compare import ProfileSide
from models.errors import CloneFinderError, InvalidRecordError, NotFoundError
from models.profile import (
    MAX_HANDLE_LENGTH,
    ProfileQuery,
    ProfileRecord,
    StoredProfile,
    parse_query,
    parse_record,
    text_problem,
)
from models.result import QueryRef, Result
from models.scoring import ScoringModel
from service.auth.roles import FULL_ACCESS, ProfileAccess
from service.cases.service import Cases
from service.core.settings import Settings
from service.indexes import IndexSet
from service.indexes.writer_lock import shared_index_writer
from service.matching.avatar_source import AvatarSource
from service.matching.matcher import Candidates, LoadedCandidates, Matcher, MatchQuery
from service.matching.profile_sides import Avatar, AvatarReader, context_of, name_keys, side_of_row
from service.store import ProfileRow, ProfileWrite, Store
from service.watchlist.service import Watchlist

logger = logging.getLogger(__name__)

INGEST_BATCH = 512  # records per transaction; large enough to batch the model well
SCAN_BATCH = 128  # queries checked together: one model call, one index search per batch
SCAN_PIPELINE_DEPTH = 2  # batches of a scan read and searched ahead of the one scored
SCAN_EMBED_THREADS = 1  # the model's cores in a scan pipeline (measured: more were slower)
DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"


@dataclass(frozen=True)
class RecordOutcome:
    """What became of one input record."""

    where: str
    status: Literal["created", "updated", "rejected"]
    platform: str | None
    handle: str | None
    error: dict[str, Any] | None = None


@dataclass
class IngestReport:
    outcomes: list[RecordOutcome] = field(default_factory=list)

    def _count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def created(self) -> int:
        return self._count("created")

    @property
    def updated(self) -> int:
        return self._count("updated")

    @property
    def rejected(self) -> int:
        return self._count("rejected")


@dataclass(frozen=True)
class PreparedChecks:
    """A batch of checks half done (`Engine.prepare_checks`): what `finish_checks` needs."""

    queries: list[ProfileQuery | CloneFinderError]
    sides: list[tuple[ProfileSide, ProfileRow | None] | CloneFinderError]
    batch: list[MatchQuery]
    candidates: list[Candidates] | LoadedCandidates | None = None  # None until searched


# A scan batch as given, the errors of its unreadable records, and its readable ones prepared.
_PreparedScan = tuple[Sequence[tuple[str, Any]], list[CloneFinderError | None], PreparedChecks]


@dataclass
class _Prepared:
    position: int
    where: str
    record: ProfileRecord
    avatar: Avatar | None


@dataclass(frozen=True)
class _ReadBatch:
    """An ingest batch after its read stage: rejections in place, the rest ready to write."""

    outcomes: list[RecordOutcome | None]
    prepared: list[_Prepared]
    writes: list[ProfileWrite]


class Engine:
    """Ingest, check, scan, fetch and erase profiles; built once with `Engine.open(settings)`."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        embedder: BioEmbedder,
        scorer: ScoringModel,
        indexes: IndexSet,
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.scorer = scorer
        self.indexes = indexes
        self.matcher = Matcher(store, indexes, scorer)
        self.avatars = AvatarReader(
            AvatarSource(
                max_bytes=settings.max_image_bytes,
                timeout_s=settings.avatar_fetch_timeout_s,
                allow_private=settings.avatar_fetch_allow_private,
            ),
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
        )
        # Watchlists: every ingested profile is checked against the protected identities.
        self.watchlist = Watchlist(
            store=store,
            embedder=embedder,
            avatars=self.avatars,
            scorer=scorer,
            matcher=self.matcher,
            settings=settings,
        )
        # Cases and evidence: captures of impersonating accounts, exports, the audit log.
        self.cases = Cases(self)
        # Writes are serialised so the indexes apply the change log in order; checks never wait
        # on this lock, only (briefly) on the indexes' own write lock.
        self._write_lock = threading.Lock()
        self._unsaved_changes = 0
        self.saves_indexes = True

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        embedder: BioEmbedder | None = None,
        scorer: ScoringModel | None = None,
        save_indexes: bool = True,
    ) -> Engine:
        """Open the store, load the model and the saved indexes (rebuilt when stale or absent).

        `embedder` lets one process that opens several stores (tests, training) load the
        model once; `scorer` lets training measure pairs before any weights exist for the
        current features. `save_indexes=False` keeps the indexes in memory only: for processes
        (scan workers) that share a data folder with the server, which alone saves them.
        """
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = Store.open(settings.resolved_database_url)
        embedder = embedder or BioEmbedder(
            settings.embedding_model,
            backend=settings.embedding_backend,
            cache_dir=settings.resolved_model_cache_dir,
            batch_size=settings.embedding_batch_size,
        )
        scorer = scorer or ScoringModel.load()
        expected = {
            "settings": settings,
            "embedding_model": embedder.name,
            "bio_dim": embedder.dim,
            "avatar_code_bytes": avatar_hashing.CODE_BYTES,
        }
        # Shared indexes (Milvus) are opened under the writer lock: their collections are
        # created there when absent (or dropped and made again when of another shape), and
        # processes starting together on an empty Milvus would race to do it.
        with (
            shared_index_writer(store.engine)
            if settings.vector_backend == "milvus"
            else contextlib.nullcontext()
        ):
            indexes = IndexSet.load(settings.index_dir, **expected)  # type: ignore[arg-type]
            opened = indexes or IndexSet.create(**expected)  # type: ignore[arg-type]
        engine = cls(settings, store=store, embedder=embedder, scorer=scorer, indexes=opened)
        engine.saves_indexes = save_indexes
        if indexes is None or indexes.last_change_seq > store.last_change_seq():
            # Absent, or saved from another (or a restored older) database: rebuild from truth.
            engine._rebuild_unless_current()
        else:
            with engine._write_lock:
                engine._catch_up()
        return engine

    def close(self) -> None:
        with self._write_lock:
            if self._unsaved_changes:
                self._save_indexes()
            self.indexes.close()
        self.store.close()

    @property
    def possible_clone_threshold(self) -> float:
        return self.scorer.thresholds.possible_clone

    # -- writes ------------------------------------------------------------------------------

    def ingest(
        self,
        items: Iterable[tuple[str, Any]],
        *,
        base_dir: Path | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> IngestReport:
        """Upsert every good record; each bad one is rejected alone, naming where and why.

        `base_dir` is the folder of the file the records came from, which relative
        `avatar_path`s resolve against; without one (records from the network) no local file
        is ever read.
        """
        report = IngestReport()
        iterator = iter(items)
        batches = iter(lambda: list(islice(iterator, INGEST_BATCH)), [])
        # Two stages: while one batch is written (store, indexes, watchlist), the next is read
        # (parsed, avatars decoded and hashed, bios embedded). Decoders and the model release
        # the GIL, so the write of one batch and the model call of the next share the cores.
        with (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-read") as readers,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-embed") as embedders,
        ):
            ahead: Future[_ReadBatch] | None = None
            for batch in batches:
                reading = readers.submit(
                    self._ingest_read, batch, base_dir=base_dir, embedders=embedders
                )
                if ahead is not None:
                    report.outcomes.extend(self._ingest_write(ahead.result()))
                    if progress is not None:
                        progress(len(report.outcomes))
                ahead = reading
            if ahead is not None:
                report.outcomes.extend(self._ingest_write(ahead.result()))
                if progress is not None:
                    progress(len(report.outcomes))
        return report

    def _ingest_read(
        self, batch: list[tuple[str, Any]], *, base_dir: Path | None, embedders: ThreadPoolExecutor
    ) -> _ReadBatch:
        """A batch parsed, its avatars hashed and its bios embedded; nothing written yet."""
        outcomes: list[RecordOutcome | None] = [None] * len(batch)
        parsed: list[tuple[int, str, ProfileRecord]] = []
        for position, (where, raw) in enumerate(batch):
            try:
                if isinstance(raw, BaseException):
                    raise raw
                parsed.append((position, where, parse_record(raw, where=where)))
            except CloneFinderError as exc:
                outcomes[position] = _rejected(where, raw, exc)
        # The model embeds in its own thread while this one decodes and hashes the avatars:
        # both release the GIL, and the avatars no longer wait for the model or it for them.
        embedding = embedders.submit(self.embedder.embed_bios, [r.bio for _, _, r in parsed])
        avatars: list[Avatar | None | CloneFinderError] = []
        for _, _, record in parsed:
            try:
                avatars.append(self.avatars.read(record, base_dir=base_dir))
            except CloneFinderError as exc:
                avatars.append(exc)
        prepared: list[_Prepared] = []
        writes = []
        for (position, where, record), avatar, vector in zip(
            parsed, avatars, embedding.result(), strict=True
        ):
            if isinstance(avatar, CloneFinderError):
                outcomes[position] = _rejected(where, batch[position][1], avatar)
                continue
            prepared.append(_Prepared(position, where, record, avatar))
            name_key, handle_norm = name_keys(record.display_name, record.handle)
            writes.append(
                ProfileWrite(
                    record=record,
                    avatar=avatar.blob if avatar else None,
                    avatar_hashes=avatar.hashes.tobytes() if avatar else None,
                    bio_vector=None if vector is None else vector.tobytes(),
                    name_key=name_key,
                    handle_norm=handle_norm,
                )
            )
        return _ReadBatch(outcomes, prepared, writes)

    def _ingest_write(self, read: _ReadBatch) -> list[RecordOutcome]:
        """A read batch upserted in one transaction, then the indexes and watchlists follow."""
        outcomes, prepared, writes = read.outcomes, read.prepared, read.writes
        if prepared:
            with self._write_lock:
                upserted = self.store.upsert(writes)
                self._catch_up()
            self.watchlist.on_ingested([(o.id, w) for o, w in zip(upserted, writes, strict=True)])
            for p, outcome in zip(prepared, upserted, strict=True):
                outcomes[p.position] = RecordOutcome(
                    where=p.where,
                    status="created" if outcome.created else "updated",
                    platform=p.record.platform,
                    handle=p.record.handle,
                )
        return [o for o in outcomes if o is not None]

    def delete_profile(self, platform: str, handle: str) -> None:
        """Erase a profile from the store and from every index."""
        with self._write_lock:
            if self.store.delete(platform, handle) is None:
                raise NotFoundError(f"no profile {platform}/{handle}")
            self._catch_up()

    # -- reads -------------------------------------------------------------------------------

    def get_profile(self, platform: str, handle: str) -> StoredProfile:
        row = self.store.get(platform, handle)
        if row is None:
            raise NotFoundError(f"no profile {platform}/{handle}")
        return row.to_stored()

    def check(
        self,
        raw: Any,
        *,
        top_k: int = 10,
        min_score: float | None = None,
        base_dir: Path | None = None,
        access: ProfileAccess = FULL_ACCESS,
    ) -> Result:
        """The likely impersonators of one identity, best first, as `access` may read them.

        A caller that may not read stored profiles by name (`access.by_name` false: an
        individual key, the public web page) has only the fields its query gives compared: a
        stored profile it names is still left out of the matches, but none of its fields fill
        in the query. It is shown no match below the possible_clone threshold, whatever
        `min_score` it asks, and of each match only the fields it may read.
        """
        query = raw if isinstance(raw, ProfileQuery) else parse_query(raw)
        self.see_other_writers()
        prepared = self.search_checks(
            self.read_checks([query], base_dir=base_dir, complete=access.by_name)
        )
        least = access.least_score(min_score, self.possible_clone_threshold)
        outcome = self.finish_checks(prepared, top_k=top_k, min_score=least)[0]
        if isinstance(outcome, CloneFinderError):
            raise outcome
        return access.result(outcome)

    def check_many(
        self,
        queries: Sequence[Any],
        *,
        top_k: int = 10,
        min_score: float | None = None,
        base_dir: Path | None = None,
    ) -> list[Result | CloneFinderError]:
        """`check` for a batch, in one pass: stored queries looked up in one store query, all
        bios embedded in one model call, each index asked once for the whole batch, every
        candidate loaded in one query. Each query gets exactly the result `check` gives it;
        one that cannot be checked gets its error instead (in its place), the rest go on.
        """
        self.see_other_writers()
        prepared = self.prepare_checks(queries, base_dir=base_dir)
        return self.finish_checks(prepared, top_k=top_k, min_score=min_score)

    def prepare_checks(
        self, queries: Sequence[Any], *, base_dir: Path | None = None
    ) -> PreparedChecks:
        """The first half of `check_many`: queries parsed and completed from the store, bios
        embedded (`read_checks`), every index searched (`search_checks`)."""
        return self.search_checks(self.read_checks(queries, base_dir=base_dir))

    def read_checks(
        self,
        queries: Sequence[Any],
        *,
        base_dir: Path | None = None,
        embed_threads: int | None = None,
        complete: bool = True,
    ) -> PreparedChecks:
        """Queries parsed and completed from the store, avatars hashed, bios embedded: mostly
        outside the GIL (decoders, the model), so a pipeline does it for a later batch while
        it searches and scores earlier ones. `embed_threads`: see `BioEmbedder.embed`."""
        parsed: list[ProfileQuery | CloneFinderError] = []
        for raw in queries:
            try:
                parsed.append(raw if isinstance(raw, ProfileQuery) else parse_query(raw))
            except CloneFinderError as exc:
                parsed.append(exc)
        valid = [q for q in parsed if isinstance(q, ProfileQuery)]
        sides = iter(
            self._query_sides(
                valid, base_dir=base_dir, embed_threads=embed_threads, complete=complete
            )
        )
        prepared: list[tuple[ProfileSide, ProfileRow | None] | CloneFinderError] = [
            q if isinstance(q, CloneFinderError) else next(sides) for q in parsed
        ]
        batch = [
            MatchQuery(side, key=query.key, exclude_id=own.id if own else None)
            for query, item in zip(parsed, prepared, strict=True)
            if isinstance(query, ProfileQuery) and not isinstance(item, CloneFinderError)
            for side, own in [item]
        ]
        return PreparedChecks(parsed, prepared, batch)

    def search_checks(
        self, prepared: PreparedChecks, *, load_for: float | None = None
    ) -> PreparedChecks:
        """Read checks with their candidates from every index (FAISS, the name index), and,
        given the `min_score` they will be scored for, the candidates' rows too."""
        batch = prepared.batch
        found = self.matcher.candidates_many(
            [q.side for q in batch], exclude_ids=[q.exclude_id for q in batch]
        )
        if load_for is None:
            return replace(prepared, candidates=found)
        return replace(prepared, candidates=self.matcher.load_candidates(found, min_score=load_for))

    def finish_checks(
        self, prepared: PreparedChecks, *, top_k: int = 10, min_score: float | None = None
    ) -> list[Result | CloneFinderError]:
        """The second half of `check_many`: candidates loaded, compared and scored."""
        if prepared.candidates is None:
            prepared = self.search_checks(prepared)
        assert prepared.candidates is not None
        found = iter(
            self.matcher.match_candidates(
                prepared.batch,
                prepared.candidates,
                top_k=top_k,
                min_score=self.possible_clone_threshold if min_score is None else min_score,
            )
        )
        results: list[Result | CloneFinderError] = []
        for query, item in zip(prepared.queries, prepared.sides, strict=True):
            if isinstance(item, CloneFinderError):
                results.append(item)
                continue
            assert isinstance(query, ProfileQuery)
            ref = QueryRef(platform=query.platform, handle=query.handle)
            results.append(Result(query=ref, matches=next(found)))
        return results

    def scan(
        self,
        items: Iterable[tuple[str, Any]],
        *,
        top_k: int = 10,
        min_score: float | None = None,
        base_dir: Path | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """One JSON-ready result record per input item, in input order; bad items say why."""
        iterator = iter(items)
        done = 0
        batches = iter(lambda: list(islice(iterator, SCAN_BATCH)), [])
        for records in self.scan_batches(
            batches, top_k=top_k, min_score=min_score, base_dir=base_dir
        ):
            yield from records
            done += len(records)
            if progress is not None:
                progress(done)

    def scan_batch(
        self,
        batch: Sequence[tuple[str, Any]],
        *,
        top_k: int = 10,
        min_score: float | None = None,
        base_dir: Path | None = None,
    ) -> list[dict[str, Any]]:
        """The result records of one batch of `(where, raw)` items, in order (see `scan`)."""
        return self._scan_finish(
            self._scan_read(batch, base_dir=base_dir), top_k=top_k, min_score=min_score
        )

    def scan_batches(
        self,
        batches: Iterable[Sequence[tuple[str, Any]]],
        *,
        top_k: int = 10,
        min_score: float | None = None,
        base_dir: Path | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """`scan_batch` of each batch, in order, as a three-stage pipeline: while one batch is
        compared and scored (Python), the next is searched (FAISS, the name index, then its
        candidates' rows read) and the one after read (parsed, hashed, embedded), in two helper
        threads. The model, FAISS and SQLite release the GIL, so the cores of a small machine
        all work; the model runs on one core here, as the others are busy with other stages."""
        with (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="scan-read") as readers,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="scan-search") as searchers,
        ):
            least = self.possible_clone_threshold if min_score is None else min_score

            def searched(read: Future[_PreparedScan]) -> _PreparedScan:
                batch, unread, checks = read.result()
                return batch, unread, self.search_checks(checks, load_for=least)

            ahead: deque[Future[_PreparedScan]] = deque()
            for batch in batches:
                read = readers.submit(
                    self._scan_read, batch, base_dir=base_dir, embed_threads=SCAN_EMBED_THREADS
                )
                ahead.append(searchers.submit(searched, read))
                if len(ahead) > SCAN_PIPELINE_DEPTH:
                    yield self._scan_finish(
                        ahead.popleft().result(), top_k=top_k, min_score=min_score
                    )
            while ahead:
                yield self._scan_finish(ahead.popleft().result(), top_k=top_k, min_score=min_score)

    def _scan_read(
        self,
        batch: Sequence[tuple[str, Any]],
        *,
        base_dir: Path | None,
        embed_threads: int | None = None,
    ) -> _PreparedScan:
        queries: list[ProfileQuery | CloneFinderError] = []
        for where, raw in batch:
            try:
                if isinstance(raw, BaseException):
                    raise raw
                queries.append(parse_query(raw, where=where))
            except CloneFinderError as exc:
                queries.append(exc)
        unread = [q if isinstance(q, CloneFinderError) else None for q in queries]
        valid = [q for q in queries if isinstance(q, ProfileQuery)]
        checks = self.read_checks(valid, base_dir=base_dir, embed_threads=embed_threads)
        return batch, unread, checks

    def _scan_finish(
        self,
        prepared: _PreparedScan,
        *,
        top_k: int,
        min_score: float | None,
    ) -> list[dict[str, Any]]:
        batch, unread, checks = prepared
        checked = iter(self.finish_checks(checks, top_k=top_k, min_score=min_score))
        records = []
        for (where, raw), error in zip(batch, unread, strict=True):
            outcome = error if error is not None else next(checked)
            if isinstance(outcome, CloneFinderError):
                records.append(scan_error_record(where, raw, outcome))
            else:
                records.append(outcome.model_dump(mode="json"))
        return records

    def _query_sides(
        self,
        queries: Sequence[ProfileQuery],
        *,
        base_dir: Path | None,
        embed_threads: int | None,
        complete: bool = True,
    ) -> list[tuple[ProfileSide, ProfileRow | None] | CloneFinderError]:
        """Each query as comparison sees it, completed from the store when it names a stored
        profile (all looked up at once, all bios embedded at once)."""
        owned = self.store.get_by_identity(
            (query.platform, query.handle) for query in queries if query.platform and query.handle
        )
        out: list[tuple[ProfileSide, ProfileRow | None] | CloneFinderError] = []
        for query in queries:
            own = owned.get(query.key) if query.platform and query.handle else None
            try:
                out.append(self._query_side(query, own, base_dir=base_dir, complete=complete))
            except CloneFinderError as exc:
                out.append(exc)
        with_bio = [
            item[0] for item, query in zip(out, queries, strict=True)
            if not isinstance(item, CloneFinderError) and query.bio
        ]  # fmt: skip
        vectors = self.embedder.embed_bios([side.bio for side in with_bio], threads=embed_threads)
        for side, vector in zip(with_bio, vectors, strict=True):
            side.bio_vector = vector
        return out

    def _query_side(
        self,
        query: ProfileQuery,
        own: ProfileRow | None,
        *,
        base_dir: Path | None,
        complete: bool = True,
    ) -> tuple[ProfileSide, ProfileRow | None]:
        """One query's side, but for its bio vector (the caller embeds a batch at once)."""
        fill = own if complete else None
        side = side_of_row(fill) if fill else ProfileSide()
        given = query.display_name or query.bio or query.has_avatar
        if fill is None and not given:
            if complete and query.platform and query.handle:
                # Named, as a check may be, but not stored: as the watchlist answers it.
                raise NotFoundError(
                    f"no stored profile {query.platform}/{query.handle}: ingest it first, or "
                    "send the identity's display name, bio or avatar"
                )
            raise InvalidRecordError(
                "a check needs a display name, a bio, an avatar, or the platform and handle "
                "of a stored profile"
                if complete
                else "a check needs a display name, a bio or an avatar: only the fields sent "
                "are compared",
                field=None,
                details=[{"where": "query", "field": None, "message": "nothing to look for"}],
            )
        if query.display_name:
            side.display_name = query.display_name
            side.name_key = text.normalize_name(query.display_name)
        if query.handle:
            side.handle = query.handle
            side.handle_norm = text.normalize_handle(query.handle)
        if query.bio:
            side.bio = query.bio
        if query.has_avatar:
            avatar = self.avatars.read(query, base_dir=base_dir)
            side.avatar_hashes = avatar.hashes if avatar else None
        if fill is None or query.created_at or query.followers_count is not None or query.verified:
            side.context = context_of(query)
        return side, own

    def health(self) -> dict[str, Any]:
        with self.indexes.reading():
            index_sizes = {
                "avatar_codes": len(self.indexes.avatar),
                "bio_vectors": len(self.indexes.bio),
                "names": len(self.indexes.names),
                "last_change_seq": self.indexes.last_change_seq,
            }
        # Health is polled (every 30 s by the compose file's check): at scale the profile
        # count is PostgreSQL's estimate, and `profiles_estimated` says so.
        profiles, exact = self.store.count_estimate()
        return {
            "status": "ok",
            "profiles": profiles,
            "profiles_estimated": not exact,
            "indexes": index_sizes,
            "model": self.embedder.name,
            "scoring": self.scorer.version,
        }

    # -- indexes -----------------------------------------------------------------------------

    def reindex(self) -> int:
        """Rebuild every index from the store (the source of truth); returns the profile count."""
        with self._write_lock, self._index_writer():
            return self._rebuild()

    def _rebuild_unless_current(self) -> None:
        """`reindex` at start, unless (shared indexes) another process rebuilt them while this
        one waited for the writer lock: several processes starting at once rebuild once."""
        with self._write_lock, self._index_writer():
            if self.indexes.shared:
                current = IndexSet.load(
                    self.settings.index_dir,
                    settings=self.settings,
                    embedding_model=self.embedder.name,
                    bio_dim=self.embedder.dim,
                    avatar_code_bytes=avatar_hashing.CODE_BYTES,
                )
                if current is not None and current.last_change_seq <= self.store.last_change_seq():
                    with self.indexes.writing():
                        self.indexes.close()
                        self.indexes = current
                        self.matcher.indexes = current
                    self._apply_changes()
                    return
            self._rebuild()

    def _index_writer(self) -> contextlib.AbstractContextManager[None]:
        """Shared indexes (Milvus): the store-wide lock that lets one process write at a time.
        Indexes of this process alone need only `_write_lock`."""
        if self.indexes.shared:
            return shared_index_writer(self.store.engine)
        return contextlib.nullcontext()

    def _rebuild(self) -> int:
        """`reindex` with `_write_lock` and `_index_writer()` held."""
        if self.indexes.shared:
            # One copy for every process: empty it in place (its manifest first, so a rebuild
            # that stops midway is redone), then fill it; checks meanwhile see fewer candidates.
            fresh = self.indexes
            with fresh.writing():
                fresh.reset()
        else:
            fresh = IndexSet.create(
                settings=self.settings,
                embedding_model=self.embedder.name,
                bio_dim=self.embedder.dim,
                avatar_code_bytes=avatar_hashing.CODE_BYTES,
            )
        fresh.last_change_seq = self.store.last_change_seq()
        count = 0
        for rows in self.store.iter_index_rows():
            _add_rows(fresh, rows)
            count += len(rows)
        with self.indexes.writing():
            self.indexes = fresh
            self.matcher.indexes = fresh
        self._apply_changes()
        with fresh.writing():
            fresh.mark_applied(fresh.last_change_seq)  # shared: the manifest, written last
        self._save_indexes()
        logger.info("rebuilt indexes over %d profiles", count)
        return count

    def _catch_up(self) -> None:
        """Apply the store's change log to the indexes; call with the write lock held.

        Shared indexes (Milvus) are written by one process at a time, from the last change
        recorded in them by whichever process applied it, so the log is applied once, in order,
        and a deleted profile cannot come back from another process's late replay.
        """
        if self.indexes.shared:
            with self._index_writer():
                if not self.indexes.sync_applied():
                    self._rebuild()  # a rebuild stopped midway: nothing there is trustworthy
                else:
                    self._apply_changes()
            return
        self._apply_changes()
        # A save writes every index whole, so it waits for a tenth of the index in changes
        # too: then saving costs ingest the same share at any size, where a fixed interval
        # made it grow with the index (a fifth of ingest time at 300,000 profiles). A crash
        # replays at most that many changes from the store at the next start.
        if self._unsaved_changes >= max(
            self.settings.index_save_every, self.indexes.profile_count // 10
        ):
            self._save_indexes()

    def _apply_changes(self) -> None:
        """The changes after `last_change_seq`, applied in order (see `_catch_up`)."""
        while changes := self.store.changes_since(self.indexes.last_change_seq):
            last_op: dict[int, str] = {}
            for change in changes:
                last_op[change.profile_id] = change.op
            rows = self.store.get_many([pid for pid, op in last_op.items() if op == "upsert"])
            ids = np.fromiter(last_op, dtype=np.int64, count=len(last_op))
            with self.indexes.writing():
                self.indexes.avatar.remove(ids)
                self.indexes.bio.remove(ids)
                self.indexes.names.remove(ids)
                _add_rows(self.indexes, rows)
                self.indexes.mark_applied(changes[-1].seq)
            self._unsaved_changes += len(changes)

    def _save_indexes(self) -> None:
        if not self.saves_indexes:
            # Another process owns the saved files; the store's log is the durable copy.
            self._unsaved_changes = 0
            return
        # The index set locks itself while it saves (checks go on; writes wait).
        self.indexes.save(self.settings.index_dir)
        self._unsaved_changes = 0

    def refresh(self) -> None:
        """Apply what other processes wrote to the store since (scan workers that ingest, a
        server next to workers), so this process's checks see it too."""
        if self.store.last_change_seq() == self.indexes.last_change_seq:
            return
        with self._write_lock:
            self._catch_up()

    def see_other_writers(self) -> None:
        """Before a check: indexes of this process alone (FAISS) first apply what any process
        wrote to the store, so a check sees every write acknowledged before it, through
        whichever API process. One cheap query (the newest change's seq) when nothing is new;
        otherwise the check waits for the catch-up (and for a write of this process in
        progress, which holds the same lock); saving the indexes is left to the next write
        or background refresh. Shared indexes (Milvus) need nothing: a write is applied to
        them before it is acknowledged."""
        if self.indexes.shared or self.store.last_change_seq() == self.indexes.last_change_seq:
            return
        with self._write_lock:
            self._apply_changes()

    def load_demo(self) -> int:
        """Load the bundled demo corpus into an empty store, so a first check finds something."""
        if self.store.count():
            return 0
        from service.records import read_records

        report = self.ingest(read_records(DEMO_DIR / "profiles.jsonl"), base_dir=DEMO_DIR)
        return report.created


def _add_rows(indexes: IndexSet, rows: list[ProfileRow]) -> None:
    """Add stored profiles to every index (the caller holds the write lock)."""
    indexes.add_sides((row.id, side_of_row(row)) for row in rows)


def scan_error_record(where: str, raw: Any, exc: CloneFinderError) -> dict[str, Any]:
    """The result record of an input item that could not be checked: says where and why."""
    known = raw if isinstance(raw, dict) else {}
    return {
        "query": {
            "platform": _echoed(known.get("platform")),
            "handle": _echoed(known.get("handle")),
        },
        "matches": [],
        "error": {**_error_dict(exc), "where": where},
    }


def _error_dict(exc: CloneFinderError) -> dict[str, Any]:
    return {"code": exc.code, "message": exc.message, "field": getattr(exc, "field", None)}


def _rejected(where: str, raw: Any, exc: CloneFinderError) -> RecordOutcome:
    known = raw if isinstance(raw, dict) else {}
    error = _error_dict(exc)
    if not error["message"].startswith(where):
        error["message"] = f"{where}: " + (
            f"field '{error['field']}': {exc.message}" if error["field"] else exc.message
        )
    return RecordOutcome(
        where=where,
        status="rejected",
        platform=_echoed(known.get("platform")),
        handle=_echoed(known.get("handle")),
        error=error,
    )


def _echoed(value: Any) -> str | None:
    """A rejected record's platform or handle as its answer may repeat it: only text that
    can be stored and sent back (an identity never needs more than a few hundred characters)."""
    if isinstance(value, str) and len(value) <= MAX_HANDLE_LENGTH and not text_problem(value):
        return value
    return None
