"""The engine: the one object the API, the command line and the benchmarks talk to.

It owns the heavy parts, built once at start (store, embedding model, indexes, scoring model),
and coordinates them: every write goes to the database first (the acknowledgement), and the
indexes then follow the store's change log (`service.matching.index_sync`); every ingested
profile is screened against the watchlists; cases capture what checks find.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any, Literal

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
from models.result import OwnAccount as OwnAccountOut
from models.result import QueryRef, Result
from models.scoring import ScoringModel
from service.auth.roles import FULL_ACCESS, ProfileAccess
from service.cases.service import Cases
from service.core.observability import (
    INDEX_LOAD_SECONDS,
    MODEL_LOAD_SECONDS,
    check_stage,
    count_ingested,
    timed_into,
)
from service.core.settings import Settings
from service.evidence import EvidenceExporter
from service.indexes import IndexSet
from service.matching.avatar_source import AvatarSource
from service.matching.index_sync import IndexSync, open_index_sync
from service.matching.matcher import Candidates, LoadedCandidates, Matcher, MatchQuery
from service.matching.own_accounts import OwnAccount
from service.matching.profile_sides import (
    Avatar,
    AvatarReader,
    name_keys,
    query_side,
    side_of_row,
)
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
class CheckSides:
    """One check as comparison sees it: the query's side, the stored profile it names, and
    the accounts the person declared as their own, each with its stored profile if any."""

    side: ProfileSide
    stored: ProfileRow | None
    own_accounts: list[tuple[OwnAccount, ProfileRow | None]] = field(default_factory=list)


@dataclass(frozen=True)
class PreparedChecks:
    """A batch of checks half done (`Engine.prepare_checks`): what `finish_checks` needs.

    `batch` holds every side of every person: a check's query first, then each of its
    person's stored own accounts (when the check may read them, `complete`)."""

    queries: list[ProfileQuery | CloneFinderError]
    sides: list[CheckSides | CloneFinderError]
    batch: list[MatchQuery]
    candidates: list[Candidates] | LoadedCandidates | None = None  # None until searched
    complete: bool = True


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
        index_sync: IndexSync,
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.scorer = scorer
        self.index_sync = index_sync
        self.matcher = Matcher(store, index_sync.indexes, scorer)
        index_sync.when_replaced(self._use_indexes)
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
        self.cases = Cases(
            store=store,
            matcher=self.matcher,
            scorer=scorer,
            avatars=self.avatars,
            check=self.check,
            exporter=EvidenceExporter(
                key_file=settings.resolved_evidence_key_file, font_dirs=settings.pdf_font_dirs
            ),
            embedding_model=embedder.name,
        )

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
        if embedder is None:
            with timed_into(MODEL_LOAD_SECONDS):
                embedder = BioEmbedder(
                    settings.embedding_model,
                    backend=settings.embedding_backend,
                    cache_dir=settings.resolved_model_cache_dir,
                    batch_size=settings.embedding_batch_size,
                )
        scorer = scorer or ScoringModel.load()
        with timed_into(INDEX_LOAD_SECONDS):
            index_sync = open_index_sync(
                settings,
                store,
                embedding_model=embedder.name,
                bio_dim=embedder.dim,
                save_indexes=save_indexes,
            )
        return cls(settings, store=store, embedder=embedder, scorer=scorer, index_sync=index_sync)

    def close(self) -> None:
        self.index_sync.close()
        self.store.close()

    @property
    def indexes(self) -> IndexSet:
        return self.index_sync.indexes

    def _use_indexes(self, indexes: IndexSet) -> None:
        self.matcher.indexes = indexes

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
            with self.index_sync.write_then_apply():
                upserted = self.store.upsert(writes)
            self.watchlist.on_ingested([(o.id, w) for o, w in zip(upserted, writes, strict=True)])
            for p, outcome in zip(prepared, upserted, strict=True):
                outcomes[p.position] = RecordOutcome(
                    where=p.where,
                    status="created" if outcome.created else "updated",
                    platform=p.record.platform,
                    handle=p.record.handle,
                )
        done = [o for o in outcomes if o is not None]
        count_ingested(o.status for o in done)
        return done

    def delete_profile(self, platform: str, handle: str) -> None:
        """Erase a profile from the store and from every index."""
        with self.index_sync.write_then_apply():
            if self.store.delete(platform, handle) is None:
                raise NotFoundError(f"no profile {platform}/{handle}")

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
        own_accounts: Sequence[OwnAccount] = (),
    ) -> Result:
        """The likely impersonators of one identity, best first, as `access` may read them.

        `own_accounts`: the person's own accounts on other platforms
        (`service.matching.own_accounts`). None of them is ever a match; they come back apart,
        in `own_accounts`, each with its stored profile if one is found; and each stored one
        is compared too, as a side of the person, so that a candidate's score is its best
        against any of the person's accounts (a clone of their Instagram is found from their
        Twitter identity as well).

        A caller that may not read stored profiles by name (`access.by_name` false: an
        individual key, the public web page) has only the fields its query gives compared: a
        stored profile it names is still left out of the matches, but none of its fields fill
        in the query; its own accounts are only left out of the matches (`found` null). It is
        shown no match below the possible_clone threshold, whatever `min_score` it asks, and
        of each match and own account only the fields it may read.
        """
        query = raw if isinstance(raw, ProfileQuery) else parse_query(raw)
        self.see_other_writers()
        prepared = self.search_checks(
            self.read_checks(
                [query], base_dir=base_dir, complete=access.by_name, own_accounts=[own_accounts]
            )
        )
        least = access.least_score(min_score, self.possible_clone_threshold)
        outcome = self.finish_checks(prepared, top_k=top_k, min_score=least)[0]
        if isinstance(outcome, CloneFinderError):
            raise outcome
        result = access.result(outcome)
        if access.every_field:
            return result
        own = [
            account.model_copy(
                update={
                    "profile": None if account.profile is None else access.profile(account.profile)
                }
            )
            for account in result.own_accounts
        ]
        return result.model_copy(update={"own_accounts": own})

    def check_many(
        self,
        queries: Sequence[Any],
        *,
        top_k: int = 10,
        min_score: float | None = None,
        base_dir: Path | None = None,
        own_accounts: Sequence[Sequence[OwnAccount]] | None = None,
    ) -> list[Result | CloneFinderError]:
        """`check` for a batch, in one pass: stored queries and own accounts looked up in one
        store query, all bios embedded in one model call, each index asked once for the whole
        batch, every candidate loaded in one query. Each query gets exactly the result `check`
        gives it; one that cannot be checked gets its error instead (in its place), the rest
        go on. `own_accounts`: each query's own accounts, in the queries' order (as `check`).
        """
        self.see_other_writers()
        prepared = self.prepare_checks(queries, base_dir=base_dir, own_accounts=own_accounts)
        return self.finish_checks(prepared, top_k=top_k, min_score=min_score)

    def prepare_checks(
        self,
        queries: Sequence[Any],
        *,
        base_dir: Path | None = None,
        own_accounts: Sequence[Sequence[OwnAccount]] | None = None,
    ) -> PreparedChecks:
        """The first half of `check_many`: queries parsed and completed from the store, bios
        embedded (`read_checks`), every index searched (`search_checks`)."""
        return self.search_checks(
            self.read_checks(queries, base_dir=base_dir, own_accounts=own_accounts)
        )

    def read_checks(
        self,
        queries: Sequence[Any],
        *,
        base_dir: Path | None = None,
        embed_threads: int | None = None,
        complete: bool = True,
        own_accounts: Sequence[Sequence[OwnAccount]] | None = None,
    ) -> PreparedChecks:
        """Queries parsed and completed from the store, avatars hashed, bios embedded: mostly
        outside the GIL (decoders, the model), so a pipeline does it for a later batch while
        it searches and scores earlier ones. `embed_threads`: see `BioEmbedder.embed`.
        `own_accounts`: each query's own accounts (see `check`), in the queries' order."""
        if own_accounts is not None and len(own_accounts) != len(queries):
            raise ValueError(
                f"{len(own_accounts)} lists of own accounts for {len(queries)} queries"
            )
        declared = list(own_accounts) if own_accounts is not None else [()] * len(queries)
        parsed: list[ProfileQuery | CloneFinderError] = []
        with check_stage("parse"):
            for raw in queries:
                try:
                    parsed.append(raw if isinstance(raw, ProfileQuery) else parse_query(raw))
                except CloneFinderError as exc:
                    parsed.append(exc)
        valid = [
            (query, mine)
            for query, mine in zip(parsed, declared, strict=True)
            if isinstance(query, ProfileQuery)
        ]
        sides = iter(
            self._query_sides(
                valid, base_dir=base_dir, embed_threads=embed_threads, complete=complete
            )
        )
        prepared: list[CheckSides | CloneFinderError] = [
            q if isinstance(q, CloneFinderError) else next(sides) for q in parsed
        ]
        batch = [
            match_query
            for person, (query, item) in enumerate(zip(parsed, prepared, strict=True))
            if isinstance(query, ProfileQuery) and not isinstance(item, CloneFinderError)
            for match_query in _person_sides(person, query, item, complete=complete)
        ]
        return PreparedChecks(parsed, prepared, batch, complete=complete)

    def search_checks(
        self, prepared: PreparedChecks, *, load_for: float | None = None
    ) -> PreparedChecks:
        """Read checks with their candidates from every index (FAISS, the name index), and,
        given the `min_score` they will be scored for, the candidates' rows too."""
        batch = prepared.batch
        with check_stage("candidates"):
            found = self.matcher.candidates_many(
                [q.side for q in batch], exclude_ids=[q.exclude_ids for q in batch]
            )
            if load_for is None:
                return replace(prepared, candidates=found)
            loaded = self.matcher.load_candidates(found, min_score=load_for)
        return replace(prepared, candidates=loaded)

    def finish_checks(
        self, prepared: PreparedChecks, *, top_k: int = 10, min_score: float | None = None
    ) -> list[Result | CloneFinderError]:
        """The second half of `check_many`: candidates loaded, compared and scored."""
        if prepared.candidates is None:
            prepared = self.search_checks(prepared)
        assert prepared.candidates is not None
        with check_stage("scoring"):
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
            own = [
                _own_account_out(a, row, looked_up=prepared.complete)
                for a, row in item.own_accounts
            ]
            results.append(Result(query=ref, matches=next(found), own_accounts=own))
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
        queries: Sequence[tuple[ProfileQuery, Sequence[OwnAccount]]],
        *,
        base_dir: Path | None,
        embed_threads: int | None,
        complete: bool = True,
    ) -> list[CheckSides | CloneFinderError]:
        """Each query as comparison sees it, completed from the store when it names a stored
        profile, with its own accounts' stored profiles (all looked up at once, all bios
        embedded at once)."""
        stored = self.store.get_by_identity(
            [
                (query.platform, query.handle)
                for query, _ in queries
                if query.platform and query.handle
            ]
            + [(account.platform, account.handle) for _, mine in queries for account in mine]
        )
        out: list[CheckSides | CloneFinderError] = []
        for query, mine in queries:
            own = stored.get(query.key) if query.platform and query.handle else None
            try:
                side = self._query_side(query, own, base_dir=base_dir, complete=complete)
            except CloneFinderError as exc:
                out.append(exc)
                continue
            accounts = [(account, stored.get(account.key)) for account in mine]
            out.append(CheckSides(side, own, accounts))
        with_bio = [
            item.side for item, (query, _) in zip(out, queries, strict=True)
            if not isinstance(item, CloneFinderError) and query.bio
        ]  # fmt: skip
        with check_stage("embedding"):
            vectors = self.embedder.embed_bios(
                [side.bio for side in with_bio], threads=embed_threads
            )
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
    ) -> ProfileSide:
        """One query's side, but for its bio vector (the caller embeds a batch at once)."""
        fill = own if complete else None
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
        with check_stage("avatar"):
            avatar = self.avatars.read(query, base_dir=base_dir)
        return query_side(query, fill, avatar=avatar, clues="whole")

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
        return self.index_sync.reindex()

    def refresh(self) -> None:
        """Apply what other processes wrote to the store since (scan workers that ingest, a
        server next to workers), so this process's checks see it too."""
        self.index_sync.refresh()

    def see_other_writers(self) -> None:
        """Before a check: the indexes show every write acknowledged before it, through
        whichever process (see `IndexSync.see_other_writers`)."""
        self.index_sync.see_other_writers()

    def load_demo(self) -> int:
        """Load the bundled demo corpus into an empty store, so a first check finds something."""
        if self.store.count():
            return 0
        from service.records import read_records

        report = self.ingest(read_records(DEMO_DIR / "profiles.jsonl"), base_dir=DEMO_DIR)
        return report.created


def _person_sides(
    person: int, query: ProfileQuery, sides: CheckSides, *, complete: bool
) -> list[MatchQuery]:
    """The sides a check compares candidates with: its query's, then (where the caller may
    read stored profiles by name) each stored own account's, all with the same identities
    left out of the matches."""
    own_rows = [row for _, row in sides.own_accounts if row is not None]
    stored = [row for row in (sides.stored, *own_rows) if row is not None]
    keys = frozenset({query.key, *(account.key for account, _ in sides.own_accounts)})
    exclude_ids = frozenset(row.id for row in stored)
    platforms = frozenset(
        platform
        for platform in (query.platform, *(account.platform for account, _ in sides.own_accounts))
        if platform
    )
    others = [row for row in own_rows if sides.stored is None or row.id != sides.stored.id]
    return [
        MatchQuery(each, keys=keys, exclude_ids=exclude_ids, person=person, platforms=platforms)
        for each in [sides.side, *(side_of_row(row) for row in others if complete)]
    ]


def _own_account_out(
    account: OwnAccount, row: ProfileRow | None, *, looked_up: bool
) -> OwnAccountOut:
    """A declared account as a result lists it: what the store holds of it, where the caller
    may read stored profiles by name (`looked_up`); else only the account."""
    if not looked_up:
        return OwnAccountOut(platform=account.platform, handle=account.handle, found=None)
    return OwnAccountOut(
        platform=row.platform if row else account.platform,
        handle=row.handle if row else account.handle,
        found=row is not None,
        profile=row.to_stored().model_dump(mode="json", exclude_none=True) if row else None,
    )


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
