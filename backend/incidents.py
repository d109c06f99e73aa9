"""Incidents declared from a playbook: status, notes, step ticks, the timeline, and the site's alert level.

Status: open -> acknowledged (a manager has it) -> recovered (systems back) -> resolved (closed).
Acknowledging may be skipped; any unresolved incident can be resolved.

The playbook (steps, ladder, titles) and its version are frozen into the incident when it is declared,
so later playbook edits never change a running incident.

For other modules (plain functions, no HTTP):
- `await add_event(session, incident_id, kind, actor_id, data, at=None)` appends to the timeline.
- `await timeline(session, incident_id, after=0)` -> [{"id", "at", "kind", "actor": {"id", "name"} | None,
  "data": {...}}] oldest first. Kinds are listed in EVENT_KINDS.
- `Incident` rows: status, drill / time_scale, declared_at, acknowledged_at, recovered_at, resolved_at.
- Escalation rungs: `backend.escalation.EscalationStep` (status pending|fired|stopped|cancelled, due_at,
  fired_at, ended_at); notifications: `backend.push.notify(...)`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Router, get, post
from litestar.params import Parameter
from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from . import documents, escalation, push
from .auth import RANK, CurrentUser, User, requires
from .db import Base, UTCDateTime, db_now, insert_for
from .errors import Problem

STATUSES = ("open", "acknowledged", "recovered", "resolved")
ACTIVE = ("open", "acknowledged", "recovered")
# Timeline event kinds and what their `data` holds:
EVENT_KINDS = {
    "declared": "playbook, version, drill, time_scale, note, source ('manual' | 'metrics')",
    "note": "text",
    "step_ticked": "step, done (bool)",
    "escalation_fired": "rung, after_minutes, notify (roles), message, due_at, late_seconds, recipients, deliveries",
    "notification_sent": "delivery, user_id, user (name), status, attempt (a push service accepted it)",
    "notification_failed": "delivery, user_id, user, status, error, attempt, retry_at (None: given up)",
    "notification_gone": "delivery, user_id, user, status (404/410: the subscription was removed)",
    "notification_delivered": "delivery, user_id, user (the device's service worker received it)",
    "acknowledged": "rungs_stopped, deliveries_cancelled, seconds_to_ack",
    "recovered": "note, rungs_stopped",
    "resolved": "note, rungs_cancelled, deliveries_cancelled",
    "level_changed": "from, to, answer_rate, queue_length, system_failure",
    "reserve_called": "tier (1-3), level",
}


# ---------------------------------------------------------------- models

class Incident(Base):
    __tablename__ = "incidents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    playbook: Mapped[str] = mapped_column(String(64))
    playbook_version: Mapped[int] = mapped_column(Integer)
    title: Mapped[dict] = mapped_column(JSON)  # {"zh-CN", "en"}
    definition: Mapped[dict] = mapped_column(JSON)  # the playbook as it was when declared
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    drill: Mapped[bool] = mapped_column(Boolean, default=False)
    time_scale: Mapped[int] = mapped_column(Integer, default=1)
    source: Mapped[str] = mapped_column(String(16), default="manual")  # manual | metrics
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    declared_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    declared_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    recovered_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    recovered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class IncidentEvent(Base):
    """The timeline: append-only, ordered by id."""

    __tablename__ = "incident_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    data: Mapped[dict] = mapped_column(JSON, default=dict)


class StepTick(Base):
    """A playbook step done: who ticked it and when."""

    __tablename__ = "incident_step_ticks"
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True)
    step_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ticked_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    ticked_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AlertState(Base):
    """A site's current alert level (from the answer rate) and the surge incident it belongs to."""

    __tablename__ = "alert_states"
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), primary_key=True)
    level: Mapped[str] = mapped_column(String(16), default="normal")
    answer_rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    queue_length: Mapped[int | None] = mapped_column(Integer, nullable=True)
    system_failure: Mapped[bool] = mapped_column(Boolean, default=False)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id", ondelete="SET NULL"), nullable=True)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)


class MetricSample(Base):
    """Every answer-rate report, for the incident report's 'how long was the hotline degraded'."""

    __tablename__ = "metric_samples"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    answer_rate: Mapped[float] = mapped_column(Float)
    queue_length: Mapped[int] = mapped_column(Integer)
    offered: Mapped[int | None] = mapped_column(Integer, nullable=True)
    answered: Mapped[int | None] = mapped_column(Integer, nullable=True)
    system_failure: Mapped[bool] = mapped_column(Boolean, default=False)
    level: Mapped[str] = mapped_column(String(16))
    posted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)


# ---------------------------------------------------------------- functions for other modules

async def add_event(session: AsyncSession, incident_id: int, kind: str, actor_id: int | None,
                    data: dict[str, Any] | None = None, *, at: datetime | None = None) -> IncidentEvent:
    """Append one event to an incident's timeline (the caller commits)."""
    event = IncidentEvent(incident_id=incident_id, kind=kind, actor_id=actor_id, data=data or {},
                          at=at or await db_now(session))
    session.add(event)
    await session.flush()
    return event


async def timeline(session: AsyncSession, incident_id: int, after: int = 0, limit: int = 1000) -> list[dict]:
    rows = await session.execute(
        select(IncidentEvent, User.display_name).outerjoin(User, User.id == IncidentEvent.actor_id)
        .where(IncidentEvent.incident_id == incident_id, IncidentEvent.id > after)
        .order_by(IncidentEvent.id).limit(limit))
    return [{"id": e.id, "at": e.at, "kind": e.kind,
             "actor": {"id": e.actor_id, "name": name} if e.actor_id else None, "data": e.data}
            for e, name in rows.all()]


async def _feed(session: AsyncSession, incident: Incident, user_id: int | None) -> None:
    """Tell devices through the records change feed (if that module is there) that an incident changed."""
    try:
        from .records import add_change  # type: ignore[attr-defined]
    except ImportError:
        return
    await add_change(session, incident.site_id, "incident", str(incident.id),
                     {"id": incident.id, "status": incident.status, "playbook": incident.playbook,
                      "title": incident.title, "drill": incident.drill}, user_id=user_id)


MESSAGES = {
    "declared": ({"zh-CN": "新事件：{title}", "en": "New incident: {title}"},
                 {"zh-CN": "{who} 启动了预案。{note}", "en": "{who} started the playbook. {note}"}),
    "acknowledged": ({"zh-CN": "已确认：{title}", "en": "Acknowledged: {title}"},
                     {"zh-CN": "{who} 已确认并接手，后续升级已停止。", "en": "{who} has it; later escalations are stopped."}),
    "recovered": ({"zh-CN": "已恢复：{title}", "en": "Recovered: {title}"},
                  {"zh-CN": "{who} 标记系统已恢复。请录入手工记录并安排回拨。",
                   "en": "{who} marked systems as back. Enter the manual records and make the callbacks."}),
    "resolved": ({"zh-CN": "已结束：{title}", "en": "Resolved: {title}"},
                 {"zh-CN": "{who} 结束了事件。", "en": "{who} closed the incident."}),
}


def _texts(kind: str, incident: Incident, who: str, note: str | None = None) -> tuple[dict, dict]:
    title, body = MESSAGES[kind]
    return ({lang: title[lang].format(title=incident.title[lang]) for lang in title},
            {lang: body[lang].format(who=who, note=note or "").strip() for lang in body})


async def declare(session: AsyncSession, site_id: int, playbook: str, actor: CurrentUser | None, at: datetime, *,
                  note: str | None = None, time_scale: int | None = None, source: str = "manual") -> Incident:
    """Declare an incident from the newest version of a site's playbook; schedules its ladder."""
    document = await documents.get_document(session, site_id, "playbook", playbook)
    if document is None:
        raise Problem(422, f"There is no playbook {playbook!r} at your site.", errors={"playbook": "unknown playbook"})
    definition = document.definition
    incident = Incident(site_id=site_id, playbook=playbook, playbook_version=document.version,
                        title=definition["title"], definition=definition, status="open",
                        drill=time_scale is not None, time_scale=time_scale or 1, source=source, note=note,
                        declared_by=actor.id if actor else None, declared_at=at)
    session.add(incident)
    await session.flush()
    escalation.schedule(session, incident)
    await add_event(session, incident.id, "declared", actor.id if actor else None, {
        "playbook": playbook, "version": document.version, "drill": incident.drill,
        "time_scale": incident.time_scale, "note": note, "source": source}, at=at)
    title, body = _texts("declared", incident, actor.display_name if actor else "ACD", note)
    await push.notify(session, site_id, ["lead", "manager"], title, body, incident_id=incident.id, kind="declared",
                      exclude_user_id=actor.id if actor else None, at=at)
    await _feed(session, incident, actor.id if actor else None)
    return incident


# ---------------------------------------------------------------- API bodies

NoteText = Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]


class DrillIn(msgspec.Struct, forbid_unknown_fields=True):
    time_scale: Annotated[int, msgspec.Meta(ge=1, le=10000)]


class DeclareIn(msgspec.Struct, forbid_unknown_fields=True):
    playbook: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    note: Annotated[str, msgspec.Meta(max_length=4000)] | None = None
    drill: DrillIn | None = None


class NoteIn(msgspec.Struct, forbid_unknown_fields=True):
    text: NoteText


class CloseIn(msgspec.Struct, forbid_unknown_fields=True):
    note: Annotated[str, msgspec.Meta(max_length=4000)] | None = None


class TickIn(msgspec.Struct, forbid_unknown_fields=True):
    done: bool = True


class MetricsIn(msgspec.Struct, forbid_unknown_fields=True):
    answer_rate: Annotated[float, msgspec.Meta(ge=0, le=100)]  # percent of offered calls answered
    queue_length: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
    system_failure: bool = False
    offered: Annotated[int, msgspec.Meta(ge=0)] | None = None
    answered: Annotated[int, msgspec.Meta(ge=0)] | None = None


# ---------------------------------------------------------------- output

async def _names(session: AsyncSession, ids: set[int | None]) -> dict[int, str]:
    ids = {i for i in ids if i}
    if not ids:
        return {}
    return dict((await session.execute(select(User.id, User.display_name).where(User.id.in_(ids)))).all())


def _who(names: dict[int, str], user_id: int | None) -> dict | None:
    return {"id": user_id, "name": names.get(user_id, "?")} if user_id else None


def summary_out(incident: Incident, names: dict[int, str], steps: list[Any]) -> dict[str, Any]:
    pending = [s for s in steps if s.status == "pending"]
    return {
        "id": incident.id, "playbook": incident.playbook, "playbook_version": incident.playbook_version,
        "title": incident.title, "status": incident.status, "drill": incident.drill,
        "time_scale": incident.time_scale, "source": incident.source, "note": incident.note,
        "declared_at": incident.declared_at, "declared_by": _who(names, incident.declared_by),
        "acknowledged_at": incident.acknowledged_at, "acknowledged_by": _who(names, incident.acknowledged_by),
        "recovered_at": incident.recovered_at, "recovered_by": _who(names, incident.recovered_by),
        "resolved_at": incident.resolved_at, "resolved_by": _who(names, incident.resolved_by),
        "escalation": {"fired": sum(s.status == "fired" for s in steps), "total": len(steps),
                       "next_due_at": pending[0].due_at if pending else None},
    }


def may_ack(user: CurrentUser, incident: Incident, steps: list[Any]) -> bool:
    """Managers and up, or whoever the latest fired rung notified (e.g. leads on a 60-minute rung)."""
    if incident.status == "resolved":
        return False
    if RANK[user.role] >= RANK["manager"]:
        return True
    fired = [s for s in steps if s.status == "fired"]
    return bool(fired) and user.role in fired[-1].notify


async def detail_out(session: AsyncSession, incident: Incident, user: CurrentUser) -> dict[str, Any]:
    steps = await escalation.ladder(session, incident.id)
    ticks = {t.step_id: t for t in (await session.execute(
        select(StepTick).where(StepTick.incident_id == incident.id))).scalars()}
    names = await _names(session, {incident.declared_by, incident.acknowledged_by, incident.recovered_by,
                                   incident.resolved_by} | {t.ticked_by for t in ticks.values()})
    definition = incident.definition
    playbook_steps = []
    for step in definition.get("steps", []):
        tick = ticks.get(step["id"])
        within = step.get("within_minutes")
        playbook_steps.append({
            **step, "due_at": escalation.due_at(incident.declared_at, within, incident.time_scale)
            if within else None,
            "done": tick is not None, "ticked_at": tick.ticked_at if tick else None,
            "ticked_by": _who(names, tick.ticked_by) if tick else None})
    lead = RANK[user.role] >= RANK["lead"]
    active = incident.status != "resolved"
    return {
        **summary_out(incident, names, steps),
        "summary": definition.get("summary"), "script": definition.get("script"),
        "contacts": definition.get("contacts", []), "forms": definition.get("forms", []),
        "steps": playbook_steps, "ladder": [escalation.ladder_out(s) for s in steps],
        "can": {"ack": may_ack(user, incident, steps) and incident.acknowledged_at is None,
                "recover": lead and incident.status in ("open", "acknowledged"),
                "resolve": lead and active, "note": lead and active, "timeline": lead,
                "tick": active},
    }


async def _get(session: AsyncSession, user: CurrentUser, incident_id: int) -> Incident:
    incident = await session.get(Incident, incident_id)
    if incident is None or incident.site_id != user.site_id:
        raise Problem(404, f"No incident {incident_id} at your site.")
    return incident


# ---------------------------------------------------------------- routes

Req = Request[CurrentUser, str, Any]


@post("/api/incidents", guards=[requires("lead")], summary="Declare an incident from a playbook (lead+)")
async def declare_incident(request: Req, db: AsyncSession, data: DeclareIn) -> dict[str, Any]:
    at = await escalation.now(request.app, db)
    incident = await declare(db, request.user.site_id, data.playbook, request.user, at, note=data.note,
                             time_scale=data.drill.time_scale if data.drill else None)
    await db.commit()
    return await detail_out(db, incident, request.user)


@get("/api/incidents", summary="Incidents of my site, newest first (?status=active|open|…)")
async def list_incidents(request: Req, db: AsyncSession,
                         status: Annotated[Literal["active", "open", "acknowledged", "recovered", "resolved", "all"],
                                           Parameter(query="status")] = "all",
                         limit: Annotated[int, Parameter(query="limit", ge=1, le=200)] = 50) -> list[dict[str, Any]]:
    query = select(Incident).where(Incident.site_id == request.user.site_id)
    if status == "active":
        query = query.where(Incident.status.in_(ACTIVE))
    elif status != "all":
        query = query.where(Incident.status == status)
    incidents = list((await db.execute(query.order_by(Incident.id.desc()).limit(limit))).scalars())
    if not incidents:
        return []
    ids = [i.id for i in incidents]
    steps: dict[int, list] = {i: [] for i in ids}
    for step in (await db.execute(select(escalation.EscalationStep).where(
            escalation.EscalationStep.incident_id.in_(ids)).order_by(escalation.EscalationStep.rung))).scalars():
        steps[step.incident_id].append(step)
    names = await _names(db, {u for i in incidents for u in (i.declared_by, i.acknowledged_by, i.recovered_by,
                                                             i.resolved_by)})
    return [summary_out(i, names, steps[i.id]) for i in incidents]


@get("/api/incidents/{incident_id:int}", summary="One incident: steps with ticks, the ladder, what I may do")
async def get_incident(request: Req, db: AsyncSession, incident_id: int) -> dict[str, Any]:
    return await detail_out(db, await _get(db, request.user, incident_id), request.user)


@get("/api/incidents/{incident_id:int}/timeline", guards=[requires("lead")],
     summary="The incident's timeline, oldest first; ?after=<event id> for what is new (lead+)")
async def get_timeline(request: Req, db: AsyncSession, incident_id: int,
                       after: Annotated[int, Parameter(query="after", ge=0)] = 0) -> dict[str, Any]:
    incident = await _get(db, request.user, incident_id)
    events = await timeline(db, incident.id, after)
    return {"incident_id": incident.id, "status": incident.status, "drill": incident.drill,
            "events": events, "cursor": events[-1]["id"] if events else after}


@post("/api/incidents/{incident_id:int}/ack", status_code=200,
      summary="Acknowledge: stops the ladder's pending rungs and pending notifications (manager+, or notified roles)")
async def ack_incident(request: Req, db: AsyncSession, incident_id: int) -> dict[str, Any]:
    user = request.user
    incident = await _get(db, user, incident_id)
    if incident.status == "resolved":
        raise Problem(409, "This incident is resolved already.")
    if not may_ack(user, incident, await escalation.ladder(db, incident.id)):
        raise Problem(403, "Only managers, or the roles this incident's escalation has reached, can acknowledge.")
    at = await escalation.now(request.app, db)
    # Only the first acknowledgement counts, even when two managers press at once.
    won = (await db.execute(update(Incident).where(Incident.id == incident.id, Incident.acknowledged_at.is_(None),
                                                   Incident.status != "resolved")
                            .values(acknowledged_at=at, acknowledged_by=user.id,
                                    status=case((Incident.status == "open", "acknowledged"), else_=Incident.status))
                            .execution_options(synchronize_session=False))).rowcount
    if won:
        await db.refresh(incident)
        stopped = await escalation.end_pending(db, incident.id, "stopped", at)
        cancelled = await push.cancel_pending(db, incident.id, at)
        await add_event(db, incident.id, "acknowledged", user.id, {
            "rungs_stopped": stopped, "deliveries_cancelled": cancelled,
            "seconds_to_ack": round((at - incident.declared_at).total_seconds(), 3)}, at=at)
        title, body = _texts("acknowledged", incident, user.display_name)
        await push.notify(db, incident.site_id, ["lead", "manager"], title, body, incident_id=incident.id,
                          kind="acknowledged", exclude_user_id=user.id, at=at)
        await _feed(db, incident, user.id)
        await db.commit()
    return await detail_out(db, incident, user)


@post("/api/incidents/{incident_id:int}/recover", status_code=200, guards=[requires("lead")],
      summary="Mark systems recovered: stops rungs not fired yet (lead+)")
async def recover_incident(request: Req, db: AsyncSession, incident_id: int,
                           data: CloseIn | None = None) -> dict[str, Any]:
    user = request.user
    incident = await _get(db, user, incident_id)
    if incident.status == "resolved":
        raise Problem(409, "This incident is resolved already.")
    at = await escalation.now(request.app, db)
    note = data.note if data else None
    won = (await db.execute(update(Incident).where(Incident.id == incident.id, Incident.status.in_(("open", "acknowledged")))
                            .values(status="recovered", recovered_at=at, recovered_by=user.id)
                            .execution_options(synchronize_session=False))).rowcount
    if won:
        await db.refresh(incident)
        stopped = await escalation.end_pending(db, incident.id, "stopped", at)
        await add_event(db, incident.id, "recovered", user.id, {"note": note, "rungs_stopped": stopped}, at=at)
        title, body = _texts("recovered", incident, user.display_name)
        await push.notify(db, incident.site_id, ["agent", "lead", "manager"], title, body, incident_id=incident.id,
                          kind="recovered", exclude_user_id=user.id, at=at)
        await _feed(db, incident, user.id)
        await db.commit()
    return await detail_out(db, incident, user)


@post("/api/incidents/{incident_id:int}/resolve", status_code=200, guards=[requires("lead")],
      summary="Resolve (close): cancels whatever of the ladder and its notifications is left (lead+)")
async def resolve_incident(request: Req, db: AsyncSession, incident_id: int,
                           data: CloseIn | None = None) -> dict[str, Any]:
    user = request.user
    incident = await _get(db, user, incident_id)
    at = await escalation.now(request.app, db)
    note = data.note if data else None
    won = (await db.execute(update(Incident).where(Incident.id == incident.id, Incident.status != "resolved")
                            .values(status="resolved", resolved_at=at, resolved_by=user.id,
                                    recovered_at=func.coalesce(Incident.recovered_at, at),
                                    recovered_by=func.coalesce(Incident.recovered_by, user.id))
                            .execution_options(synchronize_session=False))).rowcount
    if won:
        await db.refresh(incident)
        cancelled_rungs = await escalation.end_pending(db, incident.id, "cancelled", at)
        cancelled = await push.cancel_pending(db, incident.id, at)
        await add_event(db, incident.id, "resolved", user.id, {
            "note": note, "rungs_cancelled": cancelled_rungs, "deliveries_cancelled": cancelled}, at=at)
        title, body = _texts("resolved", incident, user.display_name)
        await push.notify(db, incident.site_id, ["lead", "manager"], title, body, incident_id=incident.id,
                          kind="resolved", exclude_user_id=user.id, at=at)
        await db.execute(update(AlertState).where(AlertState.incident_id == incident.id).values(incident_id=None))
        await _feed(db, incident, user.id)
        await db.commit()
    return await detail_out(db, incident, user)


@post("/api/incidents/{incident_id:int}/notes", guards=[requires("lead")],
      summary="Add a note to the timeline (lead+)")
async def add_note(request: Req, db: AsyncSession, incident_id: int, data: NoteIn) -> dict[str, Any]:
    incident = await _get(db, request.user, incident_id)
    if incident.status == "resolved":
        raise Problem(409, "This incident is resolved; notes are closed.")
    at = await escalation.now(request.app, db)
    event = await add_event(db, incident.id, "note", request.user.id, {"text": data.text.strip()}, at=at)
    await db.commit()
    return (await timeline(db, incident.id, event.id - 1, limit=1))[0]


@post("/api/incidents/{incident_id:int}/steps/{step_id:str}", status_code=200,
      summary="Tick (or untick with done=false) a playbook step; agents tick agent steps, leads any")
async def tick_step(request: Req, db: AsyncSession, incident_id: int, step_id: str,
                    data: TickIn | None = None) -> dict[str, Any]:
    user = request.user
    incident = await _get(db, user, incident_id)
    step = next((s for s in incident.definition.get("steps", []) if s["id"] == step_id), None)
    if step is None:
        raise Problem(404, f"This incident's playbook has no step {step_id!r}.")
    if incident.status == "resolved":
        raise Problem(409, "This incident is resolved; its steps can no longer change.")
    if RANK[user.role] < RANK["lead"] and step["who"] != "agent":
        raise Problem(403, "Only leads and managers can tick this step.")
    done = data.done if data else True
    at = await escalation.now(request.app, db)
    existing = await db.get(StepTick, (incident.id, step_id))
    if done and existing is None:
        await db.execute(insert_for(db, StepTick).values(incident_id=incident.id, step_id=step_id,
                                                         ticked_by=user.id, ticked_at=at)
                         .on_conflict_do_nothing())
        await add_event(db, incident.id, "step_ticked", user.id, {"step": step_id, "done": True}, at=at)
    elif not done and existing is not None:
        await db.delete(existing)
        await add_event(db, incident.id, "step_ticked", user.id, {"step": step_id, "done": False}, at=at)
    await db.commit()
    return await detail_out(db, incident, user)


# ---------------------------------------------------------------- alert levels

LEVELS = ("normal", "yellow", "orange", "red")
TIER = {"yellow": 1, "orange": 2, "red": 3}
LEVEL_NAMES = {"normal": {"zh-CN": "正常", "en": "normal"}, "yellow": {"zh-CN": "黄色", "en": "yellow"},
               "orange": {"zh-CN": "橙色", "en": "orange"}, "red": {"zh-CN": "红色", "en": "red"}}
TIER_TEXT = {1: {"zh-CN": "一级后备上线：所有在岗人员接呼入", "en": "tier-1 reserves online: everyone on site takes inbound"},
             2: {"zh-CN": "二级后备上线：召回备班人员，切换备用线路",
                 "en": "tier-2 reserves: call in standby staff, switch to backup lines"},
             3: {"zh-CN": "三级后备和灾备场地启用，应急指挥组全员到岗",
                 "en": "tier-3 reserves and the disaster-recovery site; the command group on duty"}}


def level_for(answer_rate: float, system_failure: bool = False) -> str:
    """Red below 80 % (or a system failure), orange 80-85 %, yellow 85-90 %, normal from 90 %."""
    if system_failure or answer_rate < 80:
        return "red"
    if answer_rate < 85:
        return "orange"
    if answer_rate < 90:
        return "yellow"
    return "normal"


def level_out(state: AlertState | None) -> dict[str, Any]:
    if state is None:
        return {"level": "normal", "answer_rate": None, "queue_length": None, "system_failure": False,
                "incident_id": None, "updated_at": None, "tier": 0}
    return {"level": state.level, "answer_rate": state.answer_rate, "queue_length": state.queue_length,
            "system_failure": state.system_failure, "incident_id": state.incident_id, "updated_at": state.updated_at,
            "tier": TIER.get(state.level, 0)}


@post("/api/metrics", status_code=200, guards=[requires("lead")],
      summary="Report the answer rate and queue: raises or lowers the alert level, opens a surge incident (lead+)")
async def post_metrics(request: Req, db: AsyncSession, data: MetricsIn) -> dict[str, Any]:
    user = request.user
    at = await escalation.now(request.app, db)
    level = level_for(data.answer_rate, data.system_failure)
    db.add(MetricSample(site_id=user.site_id, at=at, answer_rate=data.answer_rate, queue_length=data.queue_length,
                        offered=data.offered, answered=data.answered, system_failure=data.system_failure,
                        level=level, posted_by=user.id))
    # One row per site, locked while we decide, so two reports at once cannot both open a surge incident.
    await db.execute(insert_for(db, AlertState).values(site_id=user.site_id, level="normal",
                                                       system_failure=False).on_conflict_do_nothing())
    state = (await db.execute(select(AlertState).where(AlertState.site_id == user.site_id)
                              .with_for_update())).scalar_one()
    previous = state.level
    state.answer_rate, state.queue_length, state.system_failure = data.answer_rate, data.queue_length, data.system_failure
    state.updated_at, state.updated_by, state.level = at, user.id, level
    tiers: list[int] = []
    incident: Incident | None = None
    if state.incident_id:
        incident = await db.get(Incident, state.incident_id)
        if incident is not None and incident.status not in ("open", "acknowledged"):
            incident = None
    rising = LEVELS.index(level) > LEVELS.index(previous)
    if rising:
        if incident is None:
            incident = (await db.execute(select(Incident).where(
                Incident.site_id == user.site_id, Incident.playbook == "call-surge", Incident.drill.is_(False),
                Incident.status.in_(("open", "acknowledged"))).order_by(Incident.id.desc()).limit(1))).scalar_one_or_none()
        if incident is None:
            incident = await declare(db, user.site_id, "call-surge", user, at, source="metrics",
                                     note=f"接通率 {data.answer_rate:g}%，排队 {data.queue_length} "
                                          f"(answer rate {data.answer_rate:g} %, queue {data.queue_length})")
        tiers = list(range(TIER.get(previous, 0) + 1, TIER[level] + 1))
    state.incident_id = incident.id if incident else None
    if level != previous and incident is not None:
        await add_event(db, incident.id, "level_changed", user.id, {
            "from": previous, "to": level, "answer_rate": data.answer_rate, "queue_length": data.queue_length,
            "system_failure": data.system_failure}, at=at)
        for tier in tiers:
            await add_event(db, incident.id, "reserve_called", user.id, {"tier": tier, "level": level}, at=at)
        name = LEVEL_NAMES[level]
        if rising:
            title = {"zh-CN": f"预警升级：{name['zh-CN']}（接通率 {data.answer_rate:g}%）",
                     "en": f"Alert raised to {name['en']} (answer rate {data.answer_rate:g} %)"}
            body = {lang: sep.join(TIER_TEXT[t][lang] for t in tiers) for lang, sep in (("zh-CN", "；"), ("en", "; "))}
        else:
            title = {"zh-CN": f"预警下调：{name['zh-CN']}（接通率 {data.answer_rate:g}%）",
                     "en": f"Alert lowered to {name['en']} (answer rate {data.answer_rate:g} %)"}
            body = {"zh-CN": f"排队 {data.queue_length}。", "en": f"Queue {data.queue_length}."}
        await push.notify(db, user.site_id, ["lead", "manager"], title, body, incident_id=incident.id,
                          kind="alert_level", urgency="high" if rising else "normal", at=at)
    await db.commit()
    return {**level_out(state), "previous": previous, "changed": level != previous, "tiers_called": tiers}


@get("/api/metrics/level", summary="My site's current alert level")
async def get_level(request: Req, db: AsyncSession) -> dict[str, Any]:
    return level_out(await db.get(AlertState, request.user.site_id))


router = Router(path="/", tags=["incidents"], route_handlers=[
    declare_incident, list_incidents, get_incident, get_timeline, ack_incident, recover_incident, resolve_incident,
    add_note, tick_step, post_metrics, get_level])
