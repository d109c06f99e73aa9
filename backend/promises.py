"""Promised callbacks from call records: the records hook (app.RECORD_HOOKS) that makes, updates and cancels
each record's callback (backend.callbacks) in the sync's transaction, in bulk."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from .callbacks import CALLBACK_FORM, OPEN_STATES, Callback, announce, callback_out, promised_due
from .changes import add_personal_changes
from .clock import parse_time
from .db import table_of
from .records import Record


async def on_records_stored(session: AsyncSession, stored: list[tuple[Record, str]], now: datetime) -> None:
    """Records hook (same transaction, once per sync batch): make, update or cancel each record's callback.
    During an outage nearly every call record promises a callback, so this is the sync's hot path: callbacks of
    new records (which cannot have one yet) are made with one executemany INSERT and their feed entries with
    another, no ORM objects; records stored before read their callbacks once and flush once."""
    fresh: list[tuple[Record, datetime]] = []
    relevant: list[tuple[Record, datetime | None]] = []
    for record, outcome in stored:
        if record.form != CALLBACK_FORM:
            continue
        due = promised_due(record)
        if outcome != "created":
            relevant.append((record, due))
        elif due is not None:  # a new record has no callback yet; one that promises nothing needs none
            fresh.append((record, due))
    if relevant:
        fresh += await _update_callbacks(session, relevant, now)
    if fresh:
        await _make_callbacks(session, fresh, now)


def _fields(record: Record, due: datetime, now: datetime) -> dict[str, Any]:
    """What a callback copies from its record (kept up to date when the record changes)."""
    data = record.data or {}
    return {
        "incident_id": record.incident_id,
        "record_rev": record.rev,
        "caller_name": str(data.get("caller_name", ""))[:200],
        "phone": str(data.get("phone", ""))[:40],
        "called_at": parse_time(data.get("called_at")),
        "due_at": due,
        "updated_at": now,
    }


async def _make_callbacks(session: AsyncSession, fresh: list[tuple[Record, datetime]], now: datetime) -> None:
    rows = [
        {
            "record_id": record.id,
            "site_id": record.site_id,
            "promised_by": record.agent_id,
            "owner_id": record.agent_id,
            "assigned_by": None,
            "assigned_at": None,
            "status": "open",
            "attempts": 0,
            "last_outcome": None,
            "completed_at": None,
            "overdue_notified_at": None,
            "created_at": now,
            **_fields(record, due, now),
        }
        for record, due in fresh
    ]
    table = table_of(Callback)
    # RETURNING makes SQLAlchemy send multi-row INSERTs ("insertmanyvalues") instead of one per row.
    await session.execute(table.insert().returning(table.c.record_id), rows)
    by_site: dict[int, list[tuple[str, str, dict[str, Any], set[int]]]] = {}
    for row in rows:
        callback = cast(Callback, SimpleNamespace(**row))
        by_site.setdefault(row["site_id"], []).append(
            ("callback.created", str(row["record_id"]), callback_out(callback), {row["owner_id"]})
        )
    for site_id, changes in by_site.items():
        await add_personal_changes(session, site_id, changes)


async def _update_callbacks(
    session: AsyncSession, relevant: list[tuple[Record, datetime | None]], now: datetime
) -> list[tuple[Record, datetime]]:
    """Update or cancel the callbacks of records stored before; returns those that promise one but have none."""
    existing = {
        cb.record_id: cb
        for cb in (
            await session.execute(
                select(Callback).where(Callback.record_id.in_([record.id for record, _ in relevant]))
            )
        ).scalars()
    }
    changed: list[tuple[Callback, str]] = []
    missing: list[tuple[Record, datetime]] = []
    for record, due in relevant:
        callback = existing.get(record.id)
        if due is None:
            if callback is not None and callback.status in OPEN_STATES:
                callback.status, callback.updated_at, callback.record_rev = "cancelled", now, record.rev
                changed.append((callback, "callback.cancelled"))
        elif callback is None:
            missing.append((record, due))
        else:
            if due > callback.due_at:
                callback.overdue_notified_at = None  # a later promise: warn again if that one slips too
            for name, value in _fields(record, due, now).items():
                setattr(callback, name, value)
            if callback.status == "cancelled":
                callback.status = "trying" if callback.attempts else "open"
            changed.append((callback, "callback.updated"))
    if changed:
        await session.flush()
    for callback, kind in changed:
        await announce(session, callback, kind, flush=False)
    return missing
