"""login addresses: where each user last logged in successfully from (exempt from that address's throttle)

Revision ID: 20261201_0007
Revises: 20261201_0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.db

revision: str = "20261201_0007"
down_revision: str | Sequence[str] | None = "20261201_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_addresses",
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("last_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("username", "address", name=op.f("pk_login_addresses")),
    )


def downgrade() -> None:
    op.drop_table("login_addresses")
