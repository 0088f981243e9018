"""Idempotency keys in the store: the `idempotency_keys` table and `IdempotencyStore`.

A creating request sent with an `Idempotency-Key` claims the key (per API key) before it runs;
once it has succeeded its answer is kept with the key, so that a retry gets that answer
instead of creating the thing twice. The unique (key_id, idempotency_key) pair is what keeps
two concurrent duplicates, in one process or several, from both running: the second finds the
first's claim. Rows are kept for a day from the first request and purged lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from service.store.store import _WRITE_OPTION, Store, _utcnow
from service.store.tables import BigId, JSONDocument, UTCDateTime, metadata

# How long a key is kept: a retry within this time after the first request gets its answer.
KEEP_KEYS_FOR = timedelta(hours=24)
# A claim whose request never finished (its server process died) is taken over after this:
# long enough for the largest scan upload to stream in.
ABANDONED_AFTER = timedelta(hours=1)
MAX_KEY_LENGTH = 255

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # The API key the request was made with (no foreign key, as for watchlist entries: keys
    # live in their own module and a revoked key keeps its id).
    Column("key_id", Integer, nullable=False),
    Column("idempotency_key", String(MAX_KEY_LENGTH), nullable=False),
    # SHA-256 of the request (method, path, query, content type, body); null while a request
    # whose body streams in (a scan upload) is still running.
    Column("request_hash", String(64)),
    # The answer, once the request succeeded; null while it runs.
    Column("status_code", Integer),
    Column("response_headers", JSONDocument),
    Column("response_body", LargeBinary),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("key_id", "idempotency_key"),
    sqlite_autoincrement=True,
)
# The lazy purge deletes by age.
Index("ix_idempotency_keys_created_at", idempotency_keys.c.created_at)


@dataclass(frozen=True)
class Claimed:
    """This request holds the key: it runs, then `complete` or `release` the claim."""

    claim_id: int


@dataclass(frozen=True)
class InProgress:
    """Another request with the same key is running; `request_hash` is its, when known."""

    request_hash: str | None


@dataclass(frozen=True)
class Completed:
    """A request with the same key succeeded: its request's hash and its answer."""

    request_hash: str
    status_code: int
    headers: dict[str, str]
    body: bytes


Claim = Claimed | InProgress | Completed


class IdempotencyStore:
    """Claims, answers and the purge of idempotency keys (SQLite or PostgreSQL).

    Thread-safe like `Store`. Writes take SQLite's write lock at BEGIN, so on SQLite claims
    are serialised; on PostgreSQL the unique constraint decides between concurrent claims.
    """

    def __init__(
        self,
        store: Store,
        *,
        keep_for: timedelta = KEEP_KEYS_FOR,
        abandoned_after: timedelta = ABANDONED_AFTER,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._engine = store.engine
        self._write_engine = store.engine.execution_options(**{_WRITE_OPTION: True})
        dialect_insert = (
            postgresql.insert if store.engine.dialect.name == "postgresql" else sqlite.insert
        )
        self._insert = (
            dialect_insert(idempotency_keys)
            .on_conflict_do_nothing(
                index_elements=[idempotency_keys.c.key_id, idempotency_keys.c.idempotency_key]
            )
            .returning(idempotency_keys.c.id)
        )
        self._keep_for = keep_for
        self._abandoned_after = abandoned_after
        self._clock = clock

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self._write_engine.begin() as conn:
            yield conn

    def claim(self, key_id: int, idempotency_key: str, request_hash: str | None) -> Claim:
        """Claim `idempotency_key` for a request of the API key `key_id`, or say who has it.

        `request_hash` is the request's, when it is known before it runs. Keys older than a
        day are purged first (those of every API key), and a claim abandoned for an hour is
        taken over.
        """
        now = self._clock()
        with self._writing() as conn:
            conn.execute(
                delete(idempotency_keys).where(idempotency_keys.c.created_at < now - self._keep_for)
            )
            conn.execute(
                delete(idempotency_keys).where(
                    idempotency_keys.c.key_id == key_id,
                    idempotency_keys.c.idempotency_key == idempotency_key,
                    idempotency_keys.c.status_code.is_(None),
                    idempotency_keys.c.created_at < now - self._abandoned_after,
                )
            )
            claim_id = conn.execute(
                self._insert.values(
                    key_id=key_id,
                    idempotency_key=idempotency_key,
                    request_hash=request_hash,
                    created_at=now,
                )
            ).scalar()
            if claim_id is not None:
                return Claimed(int(claim_id))
            # Another request holds the key: on PostgreSQL the insert waited for it to commit.
            row = conn.execute(
                select(
                    idempotency_keys.c.request_hash,
                    idempotency_keys.c.status_code,
                    idempotency_keys.c.response_headers,
                    idempotency_keys.c.response_body,
                ).where(
                    idempotency_keys.c.key_id == key_id,
                    idempotency_keys.c.idempotency_key == idempotency_key,
                )
            ).one()
        if row.status_code is None:
            return InProgress(row.request_hash)
        return Completed(
            request_hash=row.request_hash,
            status_code=int(row.status_code),
            headers=dict(row.response_headers or {}),
            body=bytes(row.response_body or b""),
        )

    def complete(
        self,
        claim: Claimed,
        *,
        request_hash: str,
        status_code: int,
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        """Keep the answer of the request that held `claim` (a no-op if it was taken over)."""
        values: dict[str, Any] = {
            "request_hash": request_hash,
            "status_code": status_code,
            "response_headers": headers,
            "response_body": body,
        }
        with self._writing() as conn:
            conn.execute(
                update(idempotency_keys)
                .where(
                    idempotency_keys.c.id == claim.claim_id,
                    idempotency_keys.c.status_code.is_(None),
                )
                .values(values)
            )

    def release(self, claim: Claimed) -> None:
        """Give the key back unanswered (the request failed): a retry runs again."""
        with self._writing() as conn:
            conn.execute(
                delete(idempotency_keys).where(
                    idempotency_keys.c.id == claim.claim_id,
                    idempotency_keys.c.status_code.is_(None),
                )
            )

    def count(self) -> int:
        """How many keys are kept (answered or running), every API key's."""
        with self._engine.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(idempotency_keys)).scalar_one()
            )
