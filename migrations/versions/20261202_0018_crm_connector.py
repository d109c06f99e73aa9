"""CRM connector per site, CRM deliveries, the rev the CRM holds on each record

Revision ID: 20261202_0018
Revises: 20261202_0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.db

revision: str = "20261202_0018"
down_revision: str | Sequence[str] | None = "20261202_0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "crm_connectors",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=1000), nullable=False),
        sa.Column("auth", sa.String(length=8), nullable=False),
        sa.Column("header_name", sa.String(length=100), nullable=True),
        sa.Column("secret", sa.String(length=4000), nullable=True),
        sa.Column("mapping", sa.JSON(), nullable=False),
        sa.Column("ref_path", sa.String(length=200), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.Integer(), nullable=True),
        sa.Column("updated_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_crm_connectors_site_id_sites"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["updated_by"], ["users.id"], name=op.f("fk_crm_connectors_updated_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("site_id", name=op.f("pk_crm_connectors")),
    )
    op.create_table(
        "crm_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("rev", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=100), nullable=False),
        sa.Column("requested_by", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("deadline_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("crm_ref", sa.String(length=100), nullable=True),
        sa.Column("created_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["records.id"],
            name=op.f("fk_crm_deliveries_record_id_records"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"],
            ["users.id"],
            name=op.f("fk_crm_deliveries_requested_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_crm_deliveries_site_id_sites"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_deliveries")),
        sa.UniqueConstraint("record_id", "rev", name=op.f("uq_crm_deliveries_record_id_rev")),
    )
    op.create_index(op.f("ix_crm_deliveries_incident_id"), "crm_deliveries", ["incident_id"], unique=False)
    op.create_index(op.f("ix_crm_deliveries_site_id"), "crm_deliveries", ["site_id"], unique=False)
    op.create_index(
        "ix_crm_deliveries_state_next_attempt_at",
        "crm_deliveries",
        ["state", "next_attempt_at"],
        unique=False,
    )
    with op.batch_alter_table("records") as batch:
        batch.add_column(sa.Column("crm_rev", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("records") as batch:
        batch.drop_column("crm_rev")
    op.drop_index("ix_crm_deliveries_state_next_attempt_at", table_name="crm_deliveries")
    op.drop_index(op.f("ix_crm_deliveries_site_id"), table_name="crm_deliveries")
    op.drop_index(op.f("ix_crm_deliveries_incident_id"), table_name="crm_deliveries")
    op.drop_table("crm_deliveries")
    op.drop_table("crm_connectors")
