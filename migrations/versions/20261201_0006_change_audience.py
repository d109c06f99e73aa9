"""change audience: a change-feed entry for everyone at the site may be limited to a role and up

Callback changes carry the caller's name and phone: they go to the callback's owner and to leads and up,
not to every agent of the site.

Revision ID: 20261201_0006
Revises: 20261123_0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261201_0006"
down_revision: str | Sequence[str] | None = "20261123_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("changes") as batch:
        batch.add_column(sa.Column("min_role", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("changes") as batch:
        batch.drop_column("min_role")
