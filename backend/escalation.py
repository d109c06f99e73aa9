"""The escalation engine: fires each due rung of every incident's ladder (backend.ladder) exactly once, even
with several app processes on one database, on the app's clock (backend.clock)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from . import clock, workers
from .incidents import Incident
from .ladder import EscalationStep, ladder
from .notifications import notify
from .timeline import add_event

BATCH = 20


async def claim_due(session: AsyncSession, at: datetime, limit: int | None = None) -> list[int]:
    """Mark due rungs fired and return their ids (one claim: a rung is fired by one process only)."""
    return await workers.claim(
        session,
        EscalationStep.id,
        [EscalationStep.status == "pending", EscalationStep.due_at <= at],
        [EscalationStep.due_at, EscalationStep.id],
        limit or BATCH,
        {"status": "fired", "fired_at": at},
    )


async def fire_due(app: Any) -> int:
    """Fire every due rung once: notify its roles (inbox + outbox) and write the timeline, all in the same
    transaction as the claim, so a crash either fires a rung completely or not at all."""
    state = getattr(app, "state", app)
    async with state.sessionmaker() as session:
        at = await clock.now(state, session)
        ids = await claim_due(session, at)
        if not ids:
            await session.rollback()
            return 0
        steps = list(
            (
                await session.execute(
                    select(EscalationStep)
                    .where(EscalationStep.id.in_(ids))
                    .order_by(EscalationStep.due_at, EscalationStep.rung)
                )
            ).scalars()
        )
        for step in steps:
            incident = await session.get(Incident, step.incident_id)
            assert incident is not None  # the rung's foreign key
            title = {
                "zh-CN": f"升级：{incident.title['zh-CN']}（{step.after_minutes}分钟）",
                "en": f"Escalation: {incident.title['en']} ({step.after_minutes} min)",
            }
            sent = await notify(
                session,
                step.site_id,
                step.notify,
                title,
                step.message,
                incident_id=incident.id,
                kind="escalation",
                urgency="high",
                at=at,
                drill=incident.drill,
                time_scale=incident.time_scale,
            )
            following = next((s for s in await ladder(session, incident.id) if s.status == "pending"), None)
            await add_event(
                session,
                incident.id,
                "escalation_fired",
                None,
                {
                    "rung": step.rung,
                    "after_minutes": step.after_minutes,
                    "notify": step.notify,
                    "message": step.message,
                    "due_at": step.due_at.isoformat(),
                    "late_seconds": round((at - step.due_at).total_seconds(), 3),
                    "recipients": sent["users"],
                    "deliveries": sent["deliveries"],
                    "next_due_at": following.due_at.isoformat() if following else None,
                },
                at=at,
            )
        await session.commit()
        return len(steps)


async def seconds_to_next(state: Any) -> float | None:
    """Until the next pending rung is due: the engine sleeps exactly that long (never past its poll)."""
    async with state.sessionmaker() as session:
        at = await clock.now(state, session)
        due = (
            await session.execute(
                select(func.min(EscalationStep.due_at)).where(EscalationStep.status == "pending")
            )
        ).scalar_one_or_none()
    return None if due is None else (due - at).total_seconds()


async def fire_round(state: Any) -> int:
    return await fire_due(state)  # looked up when called, so a test can wrap fire_due


STEP = workers.Step("escalation", fire_round, wake_in=seconds_to_next)
