"""change feed by audience: an index on (site, user, role, id)

A device reads only the entries addressed to it (its user's, and those for everyone or for its role and up);
with this index each audience is one range scan from the cursor instead of a scan of the whole site's feed.

Revision ID: 20261202_0015
Revises: 20261202_0017
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261202_0015"
down_revision: str | Sequence[str] | None = "20261202_0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_changes_audience", "changes", ["site_id", "user_id", "min_role", "id"])


def downgrade() -> None:
    op.drop_index("ix_changes_audience", table_name="changes")
