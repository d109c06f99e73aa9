"""Everything one site holds, as one JSON document (`python -m backend export --site SITE`): the site, its
users, playbooks and forms with every version, records, callbacks and attempts, incidents with their ladders,
timelines, step ticks, reviews, alert levels, notifications and deliveries, printed sheets.

Built from the tables themselves, so a table added later is exported too: a table with a `site_id` column
gives that site's rows; one without it but with an `incident_id` gives the rows of the site's incidents.
Credentials never leave: no password hashes, tokens, login failures, push keys, delivery receipts, CRM
secrets or team channels' URLs and secrets.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from . import clock
from .auth import Site
from .db import Base

SECRET_TABLES = {"auth_tokens", "login_failures", "alembic_version"}
SECRET_COLUMNS = {
    ("users", "password_hash"),
    ("push_subscriptions", "p256dh"),
    ("push_subscriptions", "auth"),
    ("push_deliveries", "receipt"),
    ("channels", "url"),  # a robot's URL holds its key / access token
    ("channels", "secret"),
    ("crm_connectors", "secret"),  # encrypted anyway; left out all the same
}


def _value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


async def _rows(session: AsyncSession, table: Table, where: Any) -> list[dict[str, Any]]:
    columns = [c for c in table.columns if (table.name, c.name) not in SECRET_COLUMNS]
    order = list(table.primary_key.columns) or columns[:1]
    result = await session.execute(select(*columns).where(where).order_by(*order))
    return [{name: _value(value) for name, value in row._mapping.items()} for row in result]


async def export_site(session: AsyncSession, slug: str) -> dict[str, Any]:
    """The site's data; raises LookupError for an unknown site."""
    site = (await session.execute(select(Site).where(Site.slug == slug))).scalar_one_or_none()
    if site is None:
        raise LookupError(slug)
    incidents = Base.metadata.tables["incidents"]
    incident_ids = select(incidents.c.id).where(incidents.c.site_id == site.id).scalar_subquery()
    tables: dict[str, list[dict[str, Any]]] = {}
    for name, table in sorted(Base.metadata.tables.items()):
        if name in SECRET_TABLES:
            continue
        if name == "sites":
            tables[name] = await _rows(session, table, table.c.id == site.id)
        elif "site_id" in table.c:
            tables[name] = await _rows(session, table, table.c.site_id == site.id)
        elif "incident_id" in table.c:
            tables[name] = await _rows(session, table, table.c.incident_id.in_(incident_ids))
    return {
        "format": "outage-desk-export",
        "version": 1,
        "site": slug,
        "exported_at": (await clock.now(None, session)).isoformat(),
        "tables": tables,
    }
