"""recovery: printed sheet IDs (paper fallback), callbacks and their attempts, incident reviews

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
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_printed_sheets_created_by_users")
        ),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_printed_sheets_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_printed_sheets")),
        sa.UniqueConstraint("sheet_id", name=op.f("uq_printed_sheets_sheet_id")),
    )
    with op.batch_alter_table("printed_sheets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_printed_sheets_site_id"), ["site_id"], unique=False)

    op.create_table(
        "callbacks",
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("record_rev", sa.Integer(), nullable=False),
        sa.Column("caller_name", sa.String(length=200), nullable=False),
        sa.Column("phone", sa.String(length=40), nullable=False),
        sa.Column("called_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("due_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("promised_by", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("assigned_by", sa.Integer(), nullable=True),
        sa.Column("assigned_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_outcome", sa.String(length=16), nullable=True),
        sa.Column("completed_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("overdue_notified_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"], ["records.id"], name=op.f("fk_callbacks_record_id_records"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_callbacks_site_id_sites")),
        sa.ForeignKeyConstraint(["promised_by"], ["users.id"], name=op.f("fk_callbacks_promised_by_users")),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_callbacks_owner_id_users")),
        sa.ForeignKeyConstraint(["assigned_by"], ["users.id"], name=op.f("fk_callbacks_assigned_by_users")),
        sa.PrimaryKeyConstraint("record_id", name=op.f("pk_callbacks")),
    )
    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_callbacks_site_id"), ["site_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_callbacks_incident_id"), ["incident_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_callbacks_due_at"), ["due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_callbacks_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_callbacks_status"), ["status"], unique=False)

    op.create_table(
        "callback_attempts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("callback_id", sa.Uuid(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("attempted_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["callback_id"],
            ["callbacks.record_id"],
            name=op.f("fk_callback_attempts_callback_id_callbacks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_callback_attempts_site_id_sites")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_callback_attempts_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_attempts")),
    )
    with op.batch_alter_table("callback_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_callback_attempts_callback_id"), ["callback_id"], unique=False)

    op.create_table(
        "incident_reports",
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("cause", sa.Text(), nullable=True),
        sa.Column("actions", sa.Text(), nullable=True),
        sa.Column("written_by", sa.Integer(), nullable=True),
        sa.Column("written_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reminder_sent_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_reports_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_incident_reports_site_id_sites")),
        sa.ForeignKeyConstraint(
            ["written_by"], ["users.id"], name=op.f("fk_incident_reports_written_by_users")
        ),
        sa.PrimaryKeyConstraint("incident_id", name=op.f("pk_incident_reports")),
    )
    with op.batch_alter_table("incident_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_incident_reports_site_id"), ["site_id"], unique=False)


def downgrade() -> None:
    op.drop_table("incident_reports")
    op.drop_table("callback_attempts")
    op.drop_table("callbacks")
    with op.batch_alter_table("printed_sheets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_printed_sheets_site_id"))
    op.drop_table("printed_sheets")
