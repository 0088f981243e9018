"""Idempotency keys in the store, on every backend (SQLite and PostgreSQL): one claim per key
and API key, the kept answer, the lazy purge after a day, and concurrent claims."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect

from service.store import Store
from service.store.idempotency import (
    ABANDONED_AFTER,
    KEEP_KEYS_FOR,
    Claimed,
    Completed,
    IdempotencyStore,
    InProgress,
)
from service.store.store import MIGRATIONS_DIR

HASH_A = "a" * 64
HASH_B = "b" * 64


class Clock:
    """A time the test moves on."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 14, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _answer(keys: IdempotencyStore, claim: Claimed, body: bytes = b'{"id": 7}') -> None:
    keys.complete(
        claim,
        request_hash=HASH_A,
        status_code=201,
        headers={"content-type": "application/json", "location": "/v1/things/7"},
        body=body,
    )


def test_a_key_runs_once_and_then_answers_with_what_its_request_kept(store: Store) -> None:
    keys = IdempotencyStore(store)
    claim = keys.claim(1, "retry-me", HASH_A)
    assert isinstance(claim, Claimed)

    assert keys.claim(1, "retry-me", HASH_A) == InProgress(HASH_A)

    _answer(keys, claim, body=b'{"id": 7, "name": "\xc3\xa9"}')
    assert keys.claim(1, "retry-me", HASH_B) == Completed(
        request_hash=HASH_A,
        status_code=201,
        headers={"content-type": "application/json", "location": "/v1/things/7"},
        body=b'{"id": 7, "name": "\xc3\xa9"}',
    )


def test_keys_belong_to_their_api_key(store: Store) -> None:
    keys = IdempotencyStore(store)
    first = keys.claim(1, "shared", HASH_A)
    assert isinstance(first, Claimed)
    assert isinstance(keys.claim(2, "shared", HASH_A), Claimed)


def test_a_released_key_runs_again(store: Store) -> None:
    keys = IdempotencyStore(store)
    failed = keys.claim(1, "failed-once", HASH_A)
    assert isinstance(failed, Claimed)
    keys.release(failed)
    assert isinstance(keys.claim(1, "failed-once", HASH_A), Claimed)


def test_a_streamed_request_is_claimed_before_its_hash_is_known(store: Store) -> None:
    keys = IdempotencyStore(store)
    claim = keys.claim(1, "upload", None)
    assert isinstance(claim, Claimed)
    assert keys.claim(1, "upload", None) == InProgress(None)
    _answer(keys, claim)
    found = keys.claim(1, "upload", None)
    assert isinstance(found, Completed) and found.request_hash == HASH_A


def test_keys_older_than_a_day_are_purged_at_the_next_claim(store: Store) -> None:
    clock = Clock()
    keys = IdempotencyStore(store, clock=clock)
    for name in ("old-1", "old-2"):
        claim = keys.claim(1, name, HASH_A)
        assert isinstance(claim, Claimed)
        _answer(keys, claim)
    clock.now += KEEP_KEYS_FOR - timedelta(minutes=1)
    assert isinstance(keys.claim(1, "old-1", HASH_B), Completed)  # still within the day

    clock.now += timedelta(minutes=2)
    assert isinstance(keys.claim(2, "another-key's", HASH_A), Claimed)
    assert keys.count() == 1  # both old ones went, whoever claimed
    assert isinstance(keys.claim(1, "old-1", HASH_B), Claimed)


def test_an_abandoned_claim_is_taken_over_and_its_late_answer_is_dropped(store: Store) -> None:
    clock = Clock()
    keys = IdempotencyStore(store, clock=clock)
    abandoned = keys.claim(1, "crashed", HASH_A)
    assert isinstance(abandoned, Claimed)
    clock.now += ABANDONED_AFTER - timedelta(seconds=1)
    assert keys.claim(1, "crashed", HASH_A) == InProgress(HASH_A)

    clock.now += timedelta(seconds=2)
    retry = keys.claim(1, "crashed", HASH_A)
    assert isinstance(retry, Claimed) and retry != abandoned
    _answer(keys, abandoned, body=b"late")  # the first request did finish after all
    keys.release(abandoned)
    assert keys.claim(1, "crashed", HASH_A) == InProgress(HASH_A)
    _answer(keys, retry, body=b"retried")
    found = keys.claim(1, "crashed", HASH_A)
    assert isinstance(found, Completed) and found.body == b"retried"


def test_concurrent_claims_of_one_key_let_exactly_one_through(database_url: str) -> None:
    stores = [Store.open(database_url) for _ in range(6)]
    try:
        start = threading.Barrier(len(stores))
        found: list[object] = []
        errors: list[BaseException] = []

        def claim(store: Store) -> None:
            try:
                start.wait()
                found.append(IdempotencyStore(store).claim(1, "at-once", HASH_A))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=claim, args=(store,)) for store in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert sum(isinstance(f, Claimed) for f in found) == 1
        assert sum(f == InProgress(HASH_A) for f in found) == len(stores) - 1
    finally:
        for store in stores:
            store.close()


@pytest.fixture
def alembic_config(store: Store) -> Iterator[Config]:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        yield config


def test_the_migration_goes_down_and_up_again(alembic_config: Config) -> None:
    conn = alembic_config.attributes["connection"]
    command.downgrade(alembic_config, "0007")
    assert "idempotency_keys" not in inspect(conn).get_table_names()
    command.upgrade(alembic_config, "head")
    assert "idempotency_keys" in inspect(conn).get_table_names()
    unique = inspect(conn).get_unique_constraints("idempotency_keys")
    assert [set(u["column_names"]) for u in unique] == [{"key_id", "idempotency_key"}]
