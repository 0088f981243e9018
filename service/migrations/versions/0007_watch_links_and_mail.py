"""A watch that reaches the person: one entry per watch, a private link, the person's answers
to alerts, and alert e-mails.

- `watchlist_entries.watch_key`: what makes a second identical watch find the first (the
  identity, the threshold and where alerts go), filled in here for the entries already kept.
- `watchlist_entries.page_token_hash`: the SHA-256 of the private link's token.
- `watchlist_entries.email`, `email_token`, `email_confirmed_at`, `link_base_url`: the
  address alerts are e-mailed to once confirmed, and what its links are made of.
- `alerts.answer`, `answered_at`: "this is me" (`mine`) or "a clone" (`clone`).
- `mail_deliveries`: e-mails to send, claimed and retried like webhook deliveries.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in service/store/tables.py: a migration must not change when
# the current code does.
TIMESTAMP = sa.DateTime(timezone=True)


def _watch_key(row: Any) -> str:
    """A frozen copy of `service.store.watchlist.watch_key` for the entries kept so far (none
    of which has an e-mail address)."""
    identity = row.identity if isinstance(row.identity, dict) else json.loads(row.identity)
    if row.platform_key and row.handle_key:
        who = ["account", row.platform_key, row.handle_key]
    else:
        photo = identity.get("avatar_sha256") or ""
        bio = "" if (row.name_key or photo) else " ".join((row.bio or "").split()).casefold()
        who = ["face", row.name_key or "", photo, bio]
    parts = [*who, f"{float(row.threshold):.4f}", row.webhook_url or "", ""]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table("watchlist_entries") as batch:
        batch.add_column(sa.Column("watch_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("page_token_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("email", sa.Text(), nullable=True))
        batch.add_column(sa.Column("email_token", sa.String(64), nullable=True))
        batch.add_column(sa.Column("email_confirmed_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("link_base_url", sa.Text(), nullable=True))
    op.create_index(
        "ix_watchlist_entries_key_id_watch_key", "watchlist_entries", ["key_id", "watch_key"]
    )
    op.create_index(
        "ix_watchlist_entries_page_token_hash",
        "watchlist_entries",
        ["page_token_hash"],
        unique=True,
    )
    op.create_index(
        "ix_watchlist_entries_email_token", "watchlist_entries", ["email_token"], unique=True
    )
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("answer", sa.String(16), nullable=True))
        batch.add_column(sa.Column("answered_at", TIMESTAMP, nullable=True))

    conn = op.get_bind()
    entries = sa.table(
        "watchlist_entries",
        sa.column("id", sa.Integer()),
        sa.column("platform_key", sa.Text()),
        sa.column("handle_key", sa.Text()),
        sa.column("identity", sa.JSON()),
        sa.column("name_key", sa.Text()),
        sa.column("bio", sa.Text()),
        sa.column("threshold", sa.Float()),
        sa.column("webhook_url", sa.Text()),
        sa.column("watch_key", sa.String(64)),
    )
    for row in conn.execute(sa.select(entries)).all():
        conn.execute(
            sa.update(entries).where(entries.c.id == row.id).values(watch_key=_watch_key(row))
        )

    op.create_table(
        "mail_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("to_address", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("stop_url", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TIMESTAMP, nullable=False),
        sa.Column("claim_token", sa.String(64), nullable=True),
        sa.Column("claimed_until", TIMESTAMP, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_mail_deliveries"),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["watchlist_entries.id"],
            name="fk_mail_deliveries_entry_id_watchlist_entries",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
            name="fk_mail_deliveries_alert_id_alerts",
            ondelete="CASCADE",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_mail_deliveries_entry_id", "mail_deliveries", ["entry_id"])
    op.create_index(
        "ix_mail_deliveries_status_next_attempt_at",
        "mail_deliveries",
        ["status", "next_attempt_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_mail_deliveries_status_next_attempt_at", table_name="mail_deliveries")
    op.drop_index("ix_mail_deliveries_entry_id", table_name="mail_deliveries")
    op.drop_table("mail_deliveries")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("answered_at")
        batch.drop_column("answer")
    op.drop_index("ix_watchlist_entries_email_token", table_name="watchlist_entries")
    op.drop_index("ix_watchlist_entries_page_token_hash", table_name="watchlist_entries")
    op.drop_index("ix_watchlist_entries_key_id_watch_key", table_name="watchlist_entries")
    with op.batch_alter_table("watchlist_entries") as batch:
        batch.drop_column("link_base_url")
        batch.drop_column("email_confirmed_at")
        batch.drop_column("email_token")
        batch.drop_column("email")
        batch.drop_column("page_token_hash")
        batch.drop_column("watch_key")
