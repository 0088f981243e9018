"""API keys: the store's key table, key making, the rate limit and the `keys` commands."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from models.errors import (
    AuthenticationError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
)
from service.api.auth import start_authentication
from service.auth.keys import (
    ADMIN_KEY_FILE,
    Authenticator,
    RateLimiter,
    create_key,
    ensure_admin_key,
    hash_key,
)
from service.auth.roles import ROLE_PERMISSIONS, ROLES
from service.cli import app
from service.core.settings import Settings
from service.store import KeyStore, Store


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def keys(store: Store) -> KeyStore:
    return KeyStore(store)


# --- KeyStore, on SQLite and PostgreSQL ------------------------------------------------------


def test_a_created_key_is_found_by_its_hash_only(keys: KeyStore) -> None:
    created = create_key(keys, name="acme", role="platform")
    assert created.key.startswith("cf_") and len(created.key) >= 40
    found = keys.find_by_hash(hash_key(created.key))
    assert found is not None
    assert (found.id, found.name, found.role) == (created.row.id, "acme", "platform")
    assert created.key.startswith(found.prefix) and len(found.prefix) < 12
    assert found.revoked_at is None and found.created_at.tzinfo is not None
    assert keys.find_by_hash(hash_key(created.key + "x")) is None


def test_the_database_holds_no_plaintext_key(store: Store, keys: KeyStore) -> None:
    created = create_key(keys, name="acme", role="platform")
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM api_keys")).all()
    dumped = repr(rows)
    assert created.key not in dumped
    assert created.key[len(created.row.prefix) :] not in dumped
    assert hash_key(created.key) in dumped


def test_each_key_is_different(keys: KeyStore) -> None:
    made = {create_key(keys, name=f"k{i}", role="individual").key for i in range(5)}
    assert len(made) == 5


def test_duplicate_name_is_refused(keys: KeyStore) -> None:
    create_key(keys, name="acme", role="platform")
    with pytest.raises(InvalidInputError, match="already exists"):
        create_key(keys, name="acme", role="individual")
    assert [row.role for row in keys.list()] == ["platform"]


@pytest.mark.parametrize("role", ["root", "Admin", "", "platforms"])
def test_unknown_role_is_refused(keys: KeyStore, role: str) -> None:
    with pytest.raises(InvalidInputError, match="role"):
        create_key(keys, name="x", role=role)
    assert keys.count() == 0


@pytest.mark.parametrize("name", ["", "   ", "a\nb", "x" * 101])
def test_unusable_name_is_refused(keys: KeyStore, name: str) -> None:
    with pytest.raises(InvalidInputError, match="name"):
        create_key(keys, name=name, role="platform")


def test_revoke_keeps_the_row_and_its_first_time(keys: KeyStore) -> None:
    created = create_key(keys, name="acme", role="platform")
    first = keys.revoke("acme")
    assert first.revoked and first.revoked_at is not None
    again = keys.revoke("acme")
    assert again.revoked_at == first.revoked_at
    found = keys.find_by_hash(hash_key(created.key))
    assert found is not None and found.revoked
    with pytest.raises(NotFoundError):
        keys.revoke("nobody")


def test_list_is_oldest_first_and_touch_records_the_last_use(keys: KeyStore) -> None:
    for name in ("b", "a", "c"):
        create_key(keys, name=name, role="investigator")
    listed = keys.list()
    assert [row.name for row in listed] == ["b", "a", "c"]
    assert listed[0].last_used_at is None
    keys.touch(listed[0].id)
    touched = keys.get("b")
    assert touched is not None and touched.last_used_at is not None


def test_first_admin_key_is_written_once_with_mode_0600(keys: KeyStore, tmp_path: Path) -> None:
    path = ensure_admin_key(keys, data_dir=tmp_path)
    assert path == tmp_path / ADMIN_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_text(encoding="ascii").strip()
    row = keys.find_by_hash(hash_key(key))
    assert row is not None and (row.name, row.role) == ("admin", "admin")
    # A second start finds keys in the store: nothing is created or replaced.
    assert ensure_admin_key(keys, data_dir=tmp_path) is None
    assert path.read_text(encoding="ascii").strip() == key
    assert keys.count() == 1
    assert list(tmp_path.iterdir()) == [path]  # no staging file left behind


def test_no_admin_key_on_a_store_that_has_keys(keys: KeyStore, tmp_path: Path) -> None:
    create_key(keys, name="acme", role="platform")
    assert ensure_admin_key(keys, data_dir=tmp_path) is None
    assert not (tmp_path / ADMIN_KEY_FILE).exists()


def test_concurrent_first_starts_make_one_admin_key(database_url: str, tmp_path: Path) -> None:
    # Two processes' stores on one database: the second finds the table no longer empty.
    first, second = Store.open(database_url), Store.open(database_url)
    try:
        assert ensure_admin_key(KeyStore(first), data_dir=tmp_path / "one") is not None
        assert ensure_admin_key(KeyStore(second), data_dir=tmp_path / "two") is None
        assert not (tmp_path / "two" / ADMIN_KEY_FILE).exists()
        # Nor does a later attempt to add a first key.
        assert (
            KeyStore(second).add(
                name="admin", role="admin", key_hash="0" * 64, prefix="cf_", only_if_empty=True
            )
            is None
        )
        assert KeyStore(first).count() == 1
    finally:
        first.close()
        second.close()


def test_start_authentication_creates_the_file_on_first_start_only(
    store: Store, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path)
    start_authentication(store, settings)
    path = tmp_path / ADMIN_KEY_FILE
    key = path.read_text(encoding="ascii")
    before = path.stat()
    start_authentication(store, settings)
    after = path.stat()
    assert path.read_text(encoding="ascii") == key
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


# --- the rate limit and the authenticator (no database needed beyond SQLite) ----------------


def test_token_bucket_admits_the_burst_then_the_rate() -> None:
    clock = _Clock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    assert [limiter.wait_s(1) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.wait_s(1)
    assert wait == pytest.approx(1.0)
    assert limiter.wait_s(2) == 0.0  # another key has its own bucket
    clock.now += 1.0
    assert limiter.wait_s(1) == 0.0
    assert limiter.wait_s(1) > 0
    clock.now += 3600.0  # a long pause refills only up to the burst
    assert [limiter.wait_s(1) for _ in range(4)][-1] > 0


def test_rate_limit_zero_admits_everything() -> None:
    limiter = RateLimiter(per_minute=0, burst=1)
    assert not limiter.enabled
    assert all(limiter.wait_s(1) == 0.0 for _ in range(1000))


@pytest.fixture
def sqlite_keys(tmp_path: Path) -> Iterator[KeyStore]:
    store = Store.open(f"sqlite:///{tmp_path / 'keys.db'}")
    try:
        yield KeyStore(store)
    finally:
        store.close()


def test_authenticator_says_why_a_key_cannot_call(sqlite_keys: KeyStore) -> None:
    clock = _Clock()
    auth = Authenticator(
        sqlite_keys, limiter=RateLimiter(per_minute=60, burst=2, clock=clock), clock=clock
    )
    individual = create_key(sqlite_keys, name="jane", role="individual").key

    with pytest.raises(AuthenticationError, match="required"):
        auth.authenticate(None, "checks")
    with pytest.raises(AuthenticationError, match="not valid"):
        auth.authenticate("cf_not-a-key", "checks")

    caller = auth.authenticate(individual, "checks")
    assert (caller.name, caller.role) == ("jane", "individual")
    with pytest.raises(PermissionDeniedError, match="profiles.write"):
        auth.authenticate(individual, "profiles.write")
    with pytest.raises(RateLimitedError) as limited:
        auth.authenticate(individual, "checks")
    assert limited.value.retry_after == 1

    sqlite_keys.revoke("jane")
    with pytest.raises(AuthenticationError, match="revoked"):
        auth.authenticate(individual, "checks")


def test_last_use_is_written_at_most_once_a_minute(sqlite_keys: KeyStore) -> None:
    clock = _Clock()
    auth = Authenticator(sqlite_keys, limiter=RateLimiter(per_minute=0, burst=1), clock=clock)
    assert auth.touch_due(1)
    assert not auth.touch_due(1)
    assert auth.touch_due(2)
    clock.now += 61.0
    assert auth.touch_due(1)


@pytest.mark.parametrize("role", ROLES)
def test_every_role_can_do_exactly_its_permissions(sqlite_keys: KeyStore, role: str) -> None:
    auth = Authenticator(sqlite_keys, limiter=RateLimiter(per_minute=0, burst=1))
    key = create_key(sqlite_keys, name=role, role=role).key
    every = set().union(*ROLE_PERMISSIONS.values())
    for permission in sorted(every):
        if permission in ROLE_PERMISSIONS[role]:  # type: ignore[index]
            assert auth.authenticate(key, permission).role == role  # type: ignore[arg-type]
        else:
            with pytest.raises(PermissionDeniedError):
                auth.authenticate(key, permission)  # type: ignore[arg-type]


# --- the `clonefinder keys` commands ----------------------------------------------------------


def test_keys_create_prints_the_key_alone_on_the_last_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["keys", "create", "--role", "platform", "--name", "acme", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    assert result.stdout.strip() == key  # alone on stdout: KEY=$(clonefinder keys create ...)
    assert key.startswith("cf_") and " " not in key
    assert result.output.count(key) == 1

    listed = CliRunner().invoke(app, ["keys", "list", "--data-dir", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    assert "acme" in listed.output and "platform" in listed.output
    assert key not in listed.output
    assert key[:9] in listed.output  # the short prefix tells keys apart

    db = (tmp_path / "clonefinder.db").read_bytes()
    wal = tmp_path / "clonefinder.db-wal"
    stored = db + (wal.read_bytes() if wal.exists() else b"")
    assert key.encode() not in stored
    assert hash_key(key).encode() in stored


def test_keys_list_json_and_revoke(tmp_path: Path) -> None:
    runner = CliRunner()
    for name, role in (("acme", "platform"), ("jane", "individual")):
        made = runner.invoke(
            app, ["keys", "create", "--role", role, "--name", name, "--data-dir", str(tmp_path)]
        )
        assert made.exit_code == 0, made.output
    revoked = runner.invoke(app, ["keys", "revoke", "jane", "--data-dir", str(tmp_path)])
    assert revoked.exit_code == 0, revoked.output
    assert "revoked" in revoked.stdout

    listed = runner.invoke(app, ["keys", "list", "--json", "--data-dir", str(tmp_path)])
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["name"], r["role"]) for r in rows] == [("acme", "platform"), ("jane", "individual")]
    assert rows[0]["revoked_at"] is None and rows[1]["revoked_at"] is not None
    assert set(rows[0]) == {"name", "role", "prefix", "created_at", "last_used_at", "revoked_at"}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["create", "--role", "root", "--name", "x"], 2, "unknown role 'root'"),
        (["create", "--role", "platform", "--name", "acme"], 2, "already exists"),
        (["revoke", "nobody"], 4, "no key named 'nobody'"),
    ],
)
def test_keys_errors_are_clear(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    runner = CliRunner()
    first = runner.invoke(
        app, ["keys", "create", "--role", "platform", "--name", "acme", "--data-dir", str(tmp_path)]
    )
    assert first.exit_code == 0
    result = runner.invoke(app, ["keys", *args, "--data-dir", str(tmp_path)])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_keys_commands_do_not_load_the_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import service.matching.engine

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the keys commands must not open the engine")

    monkeypatch.setattr(service.matching.engine.Engine, "open", refuse)
    result = CliRunner().invoke(
        app, ["keys", "create", "--role", "admin", "--name", "ops", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert CliRunner().invoke(app, ["keys", "list", "--data-dir", str(tmp_path)]).exit_code == 0
