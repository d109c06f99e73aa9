"""An incident's timeline: every declaration, rung fired, delivery attempt, acknowledgement, note and tick,
append-only and ordered by id. Capabilities write to it through `add_event`; the incident screens, the review
and the printed incident log read it through `timeline`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from .auth import User
from .db import Base, UTCDateTime

# Event kinds and what their `data` holds:
EVENT_KINDS = {
    "declared": "playbook, version, drill, time_scale, note, source ('manual' | 'metrics')",
    "note": "text",
    "step_ticked": "step, done (bool)",
    "escalation_fired": "rung, after_minutes, notify (roles), message, due_at, late_seconds, recipients, deliveries",
    "notification_sent": "delivery, user_id, user (name, or the channel's), status, attempt; channel (email, sms,"
    " channel: a team channel) and channel_id when not Web Push (the provider accepted it)",
    "notification_deferred": "delivery, user_id, user, status, error, retry_at, channel (rate limited: waits,"
    " keeps its attempts)",
    "notification_failed": "delivery, user_id, user, status, error, attempt, retry_at (None: given up)",
    "notification_gone": "delivery, user_id, user, status (404/410: the subscription was removed)",
    "notification_delivered": "delivery, user_id, user (the device's service worker received it)",
    "acknowledged": "rungs_stopped, deliveries_cancelled, seconds_to_ack",
    "recovered": "note, rungs_stopped",
    "resolved": "note, rungs_cancelled, deliveries_cancelled; left_open (steps, callbacks, unsent) when anything "
    "was, with anyway and reason when the lead resolved anyway; automatic (closed by the level or its drill)",
    "level_changed": "from, to, answer_rate, queue_length, system_failure, reported_by",
    "records_attached": "records (ids a lead attached to this incident)",
    "records_detached": "records (ids a lead detached from this incident)",
    "reserve_called": "tier (1-3), level",
    "crm_pushed": "queued, skipped (a lead sent the incident's records to the CRM)",
    "crm_reentered": "delivery, record, rev, status, attempt, crm_ref (the CRM took it: marked re-entered)",
    "crm_failed": "delivery, record, rev, status, attempt, error, retry_at (None: given up)",
}


class IncidentEvent(Base):
    __tablename__ = "incident_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    data: Mapped[dict] = mapped_column(JSON, default=dict)


async def add_event(
    session: AsyncSession,
    incident_id: int,
    kind: str,
    actor_id: int | None,
    data: dict[str, Any] | None = None,
    *,
    at: datetime,
) -> IncidentEvent:
    """Append one event (the caller's transaction commits it)."""
    event = IncidentEvent(incident_id=incident_id, kind=kind, actor_id=actor_id, data=data or {}, at=at)
    session.add(event)
    await session.flush()
    return event


async def timeline(session: AsyncSession, incident_id: int, after: int = 0, limit: int = 1000) -> list[dict]:
    """[{"id", "at", "kind", "actor": {"id", "name"} | None, "data"}], oldest first."""
    rows = await session.execute(
        select(IncidentEvent, User.display_name)
        .outerjoin(User, User.id == IncidentEvent.actor_id)
        .where(IncidentEvent.incident_id == incident_id, IncidentEvent.id > after)
        .order_by(IncidentEvent.id)
        .limit(limit)
    )
    return [
        {
            "id": e.id,
            "at": e.at,
            "kind": e.kind,
            "actor": {"id": e.actor_id, "name": name} if e.actor_id else None,
            "data": e.data,
        }
        for e, name in rows.all()
    ]
