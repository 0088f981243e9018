"""The store, one suite run against every backend (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import event, func, inspect, select, text

from models.errors import ConfigurationError
from models.profile import parse_record
from service.core.settings import Settings
from service.store import AvatarBlob, ProfileWrite, Store
from service.store.store import MIGRATIONS_DIR
from service.store.tables import avatars


def _head_revision() -> str:
    """The newest migration in the repository, read from the migration scripts themselves."""
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_current_head()
    assert head is not None
    return head


REPO_ROOT = Path(__file__).resolve().parents[2]


def blob(seed: int) -> AvatarBlob:
    data = bytes([0, 255, seed % 256, 0x89]) * 64  # NULs and high bytes: must come back exact
    return AvatarBlob(sha256=f"{seed:064x}", data=data, mime="image/png", width=8, height=8)


def write(
    platform: str, handle: str, *, avatar: AvatarBlob | None = None, **fields: Any
) -> ProfileWrite:
    record = parse_record({"platform": platform, "handle": handle, **fields}, where="test")
    return ProfileWrite(
        record=record,
        avatar=avatar,
        avatar_hashes=bytes([1, 2, 3, 255]) if avatar else None,
        bio_vector=b"\x00\x00\x80?" * 4 if record.bio else None,
        name_key=(record.display_name or "").casefold(),
        handle_norm=record.handle.casefold(),
    )


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    """Collect the SQL statements the store sends while the block runs."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", record)


def avatar_rows(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(avatars)).scalar_one())


def test_open_migrates_a_fresh_database_and_reopening_changes_nothing(database_url: str) -> None:
    with Store.open(database_url) as store:
        [outcome] = store.upsert([write("twitter", "jane")])
        tables = set(inspect(store.engine).get_table_names())
        assert {"profiles", "avatars", "changes", "alembic_version"} <= tables
    with Store.open(database_url) as store:
        with store.engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
        assert [v[0] for v in versions] == [_head_revision()]
        assert store.count() == 1
        assert store.get("twitter", "jane").id == outcome.id  # type: ignore[union-attr]


def test_concurrent_first_starts_all_succeed(database_url: str) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        opened = list(pool.map(lambda _: Store.open(database_url), range(4)))
    try:
        for store in opened:
            assert store.count() == 0
    finally:
        for store in opened:
            store.close()


def test_upsert_creates_then_replaces_by_case_insensitive_identity(store: Store) -> None:
    [first] = store.upsert(
        [write("Twitter", "JaneDoe", display_name="Jane", bio="old bio", followers_count=10)]
    )
    assert first.created
    before = store.get("twitter", "janedoe")
    assert before is not None

    [second] = store.upsert([write("twitter", "janedoe", display_name="Jane D.", bio="new bio")])

    assert second.id == first.id and not second.created
    assert store.count() == 1
    after = store.get("TWITTER", "JANEDOE")
    assert after is not None
    assert (after.handle, after.display_name, after.bio) == ("janedoe", "Jane D.", "new bio")
    assert after.followers_count is None  # a full replace: absent fields are cleared
    assert after.ingested_at == before.ingested_at
    assert after.updated_at >= before.updated_at


def test_duplicates_in_one_batch_last_wins_with_one_id(store: Store) -> None:
    outcomes = store.upsert(
        [
            write("twitter", "jane", bio="first"),
            write("twitter", "bob"),
            write("twitter", "JANE", bio="second"),
        ]
    )
    assert [o.created for o in outcomes] == [True, True, False]
    assert outcomes[0].id == outcomes[2].id != outcomes[1].id
    assert store.count() == 2
    assert store.get("twitter", "jane").bio == "second"  # type: ignore[union-attr]


def test_every_field_and_nested_unicode_attributes_round_trip(store: Store) -> None:
    attributes = {
        "langue": "français",
        "tags": ["ж", "東京", "🙂"],
        "nested": {"a": [1, 2.5, None]},
    }
    record = {
        "display_name": "Jane Doe",
        "bio": "Ünïcode bio",
        "id": "12345",
        "created_at": "2020-05-01T12:00:00+02:00",
        "followers_count": 1_000_000,
        "following_count": 3,
        "posts_count": 0,
        "verified": True,
        "location": "Zürich",
        "url": "https://example.org",
        "profile_url": "https://twitter.com/jane",
        "avatar_url": "https://example.org/a.png",
        **attributes,
    }
    [outcome] = store.upsert([write("twitter", "jane", avatar=blob(1), **record)])

    [row] = store.get_many([outcome.id])
    assert row.attributes == attributes
    assert row.created_at == datetime(2020, 5, 1, 10, 0, tzinfo=UTC)
    assert row.ingested_at.utcoffset() == timedelta(0)  # aware, in UTC
    assert row.avatar_hashes == bytes([1, 2, 3, 255])
    assert row.bio_vector == b"\x00\x00\x80?" * 4
    assert (row.name_key, row.handle_norm) == ("jane doe", "jane")
    stored = row.to_stored()
    assert stored.id == "12345"
    assert stored.avatar_sha256 == blob(1).sha256
    for field in ("display_name", "bio", "followers_count", "following_count", "posts_count",
                  "verified", "location", "url", "profile_url", "avatar_url"):  # fmt: skip
        assert getattr(stored, field) == record[field], field


def test_avatars_are_content_addressed_and_returned_exactly(store: Store) -> None:
    shared = blob(7)
    store.upsert(
        [write("twitter", "jane", avatar=shared), write("instagram", "jane", avatar=shared)]
    )

    assert avatar_rows(store) == 1
    assert store.avatar(shared.sha256) == shared
    assert store.avatar("f" * 64) is None


def test_delete_erases_the_profile_and_logs_it(store: Store) -> None:
    [kept, gone] = store.upsert([write("twitter", "keep"), write("twitter", "gone")])
    seq = store.last_change_seq()

    assert store.delete("Twitter", "GONE") == gone.id

    assert store.get("twitter", "gone") is None
    assert store.get_many([gone.id, kept.id])[0].id == kept.id
    assert [(c.profile_id, c.op) for c in store.changes_since(seq)] == [(gone.id, "delete")]
    assert store.delete("twitter", "gone") is None
    assert store.last_change_seq() == seq + 1  # deleting nothing logs nothing


def test_deleting_keeps_an_avatar_still_in_use_and_erases_an_unused_one(store: Store) -> None:
    shared = blob(3)
    store.upsert([write("twitter", "a", avatar=shared), write("twitter", "b", avatar=shared)])

    store.delete("twitter", "a")
    assert store.avatar(shared.sha256) == shared
    store.delete("twitter", "b")
    assert store.avatar(shared.sha256) is None


def test_replacing_an_avatar_erases_the_old_one_only_when_unused(store: Store) -> None:
    old, shared, new = blob(1), blob(2), blob(3)
    store.upsert([write("twitter", "a", avatar=old), write("twitter", "b", avatar=shared)])
    store.upsert([write("twitter", "c", avatar=shared)])

    store.upsert([write("twitter", "a", avatar=new), write("twitter", "b", avatar=new)])

    assert store.avatar(old.sha256) is None
    assert store.avatar(shared.sha256) == shared  # "c" still shows it
    assert store.get("twitter", "a").avatar_sha256 == new.sha256  # type: ignore[union-attr]


def test_get_many_loads_in_one_query_and_skips_missing_ids(store: Store) -> None:
    ids = [o.id for o in store.upsert([write("twitter", f"user{i}") for i in range(50)])]
    wanted = ids[::-1][:20] + [10_000_000]

    with statements(store) as seen:
        rows = store.get_many(wanted)

    assert sorted(r.id for r in rows) == sorted(ids[::-1][:20])
    assert len([s for s in seen if "FROM profiles" in s]) == 1
    assert store.get_many([]) == []


def test_get_many_handles_more_ids_than_one_statement_may_bind(store: Store) -> None:
    ids = [o.id for o in store.upsert([write("twitter", f"user{i}") for i in range(3)])]
    rows = store.get_many(list(range(1, 70_001)))  # past both SQLite's and PostgreSQL's limits
    assert sorted(r.id for r in rows) == sorted(ids)


def test_changes_since_replays_in_order(store: Store) -> None:
    assert store.last_change_seq() == 0
    assert store.changes_since(0) == []
    [a, b] = store.upsert([write("twitter", "a"), write("twitter", "b")])
    store.upsert([write("twitter", "a", bio="edited")])
    store.delete("twitter", "b")

    log = store.changes_since(0)
    assert [(c.profile_id, c.op) for c in log] == [
        (a.id, "upsert"),
        (b.id, "upsert"),
        (a.id, "upsert"),
        (b.id, "delete"),
    ]
    assert [c.seq for c in log] == sorted({c.seq for c in log})
    assert log[-1].seq == store.last_change_seq()
    assert store.changes_since(log[1].seq, limit=1) == [log[2]]


def test_ids_are_never_reused_after_a_delete(store: Store) -> None:
    [a] = store.upsert([write("twitter", "a")])
    store.delete("twitter", "a")
    [b] = store.upsert([write("twitter", "b")])
    assert b.id > a.id


def test_iter_index_rows_yields_every_profile_by_id(store: Store) -> None:
    outcomes = store.upsert([write("twitter", f"user{i}", bio=f"bio {i}") for i in range(12)])
    store.delete("twitter", "user4")

    batches = list(store.iter_index_rows(batch_size=5))

    assert [len(b) for b in batches] == [5, 5, 1]
    ids = [row.id for batch in batches for row in batch]
    assert ids == sorted(o.id for o in outcomes if o.id != outcomes[4].id)
    assert all(row.bio_vector is not None for batch in batches for row in batch)


def test_a_killed_process_loses_nothing_acknowledged(database_url: str) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from models.profile import parse_record
        from service.store import ProfileWrite, Store
        store = Store.open({database_url!r})
        for start in range(0, 1000, 250):
            store.upsert([
                ProfileWrite(
                    record=parse_record({{"platform": "twitter", "handle": f"u{{i}}"}}, where="x"),
                    avatar=None, avatar_hashes=None, bio_vector=None, name_key="", handle_norm="",
                )
                for i in range(start, start + 250)
            ])
        print("acknowledged", flush=True)
        time.sleep(60)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "acknowledged"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    with Store.open(database_url) as store:
        assert store.count() == 1000
        assert store.last_change_seq() == 1000


def test_the_default_settings_url_opens_and_creates_its_folder(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "nested" / "data")
    with Store.open(settings.resolved_database_url) as store:
        assert store.count() == 0
    assert (tmp_path / "nested" / "data" / "clonefinder.db").is_file()


@pytest.mark.parametrize(
    "url",
    [
        "mysql://localhost/db",
        "not a url",
        "postgresql+psycopg://postgres@127.0.0.1:1/nothing?connect_timeout=2",
    ],
)
def test_an_unusable_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        Store.open(url)
