"""Watchlist entries, alerts and webhook deliveries in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect

from service.store import Store
from service.store.store import MIGRATIONS_DIR
from service.store.watchlist import (
    AlertFilter,
    AlertRow,
    AlertWrite,
    AttemptResult,
    EntryWrite,
    WatchlistStore,
)


@pytest.fixture
def watchlist(store: Store) -> WatchlistStore:
    return WatchlistStore(store)


def entry(key_id: int = 1, **overrides: object) -> EntryWrite:
    values: dict[str, object] = {
        "key_id": key_id,
        "platform_key": "twitter",
        "handle_key": "janedoe",
        "profile_id": None,
        "identity": {"platform": "twitter", "handle": "janedoe", "display_name": "Jane Doe"},
        "display_name": "Jane Doe",
        "name_key": "jane doe",
        "handle_norm": "janedoe",
        "bio": None,
        "bio_vector": None,
        "avatar_hashes": None,
        "account_created_at": None,
        "followers_count": None,
        "verified": None,
        "threshold": 0.8,
        "webhook_url": "https://hooks.example.com/a",
        "webhook_secret": "whsec_test",
    }
    values.update(overrides)
    return EntryWrite(**values)  # type: ignore[arg-type]


def alert(entry_id: int, profile_id: int, *, key_id: int = 1, webhook: bool = True) -> AlertWrite:
    return AlertWrite(
        entry_id=entry_id,
        key_id=key_id,
        profile_id=profile_id,
        profile={"platform": "twitter", "handle": f"clone{profile_id}"},
        score=0.97,
        label="likely_clone",
        signals={"avatar": 1.0, "display_name": 1.0, "handle": 0.9, "bio": None},
        reasons=["display name identical"],
        likely_impersonator="candidate",
        webhook_url="https://hooks.example.com/a" if webhook else None,
    )


def payload(row: AlertRow) -> str:
    return f'{{"id": {row.id}}}'


def attempt(*, ok: bool, status: int | None = None) -> AttemptResult:
    return AttemptResult(
        started_at=datetime.now(UTC),
        duration_ms=1.5,
        status_code=status,
        error=None if ok else f"status {status}",
        ok=ok,
    )


def test_entries_are_scoped_by_key_and_erased_with_their_alerts(watchlist: WatchlistStore) -> None:
    mine = watchlist.add_entry(entry(key_id=1))
    theirs = watchlist.add_entry(entry(key_id=2, webhook_url=None, webhook_secret=None))
    assert mine.identity["display_name"] == "Jane Doe"
    assert mine.created_at.tzinfo is not None

    assert [e.id for e in watchlist.entries(key_id=1)] == [mine.id]
    assert [e.id for e in watchlist.entries(key_id=None)] == [mine.id, theirs.id]
    assert watchlist.entry(theirs.id, key_id=1) is None
    assert watchlist.entry(theirs.id, key_id=None) == theirs

    created = watchlist.add_alerts([alert(mine.id, 10)], payload=payload)
    assert not watchlist.delete_entry(mine.id, key_id=2)  # another key's entry: untouched
    assert watchlist.delete_entry(mine.id, key_id=1)
    assert watchlist.entry(mine.id, key_id=None) is None
    assert watchlist.alert(created[0].id, key_id=None) is None
    assert watchlist.deliveries(created[0].id) == []
    assert not watchlist.delete_entry(mine.id, key_id=None)


def test_the_version_changes_whenever_an_entry_is_added_or_erased(
    watchlist: WatchlistStore,
) -> None:
    assert watchlist.version() == (0, 0)
    first = watchlist.add_entry(entry())
    second = watchlist.add_entry(entry())
    seen = {watchlist.version()}
    watchlist.delete_entry(first.id, key_id=None)
    seen.add(watchlist.version())
    watchlist.add_entry(entry())  # same count as before the erase, but a new id
    seen.add(watchlist.version())
    watchlist.delete_entry(second.id, key_id=None)
    seen.add(watchlist.version())
    assert len(seen) == 4


def test_an_entry_and_profile_pair_alerts_once(watchlist: WatchlistStore) -> None:
    with_hook = watchlist.add_entry(entry())
    without = watchlist.add_entry(entry(webhook_url=None, webhook_secret=None))

    first = watchlist.add_alerts(
        [alert(with_hook.id, 10), alert(without.id, 10, webhook=False)], payload=payload
    )
    assert [(a.entry_id, a.profile_id) for a in first] == [(with_hook.id, 10), (without.id, 10)]
    assert first[0].signals["bio"] is None and first[0].reasons == ["display name identical"]

    again = watchlist.add_alerts(
        [alert(with_hook.id, 10), alert(with_hook.id, 11)], payload=payload
    )
    assert [(a.entry_id, a.profile_id) for a in again] == [(with_hook.id, 11)]
    everything = watchlist.alerts(AlertFilter(key_id=None))
    assert len(everything) == 3

    # One delivery per new alert of the entry with a webhook; its body is the payload given.
    (delivery,) = watchlist.deliveries(first[0].id)
    assert delivery.status == "pending" and delivery.attempts == []
    assert delivery.url == "https://hooks.example.com/a"
    assert watchlist.deliveries(first[1].id) == []
    assert len(watchlist.deliveries(again[0].id)) == 1


def test_alert_filters_and_paging(watchlist: WatchlistStore) -> None:
    one = watchlist.add_entry(entry(key_id=1))
    two = watchlist.add_entry(entry(key_id=2))
    rows = watchlist.add_alerts(
        [alert(one.id, p) for p in range(1, 6)] + [alert(two.id, 1, key_id=2)], payload=payload
    )
    mine = [r.id for r in rows if r.key_id == 1]

    def ids(**kwargs: object) -> list[int]:
        query = AlertFilter(**{"key_id": 1, **kwargs})  # type: ignore[arg-type]
        return [a.id for a in watchlist.alerts(query)]

    assert ids() == sorted(mine, reverse=True)  # newest first, only the key's own
    assert ids(entry_id=two.id) == []
    assert len(ids(key_id=None)) == 6

    acked = watchlist.acknowledge(mine[1], key_id=1)
    assert acked is not None and acked.acknowledged_at is not None
    again = watchlist.acknowledge(mine[1], key_id=1)
    assert again is not None and again.acknowledged_at == acked.acknowledged_at
    assert watchlist.acknowledge(mine[1], key_id=2) is None
    assert ids(acknowledged=True) == [mine[1]]
    assert mine[1] not in ids(acknowledged=False) and len(ids(acknowledged=False)) == 4

    assert ids(since=datetime.now(UTC) + timedelta(hours=1)) == []
    assert len(ids(since=datetime.now(UTC) - timedelta(hours=1))) == 5

    first = ids(limit=2)
    second = ids(limit=2, before_id=first[-1])
    third = ids(limit=2, before_id=second[-1])
    assert first + second + third == sorted(mine, reverse=True)
    assert ids(limit=2, offset=2) == second


def test_a_claimed_delivery_is_not_claimed_again_until_its_lease_runs_out(
    watchlist: WatchlistStore,
) -> None:
    e = watchlist.add_entry(entry())
    (a,) = watchlist.add_alerts([alert(e.id, 1)], payload=payload)

    (claimed,) = watchlist.claim_due(limit=10, lease_s=60)
    assert claimed.attempt == 1 and claimed.secret == "whsec_test"
    assert claimed.payload == f'{{"id": {a.id}}}'
    assert watchlist.claim_due(limit=10, lease_s=60) == []


def test_attempts_move_a_delivery_on_and_are_logged(watchlist: WatchlistStore) -> None:
    e = watchlist.add_entry(entry())
    (a,) = watchlist.add_alerts([alert(e.id, 1)], payload=payload)

    # A lease that has run out (a worker that died mid-send) frees the delivery.
    (first,) = watchlist.claim_due(limit=1, lease_s=-1)
    (taken_over,) = watchlist.claim_due(limit=1, lease_s=60)
    assert taken_over.id == first.id
    # The first worker lost its claim: its late result is not written.
    assert watchlist.record_attempt(first, attempt(ok=False, status=500), retry_at=None) is None

    later = datetime.now(UTC) + timedelta(hours=1)
    status = watchlist.record_attempt(taken_over, attempt(ok=False, status=500), retry_at=later)
    assert status == "pending"
    assert watchlist.claim_due(limit=1, lease_s=60) == []  # not due before `retry_at`

    (delivery,) = watchlist.deliveries(a.id)
    assert delivery.status == "pending" and delivery.next_attempt_at == later
    assert [(x.attempt, x.status_code, x.ok) for x in delivery.attempts] == [(1, 500, False)]

    now = datetime.now(UTC) - timedelta(seconds=1)
    status = watchlist.record_attempt(taken_over, attempt(ok=False, status=503), retry_at=now)
    assert status is None  # a claim is used once: recording released it

    (second,) = _claim_when_due(watchlist, a.id, now)
    assert second.attempt == 2
    assert watchlist.record_attempt(second, attempt(ok=True, status=204), retry_at=None) == (
        "delivered"
    )
    (delivery,) = watchlist.deliveries(a.id)
    assert delivery.status == "delivered" and delivery.finished_at is not None
    assert delivery.next_attempt_at is None
    assert [(x.attempt, x.status_code, x.ok) for x in delivery.attempts] == [
        (1, 500, False),
        (2, 204, True),
    ]
    assert watchlist.claim_due(limit=1, lease_s=60) == []


def _claim_when_due(watchlist: WatchlistStore, alert_id: int, when: datetime) -> list:  # type: ignore[type-arg]
    """Make the alert's pending delivery due at `when` (as a retry time in the past would)."""
    from sqlalchemy import update

    from service.store.watchlist import webhook_deliveries

    with watchlist._writing() as conn:
        conn.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.alert_id == alert_id)
            .values(next_attempt_at=when)
        )
    return watchlist.claim_due(limit=1, lease_s=60)


def test_a_final_failure_is_kept_with_its_reason(watchlist: WatchlistStore) -> None:
    e = watchlist.add_entry(entry())
    (a,) = watchlist.add_alerts([alert(e.id, 1)], payload=payload)
    (claimed,) = watchlist.claim_due(limit=1, lease_s=60)
    refused = replace(attempt(ok=False), error="refused: address 10.0.0.1 is private")
    assert watchlist.record_attempt(claimed, refused, retry_at=None) == "failed"
    (delivery,) = watchlist.deliveries(a.id)
    assert delivery.status == "failed" and delivery.next_attempt_at is None
    assert delivery.attempts[0].error == "refused: address 10.0.0.1 is private"
    assert delivery.attempts[0].status_code is None
    assert watchlist.claim_due(limit=1, lease_s=60) == []


def test_concurrent_claimers_never_take_the_same_delivery(database_url: str) -> None:
    """Two stores (as two processes would have) claiming at once split the work exactly."""
    stores = [Store.open(database_url), Store.open(database_url)]
    try:
        first = WatchlistStore(stores[0])
        e = first.add_entry(entry())
        total = 40
        first.add_alerts([alert(e.id, p) for p in range(total)], payload=payload)
        taken: list[list[int]] = [[], [], [], []]
        errors: list[BaseException] = []

        def claim(slot: int) -> None:
            store = WatchlistStore(stores[slot % 2])
            try:
                while batch := store.claim_due(limit=3, lease_s=60):
                    taken[slot].extend(d.id for d in batch)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=claim, args=(slot,)) for slot in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        claimed = [d for part in taken for d in part]
        assert len(claimed) == total and len(set(claimed)) == total
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


def test_the_migration_goes_down_and_up_again(store: Store, alembic_config: Config) -> None:
    tables = {"watchlist_entries", "alerts", "webhook_deliveries", "webhook_attempts"}
    command.downgrade(alembic_config, "0003")
    conn = alembic_config.attributes["connection"]
    assert not tables & set(inspect(conn).get_table_names())
    command.upgrade(alembic_config, "head")
    assert tables <= set(inspect(conn).get_table_names())
