"""a drill's own alert level; metric samples say which drill they fed

Revision ID: 20261202_0013
Revises: 20261202_0015
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.db

revision: str = "20261202_0013"
down_revision: str | Sequence[str] | None = "20261202_0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "drill_alert_states",
        sa.Column("drill_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("answer_rate", sa.Float(), nullable=True),
        sa.Column("queue_length", sa.Integer(), nullable=True),
        sa.Column("system_failure", sa.Boolean(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["drill_id"],
            ["incidents.id"],
            name=op.f("fk_drill_alert_states_drill_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_drill_alert_states_incident_id_incidents"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_drill_alert_states_site_id_sites")),
        sa.ForeignKeyConstraint(
            ["updated_by"], ["users.id"], name=op.f("fk_drill_alert_states_updated_by_users")
        ),
        sa.PrimaryKeyConstraint("drill_id", name=op.f("pk_drill_alert_states")),
    )
    op.create_index(op.f("ix_drill_alert_states_site_id"), "drill_alert_states", ["site_id"], unique=False)
    with op.batch_alter_table("metric_samples") as batch:
        batch.add_column(sa.Column("drill_id", sa.Integer(), nullable=True))
        batch.create_index(batch.f("ix_metric_samples_drill_id"), ["drill_id"], unique=False)
        batch.create_foreign_key(
            batch.f("fk_metric_samples_drill_id_incidents"),
            "incidents",
            ["drill_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("metric_samples") as batch:
        batch.drop_constraint(batch.f("fk_metric_samples_drill_id_incidents"), type_="foreignkey")
        batch.drop_index(batch.f("ix_metric_samples_drill_id"))
        batch.drop_column("drill_id")
    op.drop_index(op.f("ix_drill_alert_states_site_id"), table_name="drill_alert_states")
    op.drop_table("drill_alert_states")
