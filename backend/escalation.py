"""The escalation engine: one state row per rung of an incident's (frozen) ladder, fired by a background
worker when due, exactly once even with several app processes on one database.

Rung states: pending -> fired (its roles were notified) | stopped (acknowledged / recovered first)
| cancelled (resolved first). Times come from the clock (`now()`): the database clock in production,
a ManualClock that tests advance.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from . import incidents, push
from .db import Base, UTCDateTime, db_now, utcnow

log = logging.getLogger("outage_desk")

POLL_SECONDS = 1.0  # how often an idle worker looks for due rungs (app.state.worker_interval overrides)
BATCH = 20


# ---------------------------------------------------------------- the clock

class DatabaseClock:
    """Production: the database's clock, so several app processes agree on when a rung is due."""

    async def now(self, session: AsyncSession) -> datetime:
        return await db_now(session)


class ManualClock:
    """Tests: a clock that only moves when told (`advance(minutes=5)`)."""

    def __init__(self, start: datetime | None = None):
        self.at = start or utcnow()

    async def now(self, session: AsyncSession | None = None) -> datetime:
        return self.at

    def advance(self, **delta: float) -> datetime:
        self.at += timedelta(**delta)
        return self.at


_DB_CLOCK = DatabaseClock()


async def now(state: Any, session: AsyncSession) -> datetime:
    """'Now' for incidents, escalation and push: app.state.clock when a test set one, else the DB clock.
    `state` is an app or its state."""
    state = getattr(state, "state", state)
    clock = getattr(state, "clock", None) or _DB_CLOCK
    return await clock.now(session)


def worker_interval(state: Any) -> float:
    return getattr(state, "worker_interval", None) or POLL_SECONDS


# ---------------------------------------------------------------- the ladder's state rows

class EscalationStep(Base):
    """One rung of an incident's ladder: who to notify, when, and what happened to it."""

    __tablename__ = "escalation_steps"
    __table_args__ = (UniqueConstraint("incident_id", "rung"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    rung: Mapped[int] = mapped_column(Integer)  # 0-based position in the frozen ladder
    after_minutes: Mapped[int] = mapped_column(Integer)  # as written in the playbook (before a drill's scale)
    notify: Mapped[list] = mapped_column(JSON)  # roles
    message: Mapped[dict] = mapped_column(JSON)  # {"zh-CN", "en"}
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # stopped / cancelled at


def due_at(declared_at: datetime, after_minutes: int, time_scale: int) -> datetime:
    """A drill with time_scale N reaches each rung N times sooner."""
    return declared_at + timedelta(minutes=after_minutes) / max(1, time_scale)


def schedule(session: AsyncSession, incident: Any) -> list[EscalationStep]:
    """Make the pending rows for a newly declared incident's frozen ladder."""
    rows = [EscalationStep(incident_id=incident.id, site_id=incident.site_id, rung=i,
                           after_minutes=rung["after_minutes"], notify=list(rung["notify"]), message=rung["message"],
                           status="pending", due_at=due_at(incident.declared_at, rung["after_minutes"],
                                                           incident.time_scale))
            for i, rung in enumerate(incident.definition.get("escalation", []))]
    session.add_all(rows)
    return rows


async def end_pending(session: AsyncSession, incident_id: int, status: str, at: datetime) -> int:
    """Stop ('stopped', on ack/recovery) or cancel ('cancelled', on resolve) every rung not fired yet."""
    result = await session.execute(
        update(EscalationStep).where(EscalationStep.incident_id == incident_id, EscalationStep.status == "pending")
        .values(status=status, ended_at=at))
    return result.rowcount or 0


async def ladder(session: AsyncSession, incident_id: int) -> list[EscalationStep]:
    return list((await session.execute(select(EscalationStep).where(EscalationStep.incident_id == incident_id)
                                       .order_by(EscalationStep.rung))).scalars())


def ladder_out(step: EscalationStep) -> dict[str, Any]:
    return {"rung": step.rung, "after_minutes": step.after_minutes, "notify": step.notify, "message": step.message,
            "status": step.status, "due_at": step.due_at, "fired_at": step.fired_at, "ended_at": step.ended_at}


# ---------------------------------------------------------------- firing

async def claim_due(session: AsyncSession, at: datetime, limit: int | None = None) -> list[int]:
    """Mark due rungs fired and return their ids. On PostgreSQL the inner SELECT takes row locks with
    SKIP LOCKED, so a second process never claims the same rung; on SQLite the single UPDATE statement
    holds the one write lock, and the status guard makes a second claim find nothing."""
    due = (select(EscalationStep.id).where(EscalationStep.status == "pending", EscalationStep.due_at <= at)
           .order_by(EscalationStep.due_at, EscalationStep.id).limit(limit or BATCH))
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    result = await session.execute(
        update(EscalationStep).where(EscalationStep.id.in_(due.scalar_subquery()), EscalationStep.status == "pending")
        .values(status="fired", fired_at=at).returning(EscalationStep.id))
    return list(result.scalars())


async def fire_due(app: Any) -> int:
    """Fire every due rung once: notify its roles (inbox + push outbox) and write the timeline, all in the
    same transaction as the claim, so a crash either fires a rung completely or not at all."""
    state = getattr(app, "state", app)
    async with state.sessionmaker() as session:
        at = await now(state, session)
        ids = await claim_due(session, at)
        if not ids:
            await session.rollback()
            return 0
        steps = list((await session.execute(select(EscalationStep).where(EscalationStep.id.in_(ids))
                                            .order_by(EscalationStep.due_at, EscalationStep.rung))).scalars())
        for step in steps:
            incident = await session.get(incidents.Incident, step.incident_id)
            title = {"zh-CN": f"升级：{incident.title['zh-CN']}（{step.after_minutes}分钟）",
                     "en": f"Escalation: {incident.title['en']} ({step.after_minutes} min)"}
            sent = await push.notify(session, step.site_id, step.notify, title, step.message,
                                     incident_id=incident.id, kind="escalation", urgency="high", at=at)
            following = next((s for s in await ladder(session, incident.id) if s.status == "pending"), None)
            await incidents.add_event(session, incident.id, "escalation_fired", None, {
                "rung": step.rung, "after_minutes": step.after_minutes, "notify": step.notify,
                "message": step.message, "due_at": step.due_at.isoformat(),
                "late_seconds": round((at - step.due_at).total_seconds(), 3),
                "recipients": sent["users"], "deliveries": sent["deliveries"],
                "next_due_at": following.due_at.isoformat() if following else None}, at=at)
        await session.commit()
        return len(steps)


async def worker(app: Any) -> None:
    """Runs for the app's lifetime: fire due rungs, sleep when there are none."""
    while True:
        try:
            fired = await fire_due(app)
        except asyncio.CancelledError:
            raise
        except Exception:  # a DB hiccup must not end the worker; try again next round
            log.exception("escalation worker round failed")
            fired = 0
        if not fired:
            await asyncio.sleep(await _idle_wait(app))


async def _idle_wait(app: Any) -> float:
    """Sleep until the next pending rung is due, never longer than the poll interval: polling alone would
    fire a rung up to a whole interval late."""
    interval = worker_interval(app.state)
    try:
        async with app.state.sessionmaker() as session:
            at = await now(app, session)
            due = (await session.execute(select(func.min(EscalationStep.due_at))
                                         .where(EscalationStep.status == "pending"))).scalar_one_or_none()
    except Exception:  # a DB hiccup: fall back to plain polling
        log.exception("escalation worker could not read the next due time")
        return interval
    if due is None:
        return interval
    return min(interval, max((due - at).total_seconds(), 0.02))


workers = [worker]
