"""incidents: incidents, timeline, step ticks, escalation rungs, alert levels, inbox, push outbox

Revision ID: 20261123_0004
Revises: 20261123_0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.db

revision: str = "20261123_0004"
down_revision: str | Sequence[str] | None = "20261123_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("playbook", sa.String(length=64), nullable=False),
        sa.Column("playbook_version", sa.Integer(), nullable=False),
        sa.Column("title", sa.JSON(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("drill", sa.Boolean(), nullable=False),
        sa.Column("time_scale", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("declared_by", sa.Integer(), nullable=True),
        sa.Column("declared_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_by", sa.Integer(), nullable=True),
        sa.Column("acknowledged_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("recovered_by", sa.Integer(), nullable=True),
        sa.Column("recovered_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.Integer(), nullable=True),
        sa.Column("resolved_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["acknowledged_by"], ["users.id"], name=op.f("fk_incidents_acknowledged_by_users")
        ),
        sa.ForeignKeyConstraint(["declared_by"], ["users.id"], name=op.f("fk_incidents_declared_by_users")),
        sa.ForeignKeyConstraint(["recovered_by"], ["users.id"], name=op.f("fk_incidents_recovered_by_users")),
        sa.ForeignKeyConstraint(["resolved_by"], ["users.id"], name=op.f("fk_incidents_resolved_by_users")),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_incidents_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_incidents_site_id"), ["site_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_incidents_status"), ["status"], unique=False)

    op.create_table(
        "metric_samples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("answer_rate", sa.Float(), nullable=False),
        sa.Column("queue_length", sa.Integer(), nullable=False),
        sa.Column("offered", sa.Integer(), nullable=True),
        sa.Column("answered", sa.Integer(), nullable=True),
        sa.Column("system_failure", sa.Boolean(), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("posted_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["posted_by"], ["users.id"], name=op.f("fk_metric_samples_posted_by_users")),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_metric_samples_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metric_samples")),
    )
    with op.batch_alter_table("metric_samples", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_metric_samples_site_id"), ["site_id"], unique=False)

    op.create_table(
        "push_subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("endpoint", sa.String(length=1000), nullable=False),
        sa.Column("p256dh", sa.String(length=200), nullable=False),
        sa.Column("auth", sa.String(length=100), nullable=False),
        sa.Column("user_agent", sa.String(length=300), nullable=True),
        sa.Column("created_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_push_subscriptions_site_id_sites")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_push_subscriptions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_subscriptions")),
        sa.UniqueConstraint("endpoint", name=op.f("uq_push_subscriptions_endpoint")),
    )
    with op.batch_alter_table("push_subscriptions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_push_subscriptions_site_id"), ["site_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_push_subscriptions_user_id"), ["user_id"], unique=False)

    op.create_table(
        "alert_states",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("answer_rate", sa.Float(), nullable=True),
        sa.Column("queue_length", sa.Integer(), nullable=True),
        sa.Column("system_failure", sa.Boolean(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_alert_states_incident_id_incidents"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_alert_states_site_id_sites")),
        sa.ForeignKeyConstraint(["updated_by"], ["users.id"], name=op.f("fk_alert_states_updated_by_users")),
        sa.PrimaryKeyConstraint("site_id", name=op.f("pk_alert_states")),
    )
    op.create_table(
        "escalation_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("rung", sa.Integer(), nullable=False),
        sa.Column("after_minutes", sa.Integer(), nullable=False),
        sa.Column("notify", sa.JSON(), nullable=False),
        sa.Column("message", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("due_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("fired_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_escalation_steps_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_escalation_steps_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalation_steps")),
        sa.UniqueConstraint("incident_id", "rung", name=op.f("uq_escalation_steps_incident_id_rung")),
    )
    with op.batch_alter_table("escalation_steps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_escalation_steps_due_at"), ["due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_escalation_steps_incident_id"), ["incident_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_escalation_steps_status"), ["status"], unique=False)

    op.create_table(
        "incident_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name=op.f("fk_incident_events_actor_id_users")),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_events_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_events")),
    )
    with op.batch_alter_table("incident_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_incident_events_incident_id"), ["incident_id"], unique=False)

    op.create_table(
        "incident_step_ticks",
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("ticked_by", sa.Integer(), nullable=False),
        sa.Column("ticked_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_step_ticks_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ticked_by"], ["users.id"], name=op.f("fk_incident_step_ticks_ticked_by_users")
        ),
        sa.PrimaryKeyConstraint("incident_id", "step_id", name=op.f("pk_incident_step_ticks")),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("urgency", sa.String(length=8), nullable=False),
        sa.Column("drill", sa.Boolean(), nullable=False),
        sa.Column("title", sa.JSON(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("read_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_notifications_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_notifications_site_id_sites")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_notifications_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notifications_incident_id"), ["incident_id"], unique=False)
        batch_op.create_index("ix_notifications_user_id_id", ["user_id", "id"], unique=False)

    op.create_table(
        "push_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("notification_id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=True),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("urgency", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("deadline_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("receipt", sa.String(length=64), nullable=False),
        sa.Column("created_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_push_deliveries_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_push_deliveries_notification_id_notifications"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_push_deliveries_site_id_sites")),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["push_subscriptions.id"],
            name=op.f("fk_push_deliveries_subscription_id_push_subscriptions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_push_deliveries_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_deliveries")),
    )
    with op.batch_alter_table("push_deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_push_deliveries_incident_id"), ["incident_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_push_deliveries_notification_id"), ["notification_id"], unique=False
        )
        batch_op.create_index(
            "ix_push_deliveries_state_next_attempt_at", ["state", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_push_deliveries_subscription_id"), ["subscription_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("push_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_push_deliveries_subscription_id"))
        batch_op.drop_index("ix_push_deliveries_state_next_attempt_at")
        batch_op.drop_index(batch_op.f("ix_push_deliveries_notification_id"))
        batch_op.drop_index(batch_op.f("ix_push_deliveries_incident_id"))

    op.drop_table("push_deliveries")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_user_id_id")
        batch_op.drop_index(batch_op.f("ix_notifications_incident_id"))

    op.drop_table("notifications")
    op.drop_table("incident_step_ticks")
    with op.batch_alter_table("incident_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_events_incident_id"))

    op.drop_table("incident_events")
    with op.batch_alter_table("escalation_steps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_escalation_steps_status"))
        batch_op.drop_index(batch_op.f("ix_escalation_steps_incident_id"))
        batch_op.drop_index(batch_op.f("ix_escalation_steps_due_at"))

    op.drop_table("escalation_steps")
    op.drop_table("alert_states")
    with op.batch_alter_table("push_subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_push_subscriptions_user_id"))
        batch_op.drop_index(batch_op.f("ix_push_subscriptions_site_id"))

    op.drop_table("push_subscriptions")
    with op.batch_alter_table("metric_samples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_metric_samples_site_id"))

    op.drop_table("metric_samples")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incidents_status"))
        batch_op.drop_index(batch_op.f("ix_incidents_site_id"))

    op.drop_table("incidents")
