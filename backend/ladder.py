"""An incident's escalation ladder: one state row per rung of the (frozen) ladder, made when the incident is
declared. The escalation engine (backend.escalation) fires the due ones.

Rung states: pending -> fired (its roles were notified) | stopped (acknowledged / recovered first)
| cancelled (resolved first).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, UTCDateTime, affected


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
    rows = [
        EscalationStep(
            incident_id=incident.id,
            site_id=incident.site_id,
            rung=i,
            after_minutes=rung["after_minutes"],
            notify=list(rung["notify"]),
            message=rung["message"],
            status="pending",
            due_at=due_at(incident.declared_at, rung["after_minutes"], incident.time_scale),
        )
        for i, rung in enumerate(incident.definition.get("escalation", []))
    ]
    session.add_all(rows)
    return rows


async def end_pending(session: AsyncSession, incident_id: int, status: str, at: datetime) -> int:
    """Stop ('stopped', on ack/recovery) or cancel ('cancelled', on resolve) every rung not fired yet."""
    result = await session.execute(
        update(EscalationStep)
        .where(EscalationStep.incident_id == incident_id, EscalationStep.status == "pending")
        .values(status=status, ended_at=at)
    )
    return affected(result)


async def ladder(session: AsyncSession, incident_id: int) -> list[EscalationStep]:
    return list(
        (
            await session.execute(
                select(EscalationStep)
                .where(EscalationStep.incident_id == incident_id)
                .order_by(EscalationStep.rung)
            )
        ).scalars()
    )


def ladder_out(step: EscalationStep) -> dict[str, Any]:
    return {
        "rung": step.rung,
        "after_minutes": step.after_minutes,
        "notify": step.notify,
        "message": step.message,
        "status": step.status,
        "due_at": step.due_at,
        "fired_at": step.fired_at,
        "ended_at": step.ended_at,
    }
