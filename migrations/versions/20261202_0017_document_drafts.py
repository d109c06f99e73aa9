"""document drafts (the playbook and form editor)

Revision ID: 20261202_0017
Revises: 20261202_0012
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.db

revision: str = "20261202_0017"
down_revision: str | Sequence[str] | None = "20261202_0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "document_drafts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("base_version", sa.Integer(), nullable=True),
        sa.Column("updated_by", sa.Integer(), nullable=True),
        sa.Column("updated_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_document_drafts_site_id_sites"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["updated_by"],
            ["users.id"],
            name=op.f("fk_document_drafts_updated_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_document_drafts")),
        sa.UniqueConstraint("site_id", "kind", "slug", name=op.f("uq_document_drafts_site_id_kind_slug")),
    )
    op.create_index(op.f("ix_document_drafts_site_id"), "document_drafts", ["site_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_document_drafts_site_id"), table_name="document_drafts")
    op.drop_table("document_drafts")
