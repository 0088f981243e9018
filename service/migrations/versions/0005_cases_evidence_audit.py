"""Cases, their items and immutable captures, the captured avatars, and the audit log.

Captures, captured avatars and audit entries are append-only: triggers refuse to update or
delete them, so evidence cannot change through the service or a careless query. (Someone with
full control of the database can still drop a trigger; the capture digests and the audit log's
hash chain are what show that.)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in service/store/tables.py: a migration must not change when
# the current code does.
TIMESTAMP = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

APPEND_ONLY_TABLES = ("case_captures", "capture_avatars", "audit_log")


def upgrade() -> None:
    op.create_table(
        "capture_avatars",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("mime", sa.String(100), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_capture_avatars"),
    )
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("victim_platform", sa.Text(), nullable=False),
        sa.Column("victim_handle", sa.Text(), nullable=False),
        sa.Column("victim_profile_id", sa.Integer(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cases"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_cases_key_id", "cases", ["key_id"])
    op.create_table(
        "case_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.Text(), nullable=False),
        sa.Column("handle", sa.Text(), nullable=False),
        sa.Column("platform_key", sa.Text(), nullable=False),
        sa.Column("handle_key", sa.Text(), nullable=False),
        sa.Column("profile_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("added_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_case_items"),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name="fk_case_items_case_id_cases"),
        sa.UniqueConstraint(
            "case_id",
            "platform_key",
            "handle_key",
            name="uq_case_items_case_id_platform_key_handle_key",
        ),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "case_captures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("captured_at", TIMESTAMP, nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("clone_avatar_sha256", sa.String(64), nullable=True),
        sa.Column("victim_avatar_sha256", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_case_captures"),
        sa.ForeignKeyConstraint(
            ["item_id"], ["case_items.id"], name="fk_case_captures_item_id_case_items"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_case_captures_item_id", "case_captures", ["item_id"])
    op.create_index("ix_case_captures_case_id", "case_captures", ["case_id"])
    op.create_table(
        "audit_log",
        sa.Column("seq", BIG_ID, autoincrement=False, nullable=False),
        sa.Column("at", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
        # Two entries can never claim the same predecessor: the chain cannot fork.
        sa.UniqueConstraint("prev_hash", name="uq_audit_log_prev_hash"),
    )
    _append_only_triggers()


def _append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION clonefinder_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% rows are append-only: they are never changed or deleted', "
            "TG_TABLE_NAME; END $$"
        )
        for table in APPEND_ONLY_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION clonefinder_append_only()"
            )
        return
    for table in APPEND_ONLY_TABLES:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} rows are append-only: they are never "
                "changed or deleted'); END"
            )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in APPEND_ONLY_TABLES:
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS clonefinder_append_only()")
    op.drop_table("audit_log")
    op.drop_index("ix_case_captures_case_id", table_name="case_captures")
    op.drop_index("ix_case_captures_item_id", table_name="case_captures")
    op.drop_table("case_captures")
    op.drop_table("case_items")
    op.drop_index("ix_cases_key_id", table_name="cases")
    op.drop_table("cases")
    op.drop_table("capture_avatars")
