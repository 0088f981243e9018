"""Scan jobs in the store, on SQLite and PostgreSQL: chunks, leases and exactly-once results."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect

from service.store import InputLine, JobStore, ResultLine, Store
from service.store.store import MIGRATIONS_DIR


class ManualClock:
    """A clock that moves only when told: a lease expires because the test says so, never
    because the machine was slow (which could also hide a lease that never expires)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def jobs(store: Store, clock: ManualClock) -> JobStore:
    return JobStore(store, max_attempts=3, clock=clock)


def _job(jobs: JobStore, lines: int, *, chunk_size: int = 4, mode: str = "against_index") -> str:
    job_id = jobs.create_job(owner_key_id=7, mode=mode, options={"top_k": 10})  # type: ignore[arg-type]
    jobs.add_inputs(job_id, [InputLine(n, f"line {n + 1}", f'{{"n": {n}}}') for n in range(lines)])
    jobs.seal_job(job_id, total=lines, chunk_size=chunk_size)
    return job_id


def _results(claim_lines: range, tag: str) -> list[ResultLine]:
    return [ResultLine(n, f'{{"n": {n}, "by": "{tag}"}}') for n in claim_lines]


def test_a_job_is_cut_into_chunks_and_done_when_every_chunk_is(jobs: JobStore) -> None:
    job_id = _job(jobs, 10, chunk_size=4)
    assert jobs.get_job(job_id).state == "queued"  # type: ignore[union-attr]
    seen = []
    while (claim := jobs.claim("w1", lease_s=30)) is not None:
        seen.append((claim.first_line, claim.end_line))
        lines = jobs.inputs(job_id, first=claim.first_line, end=claim.end_line)
        assert [line.line_no for line in lines] == list(range(claim.first_line, claim.end_line))
        assert jobs.complete(
            claim, _results(range(claim.first_line, claim.end_line), "w1"), processed=len(lines),
            errors=0,
        )  # fmt: skip
    assert seen == [(0, 4), (4, 8), (8, 10)]
    job = jobs.get_job(job_id)
    assert job is not None
    assert (job.state, job.processed, job.total, job.result_lines) == ("done", 10, 10, 10)
    assert job.started_at is not None and job.finished_at is not None
    assert [line.line_no for line in jobs.results(job_id, offset=3, limit=100)] == list(
        range(3, 10)
    )


def test_the_receiving_upload_is_invisible_to_workers(jobs: JobStore) -> None:
    job_id = jobs.create_job(owner_key_id=1, mode="against_index", options={})
    jobs.add_inputs(job_id, [InputLine(0, "line 1", "{}")])
    assert jobs.claim("w1", lease_s=30) is None
    jobs.discard_job(job_id)
    assert jobs.get_job(job_id) is None


def test_an_empty_job_is_done_at_once(jobs: JobStore) -> None:
    job_id = _job(jobs, 0)
    assert jobs.get_job(job_id).state == "done"  # type: ignore[union-attr]
    assert jobs.claim("w1", lease_s=30) is None


def test_an_expired_lease_is_taken_over_and_the_late_commit_refused(
    jobs: JobStore, clock: ManualClock
) -> None:
    job_id = _job(jobs, 4, chunk_size=4)
    first = jobs.claim("dead", lease_s=60)
    assert first is not None
    clock.advance(59)
    assert jobs.claim("other", lease_s=30) is None  # still leased
    clock.advance(2)
    second = jobs.claim("other", lease_s=30)
    assert second is not None and (second.job_id, second.chunk_no) == (job_id, 0)
    assert second.attempts == 2
    assert jobs.complete(second, _results(range(4), "other"), processed=4, errors=0)
    # The first holder wakes up and tries to write: refused, nothing doubled.
    assert not jobs.complete(first, _results(range(4), "dead"), processed=4, errors=0)
    assert not jobs.renew(first, lease_s=30)
    assert jobs.result_workers(job_id) == [(n, "other") for n in range(4)]
    assert jobs.get_job(job_id).processed == 4  # type: ignore[union-attr]


def test_a_renewed_lease_is_not_taken(jobs: JobStore, clock: ManualClock) -> None:
    _job(jobs, 4, chunk_size=4)
    claim = jobs.claim("w1", lease_s=60)
    assert claim is not None
    for _ in range(3):  # well past the first lease in all, never past the latest renewal
        clock.advance(40)
        assert jobs.renew(claim, lease_s=60)
    clock.advance(59)
    assert jobs.claim("w2", lease_s=30) is None
    # Once the holder stops renewing, the lease runs out.
    clock.advance(2)
    taken = jobs.claim("w2", lease_s=30)
    assert taken is not None and taken.chunk_no == claim.chunk_no
    assert not jobs.renew(claim, lease_s=60)


def test_a_chunk_abandoned_too_often_fails_its_job(jobs: JobStore, clock: ManualClock) -> None:
    job_id = _job(jobs, 2, chunk_size=2)
    for _ in range(3):  # max_attempts
        assert jobs.claim("crashing", lease_s=60) is not None
        clock.advance(61)
    assert jobs.claim("next", lease_s=30) is None
    job = jobs.get_job(job_id)
    assert job is not None and job.state == "failed"
    assert "abandoned by 3 workers" in (job.error or "")


def test_cancel_stops_claims_and_refuses_results(jobs: JobStore) -> None:
    job_id = _job(jobs, 8, chunk_size=4)
    claim = jobs.claim("w1", lease_s=30)
    assert claim is not None
    cancelled = jobs.cancel(job_id)
    assert cancelled is not None and cancelled.state == "cancelled"
    assert jobs.claim("w2", lease_s=30) is None
    assert not jobs.renew(claim, lease_s=30)
    assert not jobs.complete(claim, _results(range(4), "w1"), processed=4, errors=0)
    assert jobs.results(job_id, offset=0, limit=10) == []
    # Cancelling a finished job leaves it as it is.
    done = _job(jobs, 0)
    assert jobs.cancel(done).state == "done"  # type: ignore[union-attr]


def test_a_clusters_job_is_one_chunk_with_its_own_result_count(jobs: JobStore) -> None:
    job_id = _job(jobs, 10, chunk_size=4, mode="clusters")
    claim = jobs.claim("w1", lease_s=30)
    assert claim is not None and (claim.first_line, claim.end_line) == (0, 10)
    jobs.report_progress(claim, processed=5)
    assert jobs.get_job(job_id).processed == 5  # type: ignore[union-attr]
    groups = [ResultLine(0, '{"group": 0}'), ResultLine(1, '{"group": 1}')]
    assert jobs.complete(claim, groups, processed=10, errors=0, processed_is_total=True)
    job = jobs.get_job(job_id)
    assert job is not None
    assert (job.state, job.processed, job.result_lines) == ("done", 10, 2)


def test_concurrent_workers_do_each_line_exactly_once(store: Store) -> None:
    """Workers in threads, each with its own JobStore, race for the chunks of two jobs."""
    setup = JobStore(store)
    job_ids = [_job(setup, 60, chunk_size=3), _job(setup, 45, chunk_size=5)]
    did: dict[str, int] = {}
    errors: list[BaseException] = []
    # Every worker holds a chunk before any finishes one, so the race is real on any machine.
    all_claimed = threading.Barrier(4, timeout=30)

    def work(name: str) -> None:
        mine = JobStore(store)
        try:
            claim = mine.claim(name, lease_s=30)
            all_claimed.wait()
            while claim is not None:
                lines = range(claim.first_line, claim.end_line)
                if mine.complete(claim, _results(lines, name), processed=len(lines), errors=0):
                    did[name] = did.get(name, 0) + len(lines)
                claim = mine.claim(name, lease_s=30)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(did.values()) == 105
    assert len(did) == 4 and all(did.values())  # the work was shared
    for job_id, total in zip(job_ids, (60, 45), strict=True):
        rows = setup.result_workers(job_id)
        assert [n for n, _ in rows] == list(range(total))
        job = setup.get_job(job_id)
        assert job is not None and (job.state, job.processed) == ("done", total)


@pytest.fixture
def two_stores(database_url: str) -> Iterator[tuple[Store, Store]]:
    """Two stores (two connection pools, as two processes would have) on one database."""
    first = Store.open(database_url)
    second = Store.open(database_url)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def test_two_processes_never_claim_the_same_chunk(two_stores: tuple[Store, Store]) -> None:
    a, b = (JobStore(s) for s in two_stores)
    _job(a, 40, chunk_size=2)
    claimed: list[tuple[str, int]] = []
    lock = threading.Lock()

    def grab(jobs: JobStore, name: str) -> None:
        while (claim := jobs.claim(name, lease_s=30)) is not None:
            with lock:
                claimed.append((claim.job_id, claim.chunk_no))

    threads = [threading.Thread(target=grab, args=(j, n)) for j, n in ((a, "a"), (b, "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(chunk for _, chunk in claimed) == list(range(20))


def test_the_migration_goes_down_and_up_again(store: Store) -> None:
    tables = {"scan_jobs", "scan_inputs", "scan_chunks", "scan_results"}
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0002")
        assert not tables & set(inspect(conn).get_table_names())
        command.upgrade(config, "head")
        assert tables <= set(inspect(conn).get_table_names())
