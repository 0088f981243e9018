"""API keys in the store: the `api_keys` table and `KeyStore`, its data access.

Only a hash of each key is kept (see `service.auth.keys` for how keys are made and why a plain
SHA-256 is enough); this module never sees a key itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Column,
    Connection,
    Integer,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from models.errors import InvalidInputError, NotFoundError
from service.auth.roles import Role
from service.store.store import _WRITE_OPTION, Store, _utcnow
from service.store.tables import UTCDateTime, metadata

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False, unique=True),
    Column("role", String(32), nullable=False),
    # Unique, hence indexed: every authenticated request is one lookup by this column.
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    Column("last_used_at", UTCDateTime),
    # Never reuse an id: a revoked key's id must not come back as another key's.
    sqlite_autoincrement=True,
)


@dataclass(frozen=True)
class KeyRow:
    """What is stored about one key: everything but the key (and its hash)."""

    id: int
    name: str
    role: Role
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


_COLUMNS = (
    api_keys.c.id,
    api_keys.c.name,
    api_keys.c.role,
    api_keys.c.prefix,
    api_keys.c.created_at,
    api_keys.c.revoked_at,
    api_keys.c.last_used_at,
)


def _key_row(row: Any) -> KeyRow:
    # Any: the rows of a typed 7-column select are Row[7 types], not Row[Any].
    return KeyRow(
        id=int(row.id),
        name=row.name,
        role=cast(Role, row.role),
        prefix=row.prefix,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


class KeyStore:
    """Create, find, list and revoke API keys in the store's database (SQLite or PostgreSQL).

    Thread-safe like `Store`: each call checks a connection out of the engine's pool. Writes
    take SQLite's write lock at BEGIN, as the store's own writes do.
    """

    def __init__(self, store: Store) -> None:
        self._engine = store.engine
        self._write_engine = store.engine.execution_options(**{_WRITE_OPTION: True})

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self._write_engine.begin() as conn:
            yield conn

    def add(
        self,
        *,
        name: str,
        role: Role,
        key_hash: str,
        prefix: str,
        only_if_empty: bool = False,
    ) -> KeyRow | None:
        """Store a new key; returns its row.

        Raises InvalidInputError when a key of that name exists. With `only_if_empty`, the key
        is stored only when the table holds no key at all (the first admin key), and None is
        returned otherwise: also when another process stored its first key at the same moment.
        """
        values = {
            "name": name,
            "role": role,
            "key_hash": key_hash,
            "prefix": prefix,
            "created_at": _utcnow(),
        }
        try:
            with self._writing() as conn:
                if only_if_empty and conn.execute(select(api_keys.c.id).limit(1)).first():
                    return None
                row = conn.execute(insert(api_keys).values(values).returning(*_COLUMNS)).one()
        except IntegrityError:
            if only_if_empty:
                return None  # a concurrent first start won the race
            raise InvalidInputError(
                f"a key named {name!r} already exists; choose another name"
            ) from None
        return _key_row(row)

    def find_by_hash(self, key_hash: str) -> KeyRow | None:
        """The key with this hash, revoked or not; None when there is none."""
        stmt = select(*_COLUMNS).where(api_keys.c.key_hash == key_hash)
        with self._engine.connect() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else _key_row(row)

    def get(self, name: str) -> KeyRow | None:
        stmt = select(*_COLUMNS).where(api_keys.c.name == name)
        with self._engine.connect() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else _key_row(row)

    def list(self) -> list[KeyRow]:
        """Every key, revoked ones too, oldest first."""
        with self._engine.connect() as conn:
            return [_key_row(r) for r in conn.execute(select(*_COLUMNS).order_by(api_keys.c.id))]

    def count(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(api_keys)).scalar_one())

    def revoke(self, name: str) -> KeyRow:
        """Revoke the named key from now on; revoking it again keeps the first time.

        Raises NotFoundError when no key has that name.
        """
        with self._writing() as conn:
            conn.execute(
                update(api_keys)
                .where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=_utcnow())
            )
            row = conn.execute(select(*_COLUMNS).where(api_keys.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no key named {name!r}")
        return _key_row(row)

    def touch(self, key_id: int, *, at: datetime | None = None) -> None:
        """Record that the key was used at `at` (default: now)."""
        with self._writing() as conn:
            conn.execute(
                update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=at or _utcnow())
            )
