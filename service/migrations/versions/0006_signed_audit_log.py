"""Audit entries signed with the service's Ed25519 key: `signature` and `key_fingerprint`.

A hash chain alone can be rewritten, hashes and all, by anyone who can write the database;
a signature needs the key as well. Entries already in the log keep NULL in both columns:
the key is not at hand here, and signing them now would vouch for whatever they hold today.
`clonefinder audit verify` reports them as written before the log was signed, and the first
signed entry after them covers them through its hash.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Adding a nullable column rewrites no row, so the append-only triggers are not involved.
    op.add_column("audit_log", sa.Column("signature", sa.Text(), nullable=True))
    op.add_column("audit_log", sa.Column("key_fingerprint", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("audit_log", "key_fingerprint")
    op.drop_column("audit_log", "signature")
