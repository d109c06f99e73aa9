"""content

Revision ID: 20261123_0002
Revises: 20261123_0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

import backend.db  # noqa: F401

revision: str = "20261123_0002"
down_revision: str | Sequence[str] | None = "20261123_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
