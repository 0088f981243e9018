"""The store: the source of truth for profiles, avatar bytes and the change log.

Indexes are derived from it: every write appends to `changes` in the same transaction, so an
index that remembers the last `seq` it applied can replay the rest after a crash. That needs
seqs to become visible in their own order (see `Store._log_changes`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from psycopg.types.json import Jsonb
from sqlalchemy import (
    Connection,
    Engine,
    Text,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Row, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from models.errors import ConfigurationError
from models.profile import ProfileRecord, StoredProfile, identity_key
from service.store.tables import avatars, changes, profiles

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# pg_advisory_xact_lock key that serialises concurrent first starts on one database.
_MIGRATION_LOCK_KEY = 0x636C6F6E
# pg_advisory_xact_lock key that orders appends to the change log (see Store._log_changes).
_CHANGE_LOG_LOCK_KEY = 0x636C6367
# Execution option that makes an SQLite transaction take the write lock at BEGIN.
_WRITE_OPTION = "clonefinder_write"

T = TypeVar("T")


@dataclass(frozen=True)
class AvatarBlob:
    """An avatar's exact bytes, addressed by their SHA-256 (hex)."""

    sha256: str
    data: bytes
    mime: str
    width: int
    height: int


@dataclass
class ProfileWrite:
    """One validated record plus the features derived from it, ready to store."""

    record: ProfileRecord
    avatar: AvatarBlob | None
    avatar_hashes: bytes | None
    bio_vector: bytes | None
    name_key: str
    handle_norm: str


@dataclass(frozen=True)
class UpsertOutcome:
    id: int
    created: bool


@dataclass(frozen=True)
class ProfileRow:
    """Everything stored for one profile, without image bytes."""

    id: int
    platform: str
    handle: str
    display_name: str | None
    bio: str | None
    external_id: str | None
    created_at: datetime | None
    followers_count: int | None
    following_count: int | None
    posts_count: int | None
    verified: bool | None
    location: str | None
    url: str | None
    profile_url: str | None
    avatar_url: str | None
    avatar_sha256: str | None
    attributes: dict[str, Any]
    avatar_hashes: bytes | None
    bio_vector: bytes | None
    name_key: str
    handle_norm: str
    ingested_at: datetime
    updated_at: datetime

    def to_stored(self) -> StoredProfile:
        """The profile as the contract returns it (the platform's own id under `id`)."""
        return StoredProfile(
            platform=self.platform,
            handle=self.handle,
            display_name=self.display_name,
            bio=self.bio,
            id=self.external_id,
            created_at=self.created_at,
            followers_count=self.followers_count,
            following_count=self.following_count,
            posts_count=self.posts_count,
            verified=self.verified,
            location=self.location,
            url=self.url,
            profile_url=self.profile_url,
            avatar_url=self.avatar_url,
            avatar_sha256=self.avatar_sha256,
            attributes=dict(self.attributes),
            ingested_at=self.ingested_at,
            updated_at=self.updated_at,
        )


@dataclass(frozen=True, slots=True)
class ComparableRow:
    """What screening a candidate needs of a stored profile: its folded identity and the keys,
    hashes and vector its four similarities are measured on. A batch of checks reads tens of
    thousands of these; only the few candidates that pass the screen are then read whole."""

    id: int
    platform_key: str  # the identity folded (models.profile.identity_key), as stored
    handle_key: str
    name_key: str
    handle_norm: str
    avatar_hashes: bytes | None
    bio_vector: bytes | None

    @property
    def key(self) -> tuple[str, str]:
        return (self.platform_key, self.handle_key)


@dataclass(frozen=True)
class Change:
    seq: int
    profile_id: int
    op: str


_ROW_COLUMNS = [profiles.c[f.name] for f in fields(ProfileRow)]
_COMPARABLE_NAMES = ", ".join(f.name for f in fields(ComparableRow))
_BINARY_POSITIONS = [
    i for i, f in enumerate(fields(ProfileRow)) if f.name in ("avatar_hashes", "bio_vector")
]
_ATTRIBUTES_POSITION = [f.name for f in fields(ProfileRow)].index("attributes")


def _row(row: Row[Any]) -> ProfileRow:
    """A ProfileRow from a row of `_ROW_COLUMNS` (positional: this runs for every candidate)."""
    values = list(row)
    for i in _BINARY_POSITIONS:
        if values[i] is not None and type(values[i]) is not bytes:
            values[i] = bytes(values[i])  # some drivers hand back memoryview
    if values[_ATTRIBUTES_POSITION] is None:
        values[_ATTRIBUTES_POSITION] = {}
    return ProfileRow(*values)


# -- PostgreSQL bulk upsert (see Store._upsert_postgres) -------------------------------------

# The profile columns a write sets, in the order of the staging table and its COPY rows.
_PG_COLUMNS = [c.name for c in profiles.c if c.name != "id"]
# Kept from the stored row when a profile is replaced.
_KEPT_ON_REPLACE = {"id", "platform_key", "handle_key", "ingested_at"}
# psycopg's names for the column types (binary COPY needs them), from the table itself.
_PG_TYPE_NAMES = {
    "INTEGER": "int4",
    "BIGINT": "int8",
    "TEXT": "text",
    "VARCHAR": "text",
    "BOOLEAN": "bool",
    "BYTEA": "bytea",
    "JSONB": "jsonb",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
}
_PG_STAGING_TYPES = ["int4"] + [
    _PG_TYPE_NAMES[profiles.c[name].type.compile(dialect=postgresql.dialect()).split("(")[0]]
    for name in _PG_COLUMNS
]
_PG_STAGING = "clonefinder_profiles_in"
# One per connection, emptied at every commit (and gone with a rollback's rows), so a batch
# never sees another's rows; IF NOT EXISTS makes it a no-op on a connection that has it.
_PG_STAGING_TABLE = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_PG_STAGING} ("
    + ", ".join(
        f"{name} {kind}"
        for name, kind in zip(["ord", *_PG_COLUMNS], _PG_STAGING_TYPES, strict=True)
    )
    + ") ON COMMIT DELETE ROWS"
)
_PG_COPY = f"COPY {_PG_STAGING} (ord, {', '.join(_PG_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
# Stored profiles are replaced in place, by id: an INSERT ... ON CONFLICT draws an id from the
# sequence for every row it tries, so re-ingesting a million stored profiles would use up a
# million ids (of 2^31) for nothing. The ids as an array keep the plan on the primary key
# whatever the planner guesses of the (never analysed) staging table.
_PG_REPLACE = (
    "UPDATE profiles AS p SET "
    + ", ".join(f"{c} = s.{c}" for c in _PG_COLUMNS if c not in _KEPT_ON_REPLACE)
    + f" FROM {_PG_STAGING} AS s "
    "WHERE p.id = ANY(%(ids)s::int4[]) AND s.ord = ANY(%(ords)s::int4[]) "
    "AND p.platform_key = s.platform_key AND p.handle_key = s.handle_key "
    "RETURNING p.id, p.platform_key, p.handle_key"
)
# The others are inserted in batch order, so new ids follow the batch as on SQLite; ON
# CONFLICT covers a profile another process inserted since the lookup.
_PG_INSERT = (
    f"INSERT INTO profiles ({', '.join(_PG_COLUMNS)}) "
    f"SELECT {', '.join(_PG_COLUMNS)} FROM {_PG_STAGING} "
    "WHERE ord = ANY(%(ords)s::int4[]) ORDER BY ord "
    "ON CONFLICT (platform_key, handle_key) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _PG_COLUMNS if c not in _KEPT_ON_REPLACE)
    + " RETURNING id, platform_key, handle_key"
)
# A join on the keys as two arrays: the unique index serves each key. (Two IN lists left the
# planner to filter a whole platform's rows against every handle on a fresh table.)
_PG_EXISTING = (
    "SELECT p.id, p.platform_key, p.handle_key, p.avatar_sha256 "
    "FROM unnest(%(platform_keys)s::text[], %(handle_keys)s::text[]) "
    "AS k(platform_key, handle_key) "
    "JOIN profiles AS p ON p.platform_key = k.platform_key AND p.handle_key = k.handle_key"
)
_PG_AVATARS = (
    "INSERT INTO avatars (sha256, data, mime, width, height, byte_size, created_at) "
    "SELECT a.sha256, a.data, a.mime, a.width, a.height, a.byte_size, %(now)s "
    "FROM unnest(%(sha256)s::text[], %(data)s::bytea[], %(mime)s::text[], %(width)s::int4[], "
    "%(height)s::int4[], %(byte_size)s::int4[]) AS a(sha256, data, mime, width, height, byte_size) "
    "ON CONFLICT (sha256) DO NOTHING"
)
# WITH ORDINALITY and ORDER BY: the change rows take their seqs in the batch's order.
_PG_CHANGES = (
    "INSERT INTO changes (profile_id, op, at) "
    "SELECT c.profile_id, %(op)s, %(now)s "
    "FROM unnest(%(ids)s::int4[]) WITH ORDINALITY AS c(profile_id, n) ORDER BY c.n"
)


_PG_BY_IDENTITY = (
    text(
        f"SELECT {', '.join(f'p.{c.name}' for c in _ROW_COLUMNS)} "
        "FROM unnest(CAST(:platform_keys AS text[]), CAST(:handle_keys AS text[])) "
        "AS k(platform_key, handle_key) "
        "JOIN profiles AS p ON p.platform_key = k.platform_key AND p.handle_key = k.handle_key"
    )
    .bindparams(
        bindparam("platform_keys", type_=postgresql.ARRAY(Text)),
        bindparam("handle_keys", type_=postgresql.ARRAY(Text)),
    )
    .columns(*_ROW_COLUMNS)
)


def _aware(value: datetime | None) -> datetime | None:
    """A timestamp as the table stores it: naive values are UTC (as UTCDateTime reads them)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _staged_row(position: int, write: ProfileWrite, now: datetime) -> list[Any]:
    """One COPY row of the staging table: the batch position, then `_PG_COLUMNS`."""
    values = _profile_values(write, now)
    values["attributes"] = Jsonb(values["attributes"], dumps=_json_dumps)
    values["created_at"] = _aware(values["created_at"])
    return [position, *(values[name] for name in _PG_COLUMNS)]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _comparable(values: Sequence[Any]) -> ComparableRow:
    """A ComparableRow from a driver's raw row."""
    pid, platform_key, handle_key, name_key, handle_norm, avatar_hashes, bio_vector = values
    return ComparableRow(
        pid,
        platform_key,
        handle_key,
        name_key,
        handle_norm,
        avatar_hashes
        if avatar_hashes is None or type(avatar_hashes) is bytes
        else bytes(avatar_hashes),
        bio_vector if bio_vector is None or type(bio_vector) is bytes else bytes(bio_vector),
    )


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _json_dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class Store:
    """Profiles, avatars and the change log in SQLite (default) or PostgreSQL.

    Thread-safe: each call checks a connection out of the engine's pool. Build it with
    `Store.open(url)`, which creates and migrates the schema.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._write_engine = engine.execution_options(**{_WRITE_OPTION: True})
        self._dialect = engine.dialect.name
        # Bound-parameter ceilings: SQLite >= 3.32 allows 32,766 (older builds 999),
        # PostgreSQL's protocol 65,535.
        if self._dialect == "sqlite" and sqlite3.sqlite_version_info < (3, 32):
            self._in_chunk = 900
        else:
            self._in_chunk = 30_000
        dialect_insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        ins = dialect_insert(profiles)
        self._upsert_stmt = ins.on_conflict_do_update(
            index_elements=[profiles.c.platform_key, profiles.c.handle_key],
            set_={
                c.name: ins.excluded[c.name] for c in profiles.c if c.name not in _KEPT_ON_REPLACE
            },
        ).returning(profiles.c.id, profiles.c.platform_key, profiles.c.handle_key)
        self._avatar_stmt = dialect_insert(avatars).on_conflict_do_nothing(
            index_elements=[avatars.c.sha256]
        )

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect to `url`, create the SQLite folder if needed and migrate to the newest schema.

        Raises ConfigurationError when the URL names an unsupported backend or the database
        cannot be reached or migrated.
        """
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise ConfigurationError(f"not a database URL: {url!r}") from exc
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")  # the driver we ship
        shown = parsed.render_as_string(hide_password=True)
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            engine = _sqlite_engine(parsed)
        elif backend == "postgresql":
            engine = create_engine(parsed, pool_pre_ping=True, json_serializer=_json_dumps)
        else:
            raise ConfigurationError(
                f"unsupported database {shown!r}: use sqlite:///PATH or postgresql+psycopg://..."
            )
        try:
            _migrate(engine)
        except (SQLAlchemyError, CommandError, OSError) as exc:
            engine.dispose()
            raise ConfigurationError(f"cannot open the store at {shown}: {exc}") from exc
        logger.info("store open at %s", shown)
        return cls(engine)

    @property
    def engine(self) -> Engine:
        """The underlying engine, for other service tables that live in the same database."""
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self._write_engine.begin() as conn:
            yield conn

    # -- writes ---------------------------------------------------------------------------

    def upsert(self, writes: Sequence[ProfileWrite]) -> list[UpsertOutcome]:
        """Insert or fully replace each profile, in one transaction for the whole batch.

        Identity is (platform, handle), case-insensitive; a replaced profile keeps its id and
        `ingested_at`. Within a batch the last write of an identity wins and every write of it
        gets the same id (only the first may be `created`). Avatars are stored if absent; one
        that no profile uses any more after the replace is erased. Returns one outcome per
        write, in order.
        """
        if not writes:
            return []
        now = _utcnow()
        last: dict[tuple[str, str], int] = {}
        for index, write in enumerate(writes):
            last[write.record.key] = index
        keys = sorted(last, key=last.__getitem__)
        unique = [writes[last[key]] for key in keys]
        blobs = {w.avatar.sha256: w.avatar for w in unique if w.avatar is not None}

        with self._writing() as conn:
            if self._dialect == "postgresql":
                before, ids = self._upsert_postgres(conn, unique, keys, blobs, now)
            else:
                before, ids = self._upsert_rows(conn, unique, keys, blobs, now)
            replaced = {sha for _, sha in before.values() if sha is not None} - set(blobs)
            if replaced:
                self._drop_unused_avatars(conn, replaced)
            self._log_changes(conn, [ids[key] for key in keys], "upsert", now)

        outcomes = []
        seen: set[tuple[str, str]] = set()
        for write in writes:
            key = write.record.key
            outcomes.append(
                UpsertOutcome(id=ids[key], created=key not in before and key not in seen)
            )
            seen.add(key)
        return outcomes

    def _upsert_rows(
        self,
        conn: Connection,
        unique: Sequence[ProfileWrite],
        keys: Sequence[tuple[str, str]],
        blobs: dict[str, AvatarBlob],
        now: datetime,
    ) -> tuple[dict[tuple[str, str], tuple[int, str | None]], dict[tuple[str, str], int]]:
        """The batch as multi-row statements (SQLite): what was stored before, and the ids."""
        before = self._existing(conn, keys)
        if blobs:
            conn.execute(
                self._avatar_stmt,
                [
                    {
                        "sha256": blob.sha256,
                        "data": blob.data,
                        "mime": blob.mime,
                        "width": blob.width,
                        "height": blob.height,
                        "byte_size": len(blob.data),
                        "created_at": now,
                    }
                    for blob in blobs.values()
                ],
            )
        result = conn.execute(self._upsert_stmt, [_profile_values(w, now) for w in unique])
        ids = {(r.platform_key, r.handle_key): r.id for r in result}
        return before, ids

    def _upsert_postgres(
        self,
        conn: Connection,
        unique: Sequence[ProfileWrite],
        keys: Sequence[tuple[str, str]],
        blobs: dict[str, AvatarBlob],
        now: datetime,
    ) -> tuple[dict[tuple[str, str], tuple[int, str | None]], dict[tuple[str, str], int]]:
        """The batch on PostgreSQL, in a handful of statements whatever its size: the stored
        rows looked up by joining the keys as arrays, avatars inserted from arrays, the
        profiles copied (binary COPY) into a temporary table, the stored ones replaced from it
        and the others inserted in batch order (their change rows follow, see `_log_changes`).

        A multi-row VALUES upsert measured four to five times slower: every one of its 12,000
        parameters is planned and converted one by one, where COPY streams rows.
        """
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            platform_keys = [key[0] for key in keys]
            handle_keys = [key[1] for key in keys]
            cursor.execute(
                _PG_EXISTING, {"platform_keys": platform_keys, "handle_keys": handle_keys}
            )
            before = {(p, h): (pid, sha) for pid, p, h, sha in cursor.fetchall()}
            if blobs:
                cursor.execute(
                    _PG_AVATARS,
                    {
                        "sha256": [b.sha256 for b in blobs.values()],
                        "data": [b.data for b in blobs.values()],
                        "mime": [b.mime for b in blobs.values()],
                        "width": [b.width for b in blobs.values()],
                        "height": [b.height for b in blobs.values()],
                        "byte_size": [len(b.data) for b in blobs.values()],
                        "now": now,
                    },
                )
            cursor.execute(_PG_STAGING_TABLE)
            with cursor.copy(_PG_COPY) as copy:
                copy.set_types(_PG_STAGING_TYPES)
                for position, write in enumerate(unique):
                    copy.write_row(_staged_row(position, write, now))
            ids: dict[tuple[str, str], int] = {}
            if before:
                stored = [position for position, key in enumerate(keys) if key in before]
                cursor.execute(
                    _PG_REPLACE,
                    {"ids": [before[keys[i]][0] for i in stored], "ords": stored},
                )
                ids.update(((p, h), pid) for pid, p, h in cursor.fetchall())
            # New profiles, and any stored one another process erased since the lookup.
            missing = [position for position, key in enumerate(keys) if key not in ids]
            if missing:
                cursor.execute(_PG_INSERT, {"ords": missing})
                ids.update(((p, h), pid) for pid, p, h in cursor.fetchall())
        finally:
            cursor.close()
        return before, ids

    def delete(self, platform: str, handle: str) -> int | None:
        """Erase one profile and log it; its avatar goes too unless another profile uses it.

        Returns the erased id, or None when no such profile exists (nothing is logged).
        """
        platform_key, handle_key = identity_key(platform, handle)
        with self._writing() as conn:
            row = conn.execute(
                delete(profiles)
                .where(profiles.c.platform_key == platform_key)
                .where(profiles.c.handle_key == handle_key)
                .returning(profiles.c.id, profiles.c.avatar_sha256)
            ).first()
            if row is None:
                return None
            if row.avatar_sha256 is not None:
                self._drop_unused_avatars(conn, {row.avatar_sha256})
            self._log_changes(conn, [int(row.id)], "delete", _utcnow())
        return int(row.id)

    def _log_changes(self, conn: Connection, ids: Sequence[int], op: str, now: datetime) -> None:
        """Append one change per id, in order: the last statement of every write transaction.

        Readers replay the log by seq and remember the last one they applied, so a seq must
        never become visible before a lower one. SQLite has one writer at a time. PostgreSQL
        draws seqs at insert time but commits transactions in any order (one that took seq 10
        may commit after one that took 11, which a reader would apply and move past 10), so
        appends are serialised by a transaction-scoped advisory lock taken just before them and
        held to the commit: whoever draws the next seq does so after the last holder's commit
        became visible. Only the append and the commit run under it, and the append waits on
        no other lock, so writers cannot deadlock on it.
        """
        if self._dialect != "postgresql":
            conn.execute(insert(changes), [{"profile_id": i, "op": op, "at": now} for i in ids])
            return
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHANGE_LOG_LOCK_KEY})
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(_PG_CHANGES, {"ids": list(ids), "op": op, "now": now})
        finally:
            cursor.close()

    def _existing(
        self, conn: Connection, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[int, str | None]]:
        """Id and avatar of each key already stored, in one query per chunk of keys."""
        wanted = set(keys)
        found: dict[tuple[str, str], tuple[int, str | None]] = {}
        for chunk in _chunks(keys, self._in_chunk // 2):
            # Both columns filtered so the unique index serves the lookup; the cross product
            # of the two IN lists is filtered exactly below.
            stmt = select(
                profiles.c.id, profiles.c.platform_key, profiles.c.handle_key,
                profiles.c.avatar_sha256,
            ).where(
                profiles.c.platform_key.in_({p for p, _ in chunk}),
                profiles.c.handle_key.in_({h for _, h in chunk}),
            )  # fmt: skip
            for row in conn.execute(stmt):
                key = (row.platform_key, row.handle_key)
                if key in wanted:
                    found[key] = (row.id, row.avatar_sha256)
        return found

    def _drop_unused_avatars(self, conn: Connection, shas: Iterable[str]) -> None:
        in_use = select(profiles.c.id).where(profiles.c.avatar_sha256 == avatars.c.sha256).exists()
        conn.execute(delete(avatars).where(avatars.c.sha256.in_(sorted(shas)), ~in_use))

    # -- reads ----------------------------------------------------------------------------

    def get(self, platform: str, handle: str) -> ProfileRow | None:
        """The stored profile of this identity (compared case-insensitively), or None."""
        platform_key, handle_key = identity_key(platform, handle)
        stmt = select(*_ROW_COLUMNS).where(
            profiles.c.platform_key == platform_key, profiles.c.handle_key == handle_key
        )
        with self._engine.connect() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else _row(row)

    def get_many(self, ids: Sequence[int]) -> list[ProfileRow]:
        """The profiles with these ids, in one query (per 30,000 ids); missing ids are skipped."""
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return []
        rows: list[ProfileRow] = []
        with self._engine.connect() as conn:
            for chunk in _chunks(wanted, self._in_chunk):
                stmt = select(*_ROW_COLUMNS).where(profiles.c.id.in_(chunk))
                rows.extend(_row(r) for r in conn.execute(stmt))
        return rows

    def get_comparable(self, ids: Sequence[int]) -> list[ComparableRow]:
        """`get_many`, with only the columns comparison reads (see ComparableRow).

        Read through the driver's own cursor: a batch of checks reads tens of thousands of
        candidate rows, and SQLAlchemy's per-row result processing cost five times the read
        itself.
        """
        wanted = sorted({int(i) for i in ids})
        rows: list[ComparableRow] = []
        if not wanted:
            return rows
        sqlite_rows = self._dialect == "sqlite"
        with self._engine.connect() as conn:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                for chunk in _chunks(wanted, self._in_chunk):
                    if sqlite_rows:
                        marks = ",".join("?" * len(chunk))
                        sql = f"SELECT {_COMPARABLE_NAMES} FROM profiles WHERE id IN ({marks})"
                        cursor.execute(sql, chunk)
                    else:
                        sql = f"SELECT {_COMPARABLE_NAMES} FROM profiles WHERE id = ANY(%s)"
                        cursor.execute(sql, (list(chunk),))
                    if sqlite_rows:  # blobs come as bytes already
                        rows.extend(ComparableRow(*values) for values in cursor.fetchall())
                    else:
                        rows.extend(_comparable(values) for values in cursor.fetchall())
            finally:
                cursor.close()
        return rows

    def get_by_identity(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], ProfileRow]:
        """The stored profiles of these identities, by folded (platform, handle), in one query
        per chunk of keys (a batch of checks looks its stored queries up at once)."""
        wanted = {identity_key(platform, handle) for platform, handle in keys}
        ordered = sorted(wanted)
        found: dict[tuple[str, str], ProfileRow] = {}
        if self._dialect == "postgresql" and ordered:
            # The keys as two arrays joined on the unique index, whatever the statistics say
            # (see _PG_EXISTING).
            by_keys = _PG_BY_IDENTITY.bindparams(
                platform_keys=[p for p, _ in ordered], handle_keys=[h for _, h in ordered]
            )
            with self._engine.connect() as conn:
                for r in conn.execute(by_keys):
                    row = _row(r)
                    found[identity_key(row.platform, row.handle)] = row
            return found
        with self._engine.connect() as conn:
            for chunk in _chunks(ordered, self._in_chunk // 2):
                # Both columns filtered so the unique index serves the lookup; the cross product
                # of the two IN lists is filtered exactly below.
                stmt = select(*_ROW_COLUMNS).where(
                    profiles.c.platform_key.in_({p for p, _ in chunk}),
                    profiles.c.handle_key.in_({h for _, h in chunk}),
                )
                for r in conn.execute(stmt):
                    row = _row(r)
                    key = identity_key(row.platform, row.handle)
                    if key in wanted:
                        found[key] = row
        return found

    def avatar(self, sha256: str) -> AvatarBlob | None:
        """The exact bytes stored under this digest, or None."""
        stmt = select(
            avatars.c.sha256, avatars.c.data, avatars.c.mime, avatars.c.width, avatars.c.height
        ).where(avatars.c.sha256 == sha256)
        with self._engine.connect() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            return None
        return AvatarBlob(
            sha256=row.sha256, data=bytes(row.data), mime=row.mime, width=row.width,
            height=row.height,
        )  # fmt: skip

    def count(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(profiles)).scalar_one())

    def count_estimate(self, *, exact_below: int = 100_000) -> tuple[int, bool]:
        """The number of profiles and whether it is exact, without reading every row at scale.

        PostgreSQL counts by reading every row, so past `exact_below` profiles this is its own
        estimate, as its planner makes it: the rows per page of the last VACUUM or ANALYZE
        (`pg_class.reltuples / relpages`) times the table's pages now. Below that, or while
        the table was never analysed, it is counted. SQLite is always counted.
        """
        if self._dialect != "postgresql":
            return self.count(), True
        with self._engine.connect() as conn:
            tuples, pages, now_pages = conn.execute(
                text(
                    "SELECT reltuples, relpages, pg_relation_size(oid) / "
                    "current_setting('block_size')::int FROM pg_class "
                    "WHERE oid = to_regclass('profiles')"
                )
            ).one()
        if tuples > 0 and pages > 0:
            estimate = int(tuples / pages * now_pages)
            if estimate >= exact_below:
                return estimate, False
        return self.count(), True

    def last_change_seq(self) -> int:
        """The newest change's seq, 0 when nothing was ever written."""
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(changes.c.seq), 0))).scalar_one())

    def changes_since(self, seq: int, *, limit: int = 10_000) -> list[Change]:
        """Up to `limit` changes after `seq`, oldest first: what an index must replay."""
        stmt = (
            select(changes.c.seq, changes.c.profile_id, changes.c.op)
            .where(changes.c.seq > seq)
            .order_by(changes.c.seq)
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return [Change(seq=r.seq, profile_id=r.profile_id, op=r.op) for r in conn.execute(stmt)]

    def iter_index_rows(self, *, batch_size: int = 5_000) -> Iterator[list[ProfileRow]]:
        """Every profile, by id, in batches: the input for rebuilding the indexes.

        Each batch is read in its own short transaction (keyset paging), so a long rebuild
        neither holds a snapshot nor blocks SQLite's WAL checkpoints. A rebuild that wants an
        exact state reads `last_change_seq()` first and replays `changes_since` after.
        """
        after = 0
        while True:
            stmt = (
                select(*_ROW_COLUMNS)
                .where(profiles.c.id > after)
                .order_by(profiles.c.id)
                .limit(batch_size)
            )
            with self._engine.connect() as conn:
                batch = [_row(r) for r in conn.execute(stmt)]
            if not batch:
                return
            yield batch
            after = batch[-1].id


def _profile_values(write: ProfileWrite, now: datetime) -> dict[str, Any]:
    record = write.record
    platform_key, handle_key = record.key
    return {
        "platform": record.platform,
        "handle": record.handle,
        "platform_key": platform_key,
        "handle_key": handle_key,
        "display_name": record.display_name,
        "bio": record.bio,
        "external_id": record.id,
        "created_at": record.created_at,
        "followers_count": record.followers_count,
        "following_count": record.following_count,
        "posts_count": record.posts_count,
        "verified": record.verified,
        "location": record.location,
        "url": record.url,
        "profile_url": record.profile_url,
        "avatar_url": record.avatar_url,
        "attributes": record.attributes,
        "avatar_sha256": write.avatar.sha256 if write.avatar is not None else None,
        "avatar_hashes": write.avatar_hashes,
        "bio_vector": write.bio_vector,
        "name_key": write.name_key,
        "handle_norm": write.handle_norm,
        "ingested_at": now,
        "updated_at": now,
    }


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Put the database file in WAL mode (which the file keeps).

    Several processes starting at once on a new file race to switch it, and the loser gets
    "database is locked" at once: the busy timeout does not cover this switch. So the mode is
    read first (a file already in WAL needs nothing) and the switch retried for as long as the
    busy timeout would have waited.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or "mode=memory" in database
    if not in_memory and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        json_serializer=_json_dumps,
        # One shared connection, or every checkout would see a different empty database.
        **({"poolclass": StaticPool} if in_memory else {}),
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # The driver's own transaction handling skips BEGIN before DDL and SELECT; turn it off
        # and let SQLAlchemy emit BEGIN (below), so every transaction is a real one.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            _use_wal(cursor)
            # With WAL, NORMAL survives a killed process (not a power cut) and is much faster.
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A writer takes the lock up front: a deferred transaction that read first and then
        # writes fails at once (no busy wait) when another writer committed in between.
        if conn.get_execution_options().get(_WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


def _migrate(engine: Engine) -> None:
    """Upgrade the schema to head, in one transaction that concurrent first starts queue on."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    with engine.execution_options(**{_WRITE_OPTION: True}).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
