"""change feed by audience without NULLs in the index keys

The audience index held user_id and min_role, which are NULL for broadcast entries. PostgreSQL does not treat
`IS NULL` as an equality for ordering, so each NULL audience was read whole and sorted on every sync instead of
read from the cursor up to a page: a lead draining 20,000 entries read ~400,000. The index is on
coalesce(user_id, 0) and coalesce(min_role, '') instead, and the feed query asks for exactly those expressions.

Revision ID: 20261202_0019
Revises: 20261202_0013
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261202_0019"
down_revision: str | Sequence[str] | None = "20261202_0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_changes_audience", table_name="changes")
    op.create_index(
        "ix_changes_audience",
        "changes",
        ["site_id", sa.text("coalesce(user_id, 0)"), sa.text("coalesce(min_role, '')"), "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_changes_audience", table_name="changes")
    op.create_index("ix_changes_audience", "changes", ["site_id", "user_id", "min_role", "id"])
