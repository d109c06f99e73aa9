"""records: call records (sync protocol) and the per-site change feed

Revision ID: 20261123_0003
Revises: 20261123_0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.db

revision: str = "20261123_0003"
down_revision: str | Sequence[str] | None = "20261123_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=100), nullable=False),
        sa.Column("form", sa.String(length=64), nullable=False),
        sa.Column("form_version", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("rev", sa.Integer(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("captured_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("receipt", sa.String(length=20), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("sheet_id", sa.String(length=64), nullable=True),
        sa.Column("sheet_row", sa.Integer(), nullable=True),
        sa.Column("reentry_status", sa.String(length=16), nullable=False),
        sa.Column("crm_ref", sa.String(length=100), nullable=True),
        sa.Column("reentered_by", sa.Integer(), nullable=True),
        sa.Column("reentered_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["agent_id"], ["users.id"], name=op.f("fk_records_agent_id_users")),
        sa.ForeignKeyConstraint(["reentered_by"], ["users.id"], name=op.f("fk_records_reentered_by_users")),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_records_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_records")),
    )
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_records_site_id"), ["site_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_records_agent_id"), ["agent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_records_incident_id"), ["incident_id"], unique=False)
        batch_op.create_index("ix_records_site_id_seq", ["site_id", "seq"], unique=False)
        batch_op.create_index("ix_records_site_id_form", ["site_id", "form"], unique=False)

    op.create_table(
        "changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("ref", sa.String(length=100), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_changes_site_id_sites")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_changes_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_changes")),
    )
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.create_index("ix_changes_site_id_id", ["site_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.drop_index("ix_changes_site_id_id")
    op.drop_table("changes")
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index("ix_records_site_id_form")
        batch_op.drop_index("ix_records_site_id_seq")
        batch_op.drop_index(batch_op.f("ix_records_incident_id"))
        batch_op.drop_index(batch_op.f("ix_records_agent_id"))
        batch_op.drop_index(batch_op.f("ix_records_site_id"))
    op.drop_table("records")
