"""The initial store: profiles, avatars and the change log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in service/store/tables.py: a migration must not change when
# the current code does.
TIMESTAMP = sa.DateTime(timezone=True)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "avatars",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("mime", sa.String(100), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("byte_size", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_avatars"),
    )
    op.create_table(
        "profiles",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("platform", sa.Text(), nullable=False),
        sa.Column("handle", sa.Text(), nullable=False),
        sa.Column("platform_key", sa.Text(), nullable=False),
        sa.Column("handle_key", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=True),
        sa.Column("bio", sa.Text(), nullable=True),
        sa.Column("external_id", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=True),
        sa.Column("followers_count", sa.BigInteger(), nullable=True),
        sa.Column("following_count", sa.BigInteger(), nullable=True),
        sa.Column("posts_count", sa.BigInteger(), nullable=True),
        sa.Column("verified", sa.Boolean(), nullable=True),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("profile_url", sa.Text(), nullable=True),
        sa.Column("avatar_url", sa.Text(), nullable=True),
        sa.Column("attributes", JSON_DOC, nullable=False),
        sa.Column("avatar_sha256", sa.String(64), nullable=True),
        sa.Column("avatar_hashes", sa.LargeBinary(), nullable=True),
        sa.Column("bio_vector", sa.LargeBinary(), nullable=True),
        sa.Column("name_key", sa.Text(), nullable=False),
        sa.Column("handle_norm", sa.Text(), nullable=False),
        sa.Column("ingested_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_profiles"),
        sa.UniqueConstraint(
            "platform_key", "handle_key", name="uq_profiles_platform_key_handle_key"
        ),
        sa.ForeignKeyConstraint(
            ["avatar_sha256"], ["avatars.sha256"], name="fk_profiles_avatar_sha256_avatars"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_profiles_avatar_sha256", "profiles", ["avatar_sha256"])
    op.create_table(
        "changes",
        sa.Column("seq", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("profile_id", sa.Integer(), nullable=False),
        sa.Column("op", sa.String(16), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_changes"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_changes_profile_id", "changes", ["profile_id"])


def downgrade() -> None:
    op.drop_index("ix_changes_profile_id", table_name="changes")
    op.drop_table("changes")
    op.drop_index("ix_profiles_avatar_sha256", table_name="profiles")
    op.drop_table("profiles")
    op.drop_table("avatars")
