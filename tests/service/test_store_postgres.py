"""The store on PostgreSQL at scale: the bulk path gives what the SQLite path gives, and the
queries of checks, ingest, index catch-up and job claims are served by indexes."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, insert, text

from models.profile import parse_record
from service.store import AvatarBlob, JobStore, KeyStore, ProfileWrite, Store
from service.store.jobs import scan_chunks, scan_jobs, scan_results
from service.store.keys import api_keys
from service.store.store import (
    _PG_AVATARS,
    _PG_CHANGES,
    _PG_COLUMNS,
    _PG_EXISTING,
    _PG_INSERT,
    _PG_REPLACE,
    _PG_STAGING_TABLE,
)

from .conftest import _postgres_database

# Enough rows that a sequential scan costs the planner more than an index would.
PROFILES = 6_000
JOBS = 3_000


def _write(
    i: int, *, handle: str | None = None, bio: str | None = None, **fields: Any
) -> ProfileWrite:
    raw = {
        "platform": ("twitter", "instagram", "Mastodon")[i % 3],
        "handle": handle or f"user_{i}",
        "display_name": f"Person {i}",
        "bio": bio if bio is not None else f"bio number {i}",
        "followers_count": i,
        "created_at": datetime(2020, 1, 1) + timedelta(days=i % 900),  # naive: read as UTC
        "verified": i % 2 == 0,
        "attributes": {"n": i, "tags": ["ж", "東京", "🙂"], "nested": {"ok": True}},
        **fields,
    }
    record = parse_record(raw, where=f"record {i}")
    avatar = None
    if i % 3 == 0:
        data = bytes([0, 255, i % 256, 0x89]) * 64 + i.to_bytes(4, "big")
        avatar = AvatarBlob(f"{i:064x}", data, "image/png", 8, 8)
    return ProfileWrite(
        record=record,
        avatar=avatar,
        avatar_hashes=bytes([i % 256]) * 112 if avatar else None,
        bio_vector=(b"\x00\x00\x80?" * 384) if record.bio else None,
        name_key=f"person {i}",
        handle_norm=record.handle.casefold(),
    )


def _batches() -> list[list[ProfileWrite]]:
    """New profiles, then a batch of replacements (new and dropped avatars, a duplicate
    identity within the batch, a case change) mixed with new ones."""
    first = [_write(i) for i in range(300)]
    second = [
        _write(3, bio="replaced, same avatar"),
        _write(6, avatar_url="https://example.org/a.png"),
        _write(301),
        _write(1, handle="USER_1", bio="case changed"),
        _write(302),
        _write(1, bio="last write wins"),
    ]
    # Profile 9's avatar is replaced by 12's: 9's blob is used by nobody and is erased.
    nine = _write(9)
    twelve = _write(12)
    second.append(ProfileWrite(nine.record, twelve.avatar, twelve.avatar_hashes, None, "n", "h"))
    return [first, second]


def _snapshot(store: Store) -> dict[str, Any]:
    """Everything stored, with ids replaced by the identities they stand for and without the
    moments of writing (which differ between runs). SQLite draws a new id for every row an
    upsert tries, PostgreSQL's bulk path only for rows it inserts, so the numbers differ."""
    outcomes = [store.upsert(batch) for batch in _batches()]
    rows = {}
    for row in store.get_many(range(1, 1_000)):
        values = asdict(row)
        for name in ("id", "ingested_at", "updated_at"):
            values.pop(name)
        rows[row.id] = values
    identity = {
        pid: (values["platform"].lower(), values["handle"].lower()) for pid, values in rows.items()
    }
    with store.engine.connect() as conn:
        blobs = conn.execute(text("SELECT sha256, data, byte_size FROM avatars ORDER BY sha256"))
        avatars = [(sha, bytes(data), size) for sha, data, size in blobs]
    return {
        "outcomes": [[(identity[o.id], o.created) for o in batch] for batch in outcomes],
        "rows": sorted(rows.values(), key=lambda values: (values["platform"], values["handle"])),
        "avatars": avatars,
        "changes": [(identity[c.profile_id], c.op) for c in store.changes_since(0)],
        "max_id": max(rows),
    }


@pytest.mark.postgres
def test_the_bulk_path_stores_exactly_what_the_sqlite_path_stores(
    request: pytest.FixtureRequest, tmp_path: Path, _postgres_admin: Any
) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as sqlite_store:
        expected = _snapshot(sqlite_store)
    for url in _postgres_database(request):
        with Store.open(url) as pg_store:
            got = _snapshot(pg_store)
    assert got["outcomes"] == expected["outcomes"]
    assert got["changes"] == expected["changes"]  # one change per write, in batch order
    assert got["avatars"] == expected["avatars"]
    assert got["rows"] == expected["rows"]
    assert len(expected["rows"]) == 302 and len(expected["changes"]) == 300 + 6
    # Replacing stored profiles used up no ids: 302 profiles, ids 1 to 302.
    assert got["max_id"] == 302


def test_get_by_identity_folds_keys_and_skips_unknown_ones(store: Store) -> None:
    store.upsert([_write(i) for i in range(5)])
    found = store.get_by_identity(
        [("TWITTER", "@User_0"), ("instagram", "user_1"), ("twitter", "nobody"), ("x", "user_2")]
    )
    assert sorted(found) == [("instagram", "user_1"), ("twitter", "user_0")]
    assert found[("twitter", "user_0")].display_name == "Person 0"
    assert store.get_by_identity([]) == {}


# -- query plans -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def filled(request: pytest.FixtureRequest) -> Iterator[Store]:
    """A PostgreSQL store with thousands of profiles, changes, avatars, finished scan jobs and
    one job in progress, analysed, so the planner chooses as it would in production."""
    request.getfixturevalue("_postgres_admin")  # skips when PostgreSQL is absent
    for url in _postgres_database(request):
        store = Store.open(url)
        try:
            for start in range(0, PROFILES, 500):
                store.upsert([_write(i) for i in range(start, start + 500)])
            store.upsert([_write(i, bio="again") for i in range(0, PROFILES, 7)])
            _fill_jobs_and_keys(store)
            with store.engine.connect() as conn:
                conn.execute(text("ANALYZE"))
                conn.commit()
            yield store
        finally:
            store.close()


def _fill_jobs_and_keys(store: Store) -> None:
    now = datetime.now(UTC)
    jobs: list[dict[str, Any]] = []
    chunks: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for j in range(JOBS):
        job_id = uuid.uuid4().hex
        state = "done" if j < JOBS - 1 else "running"
        jobs.append(
            {
                "id": job_id, "owner_key_id": 1, "mode": "against_index", "options": {},
                "state": state, "total": 2048, "processed": 0, "errors": 0, "result_lines": 0,
                "created_at": now - timedelta(seconds=JOBS - j),
            }
        )  # fmt: skip
        for chunk_no in range(2 if state == "done" else 20):
            chunks.append(
                {
                    "job_id": job_id, "chunk_no": chunk_no, "first_line": chunk_no * 1024,
                    "end_line": (chunk_no + 1) * 1024, "attempts": 1,
                    "state": "done" if state == "done" or chunk_no < 5 else "pending",
                }
            )  # fmt: skip
        if j % 10 == 0:
            results.extend(
                {"job_id": job_id, "line_no": n, "result": "{}", "worker_id": "w"} for n in range(5)
            )
    keys = [
        {
            "name": f"key {k}", "role": "platform", "key_hash": f"{k:064x}",
            "prefix": f"cf_{k:06x}", "created_at": now,
        }
        for k in range(1, JOBS)
    ]  # fmt: skip
    with store.engine.begin() as conn:
        conn.execute(insert(api_keys), keys)
        conn.execute(insert(scan_jobs), jobs)
        conn.execute(insert(scan_chunks), chunks)
        conn.execute(insert(scan_results), results)


def _plan(conn: Connection, sql: str, params: Any = None) -> str:
    rows = conn.exec_driver_sql(f"EXPLAIN {sql}", params).scalars().all()
    return "\n".join(rows)


BIG_TABLES = (
    "profiles", "changes", "avatars", "api_keys", "scan_jobs", "scan_chunks", "scan_results",
)  # fmt: skip


def _assert_indexed(plan: str, *, what: str) -> None:
    seq = [line for line in plan.splitlines() if "Seq Scan on" in line]
    assert not [line for line in seq if line.split("Seq Scan on ")[1].split()[0] in BIG_TABLES], (
        f"{what} scans a table:\n{plan}"
    )
    if " on " in plan and not plan.startswith("Insert on"):  # it reads a table
        assert "Index" in plan, f"{what} uses no index:\n{plan}"


@pytest.mark.postgres
def test_hot_queries_of_checks_catch_up_and_claims_use_indexes(filled: Store) -> None:
    store = filled
    jobs = JobStore(store)
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "INSERT")):
            seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        # Checks: a named profile, a batch's named profiles, candidates loaded whole.
        assert store.get("twitter", "user_3000") is not None
        assert len(store.get_by_identity([("twitter", "user_30"), ("instagram", "user_31")])) == 2
        assert len(store.get_many([5, 50, 500, 5000])) == 4
        # Index catch-up: the change log after a saved seq, and a rebuild's keyset pages.
        assert len(store.changes_since(PROFILES - 50)) > 0
        store.last_change_seq()
        next(store.iter_index_rows(batch_size=100))
        # Ingest's erasures: a profile, and an avatar nobody uses any more.
        assert store.delete("twitter", "user_3") is not None
        # Job claims, progress and results.
        claim = jobs.claim("worker-1", lease_s=60)
        assert claim is not None and claim.chunk_no == 5
        assert jobs.renew(claim, lease_s=60)
        jobs.results(claim.job_id, offset=0, limit=100)
        # Every API request looks its key up.
        assert KeyStore(store).find_by_hash("0" * 64) is None
    finally:
        event.remove(store.engine, "before_cursor_execute", record)

    assert len(seen) >= 10
    with store.engine.connect() as conn:
        for statement, parameters in seen:
            if "count(" in statement.lower():
                continue
            params = parameters[0] if isinstance(parameters, list) else parameters
            _assert_indexed(_plan(conn, statement, params), what=statement)
        conn.rollback()


@pytest.mark.postgres
def test_the_bulk_upsert_statements_use_indexes(filled: Store) -> None:
    """The statements the PostgreSQL bulk path sends through the driver itself."""
    store = filled
    keys = [("twitter", f"user_{i}") for i in range(0, 600, 3)]
    now = datetime.now(UTC)
    with store.engine.connect() as conn:
        existing = _plan(
            conn,
            _PG_EXISTING,
            {"platform_keys": [k[0] for k in keys], "handle_keys": [k[1] for k in keys]},
        )
        _assert_indexed(existing, what="the lookup of existing profiles")
        conn.exec_driver_sql(_PG_STAGING_TABLE)
        # A batch's worth of staged rows, as the COPY leaves them.
        conn.exec_driver_sql(
            "INSERT INTO clonefinder_profiles_in SELECT 0, "
            + ", ".join(c for c in _PG_COLUMNS)
            + " FROM profiles LIMIT 512"
        )
        replace = _plan(conn, _PG_REPLACE, {"ids": list(range(1, 1024, 2)), "ords": [0] * 512})
        _assert_indexed(replace, what="the replacement of stored profiles")
        upsert = _plan(conn, _PG_INSERT, {"ords": list(range(512))})
        assert "Conflict Arbiter Indexes: uq_profiles_platform_key_handle_key" in upsert, upsert
        assert "Seq Scan on profiles" not in upsert, upsert
        avatars = _plan(
            conn,
            _PG_AVATARS,
            {
                "sha256": ["a" * 64], "data": [b"x"], "mime": ["image/png"], "width": [1],
                "height": [1], "byte_size": [1], "now": now,
            },
        )  # fmt: skip
        assert "Conflict Arbiter Indexes: pk_avatars" in avatars, avatars
        changes = _plan(conn, _PG_CHANGES, {"ids": [1, 2, 3], "op": "upsert", "now": now})
        assert "Seq Scan on changes" not in changes, changes
        comparable = _plan(
            conn,
            "SELECT id, name_key FROM profiles WHERE id = ANY(%(ids)s)",
            {"ids": list(range(1, 2_000, 7))},
        )
        _assert_indexed(comparable, what="get_comparable")
        conn.rollback()


@pytest.mark.postgres
def test_the_count_at_scale_is_postgresqls_estimate_and_says_so(filled: Store) -> None:
    counted = filled.count()  # about PROFILES (other tests here erase one or two)
    assert filled.count_estimate() == (counted, True)  # below the threshold: counted
    estimate, exact = filled.count_estimate(exact_below=1_000)
    assert not exact and abs(estimate - counted) <= counted * 0.05, (estimate, counted)


def test_a_small_or_unanalysed_store_is_counted(store: Store) -> None:
    assert store.count_estimate(exact_below=1) == (0, True)
    store.upsert([_write(i) for i in range(30)])
    assert store.count_estimate(exact_below=1) == (30, True)  # never analysed: counted


# -- change-log order ------------------------------------------------------------------------


def _paused_before_commit(store: Store) -> tuple[threading.Event, threading.Event, Any]:
    """Events that hold a thread's transaction just before its COMMIT: `paused` is set when it
    gets there, and it commits once `go` is set. Returns (paused, go, hold), where `hold()`
    marks the calling thread as the one to hold."""
    paused, go = threading.Event(), threading.Event()
    held: set[int] = set()

    @event.listens_for(store.engine, "commit")
    def _before_commit(conn: Connection) -> None:
        if threading.get_ident() in held:
            paused.set()
            assert go.wait(30), "never released"

    def hold() -> None:
        held.add(threading.get_ident())

    return paused, go, hold


def _wait_until_done_or_blocked(thread: threading.Thread, store: Store) -> None:
    """Returns once `thread` has finished or waits on a lock in the store's database: then,
    and only then, nothing it may still do happens without another transaction's help."""
    blocked = text(
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    for _ in range(3_000):  # 30 s for a thread that does neither: a hang, reported as such
        thread.join(timeout=0.01)
        if not thread.is_alive():
            return
        with store.engine.connect() as conn:
            if conn.execute(blocked).scalar_one():
                return
    pytest.fail("the second writer neither finished nor waited on a lock")


@pytest.fixture
def pg_store(request: pytest.FixtureRequest, _postgres_admin: Any) -> Iterator[Store]:
    """An empty store of its own on PostgreSQL (skips without PostgreSQL)."""
    for url in _postgres_database(request):
        with Store.open(url) as store:
            yield store


@pytest.mark.postgres
@pytest.mark.parametrize("second", ["upsert", "delete"])
def test_a_reader_never_skips_a_change_that_commits_late(pg_store: Store, second: str) -> None:
    """Transaction A takes the lower seq but commits after B: a reader that applied B and moved
    its mark past A's seq would never see A. So B's seq must not be visible before A's."""
    store = pg_store
    store.upsert([_write(1)])
    mark = store.last_change_seq()
    paused, go, hold = _paused_before_commit(store)

    def first() -> None:
        hold()
        store.upsert([_write(2)])  # takes the lower seq, then waits before COMMIT

    def then() -> None:
        if second == "upsert":
            store.upsert([_write(3)])
        else:
            store.delete("instagram", "user_1")

    a = threading.Thread(target=first)
    b = threading.Thread(target=then)
    a.start()
    try:
        assert paused.wait(30)
        b.start()
        # Without the ordering B commits at once; with it, B waits for A's lock.
        _wait_until_done_or_blocked(b, store)
        seen = [c.seq for c in store.changes_since(mark)]
        # What a reader applying the log now would remember as its last change.
        newest = store.last_change_seq()
    finally:
        go.set()
        a.join(timeout=30)
    b.join(timeout=30)
    assert not a.is_alive() and not b.is_alive()
    final = [c.seq for c in store.changes_since(mark)]
    assert len(final) == 2
    # Every change up to the newest a reader saw was there to be seen.
    assert seen == [seq for seq in final if seq <= max(seen, default=mark)]
    assert newest == max(seen, default=mark)
