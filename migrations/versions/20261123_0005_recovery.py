"""recovery: printed sheet IDs (paper fallback)

Revision ID: 20261123_0005
Revises: 20261123_0004
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.db

revision: str = "20261123_0005"
down_revision: str | Sequence[str] | None = "20261123_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "printed_sheets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sheet_id", sa.String(length=16), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("form", sa.String(length=64), nullable=False),
        sa.Column("form_version", sa.Integer(), nullable=False),
        sa.Column("origin", sa.String(length=8), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_printed_sheets_created_by_users")),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_printed_sheets_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_printed_sheets")),
        sa.UniqueConstraint("sheet_id", name=op.f("uq_printed_sheets_sheet_id")),
    )
    with op.batch_alter_table("printed_sheets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_printed_sheets_site_id"), ["site_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("printed_sheets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_printed_sheets_site_id"))
    op.drop_table("printed_sheets")
