"""One writer at a time for indexes that several processes share (the Milvus backend).

A shared index must apply the store's change log in order, once: two processes replaying the
log side by side could write an old upsert after a newer delete and bring a deleted profile
back. The lock lives where every process already meets, the store's database: a PostgreSQL
advisory lock (held by a transaction, so a process that dies releases it), or for SQLite,
which only serves one machine, an exclusive `flock` on a file beside the database.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, text

# pg_advisory_xact_lock key of the shared index writer ("cfix").
_WRITER_LOCK_KEY = 0x63666978
# In-memory SQLite databases live in one process, whose threads share this lock.
_memory_lock = threading.Lock()


@contextlib.contextmanager
def shared_index_writer(db: Engine) -> Iterator[None]:
    """Hold the store-wide index writer lock for the body (blocks until it is free).

    Not reentrant: the holder must not ask again (with SQLite a second `flock` on a new file
    handle waits for the first, even in the same process).
    """
    dialect = db.dialect.name
    if dialect == "postgresql":
        with db.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WRITER_LOCK_KEY})
            yield
        return
    database = db.url.database if dialect == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        with _memory_lock:
            yield
        return
    with open(Path(f"{database}.index-writer.lock"), "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
