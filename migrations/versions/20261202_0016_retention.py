"""retention: per-site rule for personal data, erased records

Revision ID: 20261202_0016
Revises: 20261202_0018
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.db

revision: str = "20261202_0016"
down_revision: str | Sequence[str] | None = "20261202_0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "site_retention",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("erase_after_days", sa.Integer(), nullable=True),
        sa.Column("updated_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_site_retention_site_id_sites"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["updated_by"], ["users.id"], name=op.f("fk_site_retention_updated_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("site_id", name=op.f("pk_site_retention")),
    )
    op.create_table(
        "erased_records",
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("erased_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["records.id"],
            name=op.f("fk_erased_records_record_id_records"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_erased_records_site_id_sites"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("record_id", name=op.f("pk_erased_records")),
    )
    op.create_index(op.f("ix_erased_records_site_id"), "erased_records", ["site_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_erased_records_site_id"), table_name="erased_records")
    op.drop_table("erased_records")
    op.drop_table("site_retention")
