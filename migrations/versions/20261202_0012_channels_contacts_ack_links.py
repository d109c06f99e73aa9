"""team channels, contact methods and rules, acknowledge links; the outbox takes every kind of delivery

Revision ID: 20261202_0012
Revises: 20261202_0016
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.db

revision: str = "20261202_0012"
down_revision: str | Sequence[str] | None = "20261202_0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "channels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("url", sa.String(length=1000), nullable=False),
        sa.Column("secret", sa.String(length=200), nullable=True),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_channels_site_id_sites"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channels")),
        sa.UniqueConstraint("site_id", "name", name=op.f("uq_channels_site_id_name")),
    )
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_channels_site_id"), ["site_id"], unique=False)

    op.create_table(
        "contact_methods",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("mobile", sa.String(length=32), nullable=True),
        sa.Column("updated_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_contact_methods_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_contact_methods")),
    )
    op.create_table(
        "notification_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("after_minutes", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_notification_rules_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_rules")),
        sa.UniqueConstraint("user_id", "method", name=op.f("uq_notification_rules_user_id_method")),
    )
    with op.batch_alter_table("notification_rules", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notification_rules_user_id"), ["user_id"], unique=False)

    op.create_table(
        "ack_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("created_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_ack_links_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_ack_links_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ack_links")),
    )
    with op.batch_alter_table("ack_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ack_links_incident_id"), ["incident_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ack_links_user_id"), ["user_id"], unique=False)

    with op.batch_alter_table("push_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), nullable=False, server_default="push"))
        batch_op.add_column(sa.Column("channel_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("address", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("message", sa.JSON(), nullable=True))
        batch_op.alter_column("notification_id", existing_type=sa.INTEGER(), nullable=True)
        batch_op.alter_column("user_id", existing_type=sa.INTEGER(), nullable=True)
        batch_op.create_index(batch_op.f("ix_push_deliveries_channel_id"), ["channel_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_push_deliveries_channel_id_channels"),
            "channels",
            ["channel_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("push_deliveries", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_push_deliveries_channel_id_channels"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_push_deliveries_channel_id"))
        batch_op.alter_column("user_id", existing_type=sa.INTEGER(), nullable=False)
        batch_op.alter_column("notification_id", existing_type=sa.INTEGER(), nullable=False)
        batch_op.drop_column("message")
        batch_op.drop_column("address")
        batch_op.drop_column("channel_id")
        batch_op.drop_column("kind")

    with op.batch_alter_table("ack_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ack_links_user_id"))
        batch_op.drop_index(batch_op.f("ix_ack_links_incident_id"))

    op.drop_table("ack_links")
    with op.batch_alter_table("notification_rules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notification_rules_user_id"))

    op.drop_table("notification_rules")
    op.drop_table("contact_methods")
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_channels_site_id"))

    op.drop_table("channels")
