"""Durable bulk-scan jobs: the job, its input lines, its chunks (leased to workers) and its
results.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in service/store/tables.py: a migration must not change when
# the current code does.
TIMESTAMP = sa.DateTime(timezone=True)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _job_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["job_id"], ["scan_jobs.id"], name=f"fk_{table}_job_id_scan_jobs", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "scan_jobs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("owner_key_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(32), nullable=False),
        sa.Column("options", JSON_DOC, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("processed", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("result_lines", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_scan_jobs"),
    )
    op.create_index("ix_scan_jobs_state", "scan_jobs", ["state"])
    op.create_table(
        "scan_inputs",
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=True),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("job_id", "line_no", name="pk_scan_inputs"),
        _job_fk("scan_inputs"),
    )
    op.create_table(
        "scan_chunks",
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("chunk_no", sa.Integer(), nullable=False),
        sa.Column("first_line", sa.Integer(), nullable=False),
        sa.Column("end_line", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("worker_id", sa.String(200), nullable=True),
        sa.Column("lease_token", sa.String(32), nullable=True),
        sa.Column("lease_until", TIMESTAMP, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("job_id", "chunk_no", name="pk_scan_chunks"),
        _job_fk("scan_chunks"),
    )
    op.create_index("ix_scan_chunks_state_lease_until", "scan_chunks", ["state", "lease_until"])
    op.create_table(
        "scan_results",
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("worker_id", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "line_no", name="pk_scan_results"),
        _job_fk("scan_results"),
    )


def downgrade() -> None:
    op.drop_table("scan_results")
    op.drop_index("ix_scan_chunks_state_lease_until", table_name="scan_chunks")
    op.drop_table("scan_chunks")
    op.drop_table("scan_inputs")
    op.drop_index("ix_scan_jobs_state", table_name="scan_jobs")
    op.drop_table("scan_jobs")
