"""The store's tables as SQLAlchemy Core metadata.

The schema itself is created and changed only by the Alembic migrations in
`service/migrations`; this module mirrors it for queries (and for `alembic revision
--autogenerate`). Keep the two in step.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# Named constraints so later migrations (and SQLite batch mode) can refer to them.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always returned timezone-aware in UTC.

    SQLite keeps no zone, so a naive value read back is UTC by construction; PostgreSQL
    returns the session's zone, which is converted.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        # SQLite's formatter drops the zone anyway; dropping it here makes that explicit.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]

    def result_processor(
        self, dialect: Dialect, coltype: Any
    ) -> Callable[[Any], datetime | None] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        # SQLAlchemy parses SQLite's text timestamps with a regular expression, which costs
        # more than the rest of a row; the C `fromisoformat` reads the same format.
        def parse(value: Any) -> datetime | None:
            if value is None:
                return None
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)

        return parse


JSONDocument = JSON().with_variant(JSONB(), "postgresql")
# SQLite only autoincrements a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

avatars = Table(
    "avatars",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("data", LargeBinary, nullable=False),
    Column("mime", String(100), nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("byte_size", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

profiles = Table(
    "profiles",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("platform", Text, nullable=False),
    Column("handle", Text, nullable=False),
    Column("platform_key", Text, nullable=False),
    Column("handle_key", Text, nullable=False),
    Column("display_name", Text),
    Column("bio", Text),
    Column("external_id", Text),
    Column("created_at", UTCDateTime),
    Column("followers_count", BigInteger),
    Column("following_count", BigInteger),
    Column("posts_count", BigInteger),
    Column("verified", Boolean),
    Column("location", Text),
    Column("url", Text),
    Column("profile_url", Text),
    Column("avatar_url", Text),
    Column("attributes", JSONDocument, nullable=False),
    Column("avatar_sha256", String(64), ForeignKey("avatars.sha256")),
    Column("avatar_hashes", LargeBinary),
    Column("bio_vector", LargeBinary),
    Column("name_key", Text, nullable=False),
    Column("handle_norm", Text, nullable=False),
    Column("ingested_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("platform_key", "handle_key"),
    # Never reuse an id: indexes and evidence refer to profiles by it.
    sqlite_autoincrement=True,
)
# Deleting an avatar checks that no profile still refers to it.
Index("ix_profiles_avatar_sha256", profiles.c.avatar_sha256)

changes = Table(
    "changes",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("profile_id", Integer, nullable=False),
    Column("op", String(16), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    sqlite_autoincrement=True,
)
Index("ix_changes_profile_id", changes.c.profile_id)
