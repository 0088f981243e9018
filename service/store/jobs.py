"""Durable bulk-scan jobs in the store: the job, its input lines, its chunks and its results.

A job's input is cut into chunks (ranges of input lines). Workers, in any number of processes,
claim a chunk with a lease (PostgreSQL: `SELECT ... FOR UPDATE SKIP LOCKED`; SQLite: under the
database write lock), keep the lease alive while they work, and write the chunk's results and
its "done" mark in one transaction that first checks they still hold the lease. Results are
keyed by (job, line), so each input line gets exactly one result even when a worker dies
mid-chunk: its lease expires and another worker (or the restarted one) redoes the chunk, and
a late commit of the dead lease's holder (one that was only paused) is refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import (
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Row

from service.store.store import _WRITE_OPTION, Store, _utcnow
from service.store.tables import JSONDocument, UTCDateTime, metadata

JobState = Literal["receiving", "queued", "running", "done", "failed", "cancelled"]
JobMode = Literal["against_index", "clusters"]
# States in which workers take a job's chunks.
ACTIVE_STATES: tuple[JobState, ...] = ("queued", "running")
FINISHED_STATES: tuple[JobState, ...] = ("done", "failed", "cancelled")

scan_jobs = Table(
    "scan_jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner_key_id", Integer, nullable=False),
    Column("mode", String(32), nullable=False),
    Column("options", JSONDocument, nullable=False),
    # "receiving" while the upload is stored: no worker takes it and no client sees it.
    Column("state", String(16), nullable=False),
    Column("total", Integer),
    Column("processed", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("result_lines", Integer, nullable=False),
    Column("error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
)
Index("ix_scan_jobs_state", scan_jobs.c.state)

scan_inputs = Table(
    "scan_inputs",
    metadata,
    Column("job_id", String(32), ForeignKey("scan_jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("line_no", Integer, primary_key=True),  # 0-based position among the job's records
    Column("label", Text, nullable=False),  # where the record came from: "line 7", "index 3"
    Column("raw", Text),  # the record's JSON text
    Column("problem", Text),  # why the record could not even be read (e.g. a line too long)
)

scan_chunks = Table(
    "scan_chunks",
    metadata,
    Column("job_id", String(32), ForeignKey("scan_jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("chunk_no", Integer, primary_key=True),
    Column("first_line", Integer, nullable=False),
    Column("end_line", Integer, nullable=False),  # exclusive
    Column("state", String(16), nullable=False),  # pending, running, done
    Column("worker_id", String(200)),
    Column("lease_token", String(32)),
    Column("lease_until", UTCDateTime),
    Column("attempts", Integer, nullable=False),
    Column("finished_at", UTCDateTime),
)
Index("ix_scan_chunks_state_lease_until", scan_chunks.c.state, scan_chunks.c.lease_until)

scan_results = Table(
    "scan_results",
    metadata,
    Column("job_id", String(32), ForeignKey("scan_jobs.id", ondelete="CASCADE"), primary_key=True),
    # Position in the job's result stream: the input line for `against_index`, the group (or
    # rejected record) for `clusters`.
    Column("line_no", Integer, primary_key=True),
    Column("result", Text, nullable=False),  # one JSON document, sent as is
    Column("worker_id", String(200), nullable=False),
)


@dataclass(frozen=True)
class JobRow:
    """A scan job as stored; `total` is None until its upload is complete."""

    id: str
    owner_key_id: int
    mode: JobMode
    options: dict[str, Any]
    state: JobState
    total: int | None
    processed: int
    errors: int
    result_lines: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class InputLine:
    line_no: int
    label: str
    raw: str | None
    problem: str | None = None


@dataclass(frozen=True)
class ChunkClaim:
    """A chunk a worker holds: valid while its lease is renewed and the token still matches."""

    job_id: str
    chunk_no: int
    first_line: int
    end_line: int
    worker_id: str
    lease_token: str
    attempts: int
    mode: JobMode
    options: dict[str, Any]


@dataclass(frozen=True)
class ResultLine:
    line_no: int
    result: str  # JSON text


class _LeaseLost(Exception):
    """Raised inside a transaction to roll it back: the chunk is no longer ours to finish."""


_JOB_COLUMNS = [scan_jobs.c[name] for name in JobRow.__dataclass_fields__]


def _job_row(row: Row[Any]) -> JobRow:
    return JobRow(**{name: getattr(row, name) for name in JobRow.__dataclass_fields__})


class JobStore:
    """Data access for scan jobs, on the same database (and engine) as the profile store.

    `max_attempts`: how many times a chunk may be claimed before its job is failed, so a
    record that crashes every worker that touches it (memory, a native crash) cannot keep
    the fleet busy forever. `clock`: the current UTC time, which leases are measured by (tests
    move it by hand, so that no test of a lease depends on how fast the machine runs).
    """

    def __init__(
        self,
        store: Store,
        *,
        max_attempts: int = 5,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._engine = store.engine
        self._write_engine = store.engine.execution_options(**{_WRITE_OPTION: True})
        self._max_attempts = max_attempts
        self._clock = clock

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        # SQLite: BEGIN IMMEDIATE (the write lock at once); PostgreSQL: a plain transaction.
        with self._write_engine.begin() as conn:
            yield conn

    # -- creating a job -------------------------------------------------------------------

    def create_job(self, *, owner_key_id: int, mode: JobMode, options: dict[str, Any]) -> str:
        """A new job in state "receiving": invisible to workers until `seal_job`."""
        job_id = uuid.uuid4().hex
        with self._writing() as conn:
            conn.execute(
                insert(scan_jobs).values(
                    id=job_id,
                    owner_key_id=owner_key_id,
                    mode=mode,
                    options=options,
                    state="receiving",
                    processed=0,
                    errors=0,
                    result_lines=0,
                    created_at=self._clock(),
                )
            )
        return job_id

    def add_inputs(self, job_id: str, lines: Sequence[InputLine]) -> None:
        """Store a batch of input records (one transaction per batch)."""
        if not lines:
            return
        with self._writing() as conn:
            conn.execute(
                insert(scan_inputs),
                [
                    {
                        "job_id": job_id,
                        "line_no": line.line_no,
                        "label": line.label,
                        "raw": line.raw,
                        "problem": line.problem,
                    }
                    for line in lines
                ],
            )

    def seal_job(
        self,
        job_id: str,
        *,
        total: int,
        chunk_size: int,
        mode: JobMode | None = None,
        options: dict[str, Any] | None = None,
    ) -> JobRow:
        """The upload is complete: cut it into chunks and let workers take it; `mode` and
        `options` replace those given at creation (a body may carry options after its records).

        A clusters job is one chunk (its groups need every record at once); an empty job is
        done at once.
        """
        with self._writing() as conn:
            if mode is None:
                mode = conn.execute(
                    select(scan_jobs.c.mode).where(scan_jobs.c.id == job_id)
                ).scalar_one()
            size = max(total, 1) if mode == "clusters" else max(1, chunk_size)
            chunks = [
                {
                    "job_id": job_id,
                    "chunk_no": number,
                    "first_line": first,
                    "end_line": min(total, first + size),
                    "state": "pending",
                    "attempts": 0,
                }
                for number, first in enumerate(range(0, total, size))
            ]
            if chunks:
                conn.execute(insert(scan_chunks), chunks)
            now = self._clock()
            values: dict[str, Any] = {
                "total": total,
                "state": "queued" if total else "done",
                "mode": mode,
            }
            if options is not None:
                values["options"] = options
            if not total:
                values.update(started_at=now, finished_at=now)
            conn.execute(update(scan_jobs).where(scan_jobs.c.id == job_id).values(**values))
            row = conn.execute(select(*_JOB_COLUMNS).where(scan_jobs.c.id == job_id)).one()
        return _job_row(row)

    def discard_job(self, job_id: str) -> None:
        """Erase a job and everything of it (an upload that failed half way)."""
        with self._writing() as conn:
            for table in (scan_results, scan_chunks, scan_inputs):
                conn.execute(delete(table).where(table.c.job_id == job_id))
            conn.execute(delete(scan_jobs).where(scan_jobs.c.id == job_id))

    def drop_abandoned_uploads(self, *, older_than: timedelta) -> int:
        """Erase jobs still "receiving" after `older_than`: their uploader is gone."""
        cutoff = self._clock() - older_than
        stmt = select(scan_jobs.c.id).where(
            scan_jobs.c.state == "receiving", scan_jobs.c.created_at < cutoff
        )
        with self._engine.connect() as conn:
            stale = [row.id for row in conn.execute(stmt)]
        for job_id in stale:
            self.discard_job(job_id)
        return len(stale)

    # -- reading and cancelling -----------------------------------------------------------

    def get_job(self, job_id: str) -> JobRow | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(*_JOB_COLUMNS).where(scan_jobs.c.id == job_id)).first()
        return None if row is None else _job_row(row)

    def cancel(self, job_id: str) -> JobRow | None:
        """Stop a queued or running job (workers take no more of its chunks); a finished job
        is left as it is. None when there is no such job."""
        with self._writing() as conn:
            conn.execute(
                update(scan_jobs)
                .where(scan_jobs.c.id == job_id, scan_jobs.c.state.in_(ACTIVE_STATES))
                .values(state="cancelled", finished_at=self._clock())
            )
            row = conn.execute(select(*_JOB_COLUMNS).where(scan_jobs.c.id == job_id)).first()
        return None if row is None else _job_row(row)

    def fail_job(self, job_id: str, message: str) -> None:
        with self._writing() as conn:
            self._fail(conn, job_id, message)

    def _fail(self, conn: Connection, job_id: str, message: str) -> None:
        conn.execute(
            update(scan_jobs)
            .where(scan_jobs.c.id == job_id, scan_jobs.c.state.in_(ACTIVE_STATES))
            .values(state="failed", error=message, finished_at=self._clock())
        )

    def results(self, job_id: str, *, offset: int, limit: int) -> list[ResultLine]:
        """Up to `limit` stored result lines from `offset` on, in order (gaps are skipped:
        the caller stops at the first one)."""
        stmt = (
            select(scan_results.c.line_no, scan_results.c.result)
            .where(scan_results.c.job_id == job_id, scan_results.c.line_no >= offset)
            .order_by(scan_results.c.line_no)
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return [ResultLine(row.line_no, row.result) for row in conn.execute(stmt)]

    def result_workers(self, job_id: str) -> list[tuple[int, str]]:
        """(line, worker id) of every stored result, in order: who did which line."""
        stmt = (
            select(scan_results.c.line_no, scan_results.c.worker_id)
            .where(scan_results.c.job_id == job_id)
            .order_by(scan_results.c.line_no)
        )
        with self._engine.connect() as conn:
            return [(int(row.line_no), str(row.worker_id)) for row in conn.execute(stmt)]

    # -- workers --------------------------------------------------------------------------

    def claim(self, worker_id: str, *, lease_s: float) -> ChunkClaim | None:
        """The oldest active job's next free chunk (never claimed, or its lease expired),
        now leased to `worker_id`; None when there is no work."""
        now = self._clock()
        free = or_(
            scan_chunks.c.state == "pending",
            and_(scan_chunks.c.state == "running", scan_chunks.c.lease_until < now),
        )
        free_chunks = (
            select(
                scan_chunks.c.job_id,
                scan_chunks.c.chunk_no,
                scan_chunks.c.first_line,
                scan_chunks.c.end_line,
                scan_chunks.c.attempts,
                scan_jobs.c.mode,
                scan_jobs.c.options,
            )
            .join(scan_jobs, scan_jobs.c.id == scan_chunks.c.job_id)
            .where(scan_jobs.c.state.in_(ACTIVE_STATES), free)
            .order_by(scan_jobs.c.created_at, scan_chunks.c.job_id, scan_chunks.c.chunk_no)
            .limit(1)
        )
        # PostgreSQL: rows another worker is claiming right now are skipped, not waited for.
        # SQLite renders nothing here; its write lock serialises claims instead.
        stmt = free_chunks.with_for_update(skip_locked=True, of=scan_chunks)
        # Idle workers poll: look without the write lock first (SQLite has only one).
        with self._engine.connect() as conn:
            if conn.execute(free_chunks).first() is None:
                return None
        with self._writing() as conn:
            while True:
                row = conn.execute(stmt).first()
                if row is None:
                    return None
                if row.attempts >= self._max_attempts:
                    # Every worker that took this chunk died on it: stop the job rather than
                    # let it take the fleet down again and again.
                    self._fail(
                        conn,
                        row.job_id,
                        f"chunk {row.chunk_no} (records {row.first_line}-{row.end_line - 1}) "
                        f"was abandoned by {row.attempts} workers in a row",
                    )
                    continue
                token = uuid.uuid4().hex
                conn.execute(
                    update(scan_chunks)
                    .where(
                        scan_chunks.c.job_id == row.job_id,
                        scan_chunks.c.chunk_no == row.chunk_no,
                    )
                    .values(
                        state="running",
                        worker_id=worker_id,
                        lease_token=token,
                        lease_until=now + timedelta(seconds=lease_s),
                        attempts=row.attempts + 1,
                    )
                )
                conn.execute(
                    update(scan_jobs)
                    .where(scan_jobs.c.id == row.job_id, scan_jobs.c.state == "queued")
                    .values(state="running", started_at=now)
                )
                return ChunkClaim(
                    job_id=row.job_id,
                    chunk_no=row.chunk_no,
                    first_line=row.first_line,
                    end_line=row.end_line,
                    worker_id=worker_id,
                    lease_token=token,
                    attempts=row.attempts + 1,
                    mode=cast(JobMode, row.mode),
                    options=dict(row.options or {}),
                )

    def renew(self, claim: ChunkClaim, *, lease_s: float) -> bool:
        """Extend the lease; False when it was lost (expired and taken) or the job stopped."""
        with self._writing() as conn:
            result = conn.execute(
                update(scan_chunks)
                .where(*self._held(claim))
                .values(lease_until=self._clock() + timedelta(seconds=lease_s))
            )
            if result.rowcount != 1:
                return False
            state = conn.execute(
                select(scan_jobs.c.state).where(scan_jobs.c.id == claim.job_id)
            ).scalar_one()
        return state in ACTIVE_STATES

    def report_progress(self, claim: ChunkClaim, *, processed: int) -> None:
        """Record how far a long single-chunk job (clusters) has got, while the lease holds."""
        with self._writing() as conn:
            held = conn.execute(select(scan_chunks.c.chunk_no).where(*self._held(claim))).first()
            if held is not None:
                conn.execute(
                    update(scan_jobs)
                    .where(scan_jobs.c.id == claim.job_id, scan_jobs.c.state == "running")
                    .values(processed=processed)
                )

    def inputs(self, job_id: str, *, first: int, end: int) -> list[InputLine]:
        """The job's input records in [first, end), in order."""
        stmt = (
            select(
                scan_inputs.c.line_no, scan_inputs.c.label, scan_inputs.c.raw, scan_inputs.c.problem
            )
            .where(
                scan_inputs.c.job_id == job_id,
                scan_inputs.c.line_no >= first,
                scan_inputs.c.line_no < end,
            )
            .order_by(scan_inputs.c.line_no)
        )
        with self._engine.connect() as conn:
            return [InputLine(r.line_no, r.label, r.raw, r.problem) for r in conn.execute(stmt)]

    def complete(
        self,
        claim: ChunkClaim,
        results: Sequence[ResultLine],
        *,
        processed: int,
        errors: int,
        processed_is_total: bool = False,
    ) -> bool:
        """Write a chunk's results and mark it done, in one transaction.

        Nothing is written (False) when the lease was lost or the job was cancelled or failed
        meanwhile: the chunk's lines then get their results from whoever holds it now, once.
        `processed` is added to the job's count, or replaces it when `processed_is_total`.
        The job is done when every record is processed.
        """
        try:
            with self._writing() as conn:
                marked = conn.execute(
                    update(scan_chunks)
                    .where(*self._held(claim))
                    .values(state="done", lease_until=None, finished_at=self._clock())
                )
                if marked.rowcount != 1:
                    raise _LeaseLost
                counted = conn.execute(
                    update(scan_jobs)
                    .where(scan_jobs.c.id == claim.job_id, scan_jobs.c.state == "running")
                    .values(
                        processed=processed
                        if processed_is_total
                        else scan_jobs.c.processed + processed,
                        errors=scan_jobs.c.errors + errors,
                        result_lines=scan_jobs.c.result_lines + len(results),
                    )
                    .returning(scan_jobs.c.processed, scan_jobs.c.total)
                ).first()
                if counted is None:
                    raise _LeaseLost
                if results:
                    conn.execute(
                        insert(scan_results),
                        [
                            {
                                "job_id": claim.job_id,
                                "line_no": line.line_no,
                                "result": line.result,
                                "worker_id": claim.worker_id,
                            }
                            for line in results
                        ],
                    )
                if counted.total is not None and counted.processed >= counted.total:
                    conn.execute(
                        update(scan_jobs)
                        .where(scan_jobs.c.id == claim.job_id)
                        .values(state="done", finished_at=self._clock())
                    )
        except _LeaseLost:
            return False
        return True

    @staticmethod
    def _held(claim: ChunkClaim) -> tuple[Any, ...]:
        return (
            scan_chunks.c.job_id == claim.job_id,
            scan_chunks.c.chunk_no == claim.chunk_no,
            scan_chunks.c.lease_token == claim.lease_token,
            scan_chunks.c.state == "running",
        )
