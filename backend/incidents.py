"""Incidents declared from a playbook: status, notes, step ticks, and what each role may do next.

Status: open -> acknowledged (a manager has it) -> recovered (systems back) -> resolved (closed).
Acknowledging may be skipped; any unresolved incident can be resolved.

The playbook (steps, ladder, titles) and its version are frozen into the incident when it is declared,
so later playbook edits never change a running incident. Declaring schedules the ladder (backend.ladder);
acknowledging or recovering stops its pending rungs, resolving cancels them and any notification not sent yet.
Everything lands on the timeline (backend.timeline).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Router, get, post
from litestar.params import Parameter
from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from . import clock, documents, ladder
from .auth import RANK, CurrentUser, User, requires
from .changes import add_change
from .db import Base, UTCDateTime, affected, get_for_site, insert_for
from .errors import Problem
from .ladder import EscalationStep
from .notifications import notify
from .outbox import cancel_pending
from .timeline import add_event, timeline

STATUSES = ("open", "acknowledged", "recovered", "resolved")
ACTIVE = ("open", "acknowledged", "recovered")


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


class StepTick(Base):
    """A playbook step done: who ticked it and when."""

    __tablename__ = "incident_step_ticks"
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True)
    step_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ticked_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    ticked_at: Mapped[datetime] = mapped_column(UTCDateTime)


# ---------------------------------------------------------------- declaring


async def _feed(session: AsyncSession, incident: Incident, user_id: int | None) -> None:
    """Tell devices through the change feed that an incident changed."""
    await add_change(
        session,
        incident.site_id,
        "incident",
        str(incident.id),
        {
            "id": incident.id,
            "status": incident.status,
            "playbook": incident.playbook,
            "title": incident.title,
            "drill": incident.drill,
        },
        user_id=user_id,
    )


MESSAGES = {
    "declared": (
        {"zh-CN": "新事件：{title}", "en": "New incident: {title}"},
        {"zh-CN": "{who} 启动了预案。{note}", "en": "{who} started the playbook. {note}"},
    ),
    "acknowledged": (
        {"zh-CN": "已确认：{title}", "en": "Acknowledged: {title}"},
        {
            "zh-CN": "{who} 已确认并接手，后续升级已停止。",
            "en": "{who} has it; later escalations are stopped.",
        },
    ),
    "recovered": (
        {"zh-CN": "已恢复：{title}", "en": "Recovered: {title}"},
        {
            "zh-CN": "{who} 标记系统已恢复。请录入手工记录并安排回拨。",
            "en": "{who} marked systems as back. Enter the manual records and make the callbacks.",
        },
    ),
    "resolved": (
        {"zh-CN": "已结束：{title}", "en": "Resolved: {title}"},
        {"zh-CN": "{who} 结束了事件。", "en": "{who} closed the incident."},
    ),
}


def _texts(kind: str, incident: Incident, who: str, note: str | None = None) -> tuple[dict, dict]:
    title, body = MESSAGES[kind]
    return (
        {lang: title[lang].format(title=incident.title[lang]) for lang in title},
        {lang: body[lang].format(who=who, note=note or "").strip() for lang in body},
    )


async def declare(
    session: AsyncSession,
    site_id: int,
    playbook: str,
    actor: CurrentUser | None,
    at: datetime,
    *,
    note: str | None = None,
    time_scale: int | None = None,
    source: str = "manual",
) -> Incident:
    """Declare an incident from the newest version of a site's playbook; schedules its ladder."""
    document = await documents.get_document(session, site_id, "playbook", playbook)
    if document is None:
        raise Problem(
            422, f"There is no playbook {playbook!r} at your site.", errors={"playbook": "unknown playbook"}
        )
    definition = document.definition
    incident = Incident(
        site_id=site_id,
        playbook=playbook,
        playbook_version=document.version,
        title=definition["title"],
        definition=definition,
        status="open",
        drill=time_scale is not None,
        time_scale=time_scale or 1,
        source=source,
        note=note,
        declared_by=actor.id if actor else None,
        declared_at=at,
    )
    session.add(incident)
    await session.flush()
    ladder.schedule(session, incident)
    await add_event(
        session,
        incident.id,
        "declared",
        actor.id if actor else None,
        {
            "playbook": playbook,
            "version": document.version,
            "drill": incident.drill,
            "time_scale": incident.time_scale,
            "note": note,
            "source": source,
        },
        at=at,
    )
    title, body = _texts("declared", incident, actor.display_name if actor else "ACD", note)
    await notify(
        session,
        site_id,
        ["lead", "manager"],
        title,
        body,
        incident_id=incident.id,
        kind="declared",
        exclude_user_id=actor.id if actor else None,
        at=at,
        drill=incident.drill,
    )
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
        "id": incident.id,
        "playbook": incident.playbook,
        "playbook_version": incident.playbook_version,
        "title": incident.title,
        "status": incident.status,
        "drill": incident.drill,
        "time_scale": incident.time_scale,
        "source": incident.source,
        "note": incident.note,
        "declared_at": incident.declared_at,
        "declared_by": _who(names, incident.declared_by),
        "acknowledged_at": incident.acknowledged_at,
        "acknowledged_by": _who(names, incident.acknowledged_by),
        "recovered_at": incident.recovered_at,
        "recovered_by": _who(names, incident.recovered_by),
        "resolved_at": incident.resolved_at,
        "resolved_by": _who(names, incident.resolved_by),
        "escalation": {
            "fired": sum(s.status == "fired" for s in steps),
            "total": len(steps),
            "next_due_at": pending[0].due_at if pending else None,
        },
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
    steps = await ladder.ladder(session, incident.id)
    ticks = {
        t.step_id: t
        for t in (
            await session.execute(select(StepTick).where(StepTick.incident_id == incident.id))
        ).scalars()
    }
    names = await _names(
        session,
        {incident.declared_by, incident.acknowledged_by, incident.recovered_by, incident.resolved_by}
        | {t.ticked_by for t in ticks.values()},
    )
    definition = incident.definition
    playbook_steps = []
    for step in definition.get("steps", []):
        tick = ticks.get(step["id"])
        within = step.get("within_minutes")
        playbook_steps.append(
            {
                **step,
                "due_at": ladder.due_at(incident.declared_at, within, incident.time_scale)
                if within
                else None,
                "done": tick is not None,
                "ticked_at": tick.ticked_at if tick else None,
                "ticked_by": _who(names, tick.ticked_by) if tick else None,
            }
        )
    lead = RANK[user.role] >= RANK["lead"]
    active = incident.status != "resolved"
    return {
        **summary_out(incident, names, steps),
        "summary": definition.get("summary"),
        "script": definition.get("script"),
        "contacts": definition.get("contacts", []),
        "forms": definition.get("forms", []),
        "steps": playbook_steps,
        "ladder": [ladder.ladder_out(s) for s in steps],
        "can": {
            "ack": may_ack(user, incident, steps) and incident.acknowledged_at is None,
            "recover": lead and incident.status in ("open", "acknowledged"),
            "resolve": lead and active,
            "note": lead and active,
            "timeline": lead,
            "tick": active,
        },
    }


async def _get(session: AsyncSession, user: CurrentUser, incident_id: int) -> Incident:
    return await get_for_site(session, Incident, incident_id, user.site_id, "incident")


# ---------------------------------------------------------------- routes

Req = Request[CurrentUser, str, Any]


@post("/api/incidents", guards=[requires("lead")], summary="Declare an incident from a playbook (lead+)")
async def declare_incident(request: Req, db: AsyncSession, data: DeclareIn) -> dict[str, Any]:
    at = await clock.now(request.app, db)
    incident = await declare(
        db,
        request.user.site_id,
        data.playbook,
        request.user,
        at,
        note=data.note,
        time_scale=data.drill.time_scale if data.drill else None,
    )
    return await detail_out(db, incident, request.user)


@get("/api/incidents", summary="Incidents of my site, newest first (?status=active|open|…)")
async def list_incidents(
    request: Req,
    db: AsyncSession,
    status: Annotated[
        Literal["active", "open", "acknowledged", "recovered", "resolved", "all"], Parameter(query="status")
    ] = "all",
    limit: Annotated[int, Parameter(query="limit", ge=1, le=200)] = 50,
) -> list[dict[str, Any]]:
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
    for step in (
        await db.execute(
            select(EscalationStep).where(EscalationStep.incident_id.in_(ids)).order_by(EscalationStep.rung)
        )
    ).scalars():
        steps[step.incident_id].append(step)
    names = await _names(
        db, {u for i in incidents for u in (i.declared_by, i.acknowledged_by, i.recovered_by, i.resolved_by)}
    )
    return [summary_out(i, names, steps[i.id]) for i in incidents]


@get("/api/incidents/{incident_id:int}", summary="One incident: steps with ticks, the ladder, what I may do")
async def get_incident(request: Req, db: AsyncSession, incident_id: int) -> dict[str, Any]:
    return await detail_out(db, await _get(db, request.user, incident_id), request.user)


@get(
    "/api/incidents/{incident_id:int}/timeline",
    guards=[requires("lead")],
    summary="The incident's timeline, oldest first; ?after=<event id> for what is new (lead+)",
)
async def get_timeline(
    request: Req,
    db: AsyncSession,
    incident_id: int,
    after: Annotated[int, Parameter(query="after", ge=0)] = 0,
) -> dict[str, Any]:
    incident = await _get(db, request.user, incident_id)
    events = await timeline(db, incident.id, after)
    return {
        "incident_id": incident.id,
        "status": incident.status,
        "drill": incident.drill,
        "events": events,
        "cursor": events[-1]["id"] if events else after,
    }


@post(
    "/api/incidents/{incident_id:int}/ack",
    status_code=200,
    summary="Acknowledge: stops the ladder's pending rungs and pending notifications (manager+, or notified roles)",
)
async def ack_incident(request: Req, db: AsyncSession, incident_id: int) -> dict[str, Any]:
    user = request.user
    incident = await _get(db, user, incident_id)
    if incident.status == "resolved":
        raise Problem(409, "This incident is resolved already.")
    if not may_ack(user, incident, await ladder.ladder(db, incident.id)):
        raise Problem(
            403, "Only managers, or the roles this incident's escalation has reached, can acknowledge."
        )
    at = await clock.now(request.app, db)
    # Only the first acknowledgement counts, even when two managers press at once.
    won = affected(
        await db.execute(
            update(Incident)
            .where(
                Incident.id == incident.id, Incident.acknowledged_at.is_(None), Incident.status != "resolved"
            )
            .values(
                acknowledged_at=at,
                acknowledged_by=user.id,
                status=case((Incident.status == "open", "acknowledged"), else_=Incident.status),
            )
            .execution_options(synchronize_session=False)
        )
    )
    if won:
        await db.refresh(incident)
        stopped = await ladder.end_pending(db, incident.id, "stopped", at)
        cancelled = await cancel_pending(db, incident.id, at)
        await add_event(
            db,
            incident.id,
            "acknowledged",
            user.id,
            {
                "rungs_stopped": stopped,
                "deliveries_cancelled": cancelled,
                "seconds_to_ack": round((at - incident.declared_at).total_seconds(), 3),
            },
            at=at,
        )
        title, body = _texts("acknowledged", incident, user.display_name)
        await notify(
            db,
            incident.site_id,
            ["lead", "manager"],
            title,
            body,
            incident_id=incident.id,
            kind="acknowledged",
            exclude_user_id=user.id,
            at=at,
            drill=incident.drill,
        )
        await _feed(db, incident, user.id)
    return await detail_out(db, incident, user)


@post(
    "/api/incidents/{incident_id:int}/recover",
    status_code=200,
    guards=[requires("lead")],
    summary="Mark systems recovered: stops rungs not fired yet (lead+)",
)
async def recover_incident(
    request: Req, db: AsyncSession, incident_id: int, data: CloseIn | None = None
) -> dict[str, Any]:
    user = request.user
    incident = await _get(db, user, incident_id)
    if incident.status == "resolved":
        raise Problem(409, "This incident is resolved already.")
    at = await clock.now(request.app, db)
    note = data.note if data else None
    won = affected(
        await db.execute(
            update(Incident)
            .where(Incident.id == incident.id, Incident.status.in_(("open", "acknowledged")))
            .values(status="recovered", recovered_at=at, recovered_by=user.id)
            .execution_options(synchronize_session=False)
        )
    )
    if won:
        await db.refresh(incident)
        stopped = await ladder.end_pending(db, incident.id, "stopped", at)
        await add_event(
            db, incident.id, "recovered", user.id, {"note": note, "rungs_stopped": stopped}, at=at
        )
        title, body = _texts("recovered", incident, user.display_name)
        await notify(
            db,
            incident.site_id,
            ["agent", "lead", "manager"],
            title,
            body,
            incident_id=incident.id,
            kind="recovered",
            exclude_user_id=user.id,
            at=at,
            drill=incident.drill,
        )
        await _feed(db, incident, user.id)
    return await detail_out(db, incident, user)


@post(
    "/api/incidents/{incident_id:int}/resolve",
    status_code=200,
    guards=[requires("lead")],
    summary="Resolve (close): cancels whatever of the ladder and its notifications is left (lead+)",
)
async def resolve_incident(
    request: Req, db: AsyncSession, incident_id: int, data: CloseIn | None = None
) -> dict[str, Any]:
    user = request.user
    incident = await _get(db, user, incident_id)
    at = await clock.now(request.app, db)
    note = data.note if data else None
    won = affected(
        await db.execute(
            update(Incident)
            .where(Incident.id == incident.id, Incident.status != "resolved")
            .values(
                status="resolved",
                resolved_at=at,
                resolved_by=user.id,
                recovered_at=func.coalesce(Incident.recovered_at, at),
                recovered_by=func.coalesce(Incident.recovered_by, user.id),
            )
            .execution_options(synchronize_session=False)
        )
    )
    if won:
        await db.refresh(incident)
        cancelled_rungs = await ladder.end_pending(db, incident.id, "cancelled", at)
        cancelled = await cancel_pending(db, incident.id, at)
        await add_event(
            db,
            incident.id,
            "resolved",
            user.id,
            {"note": note, "rungs_cancelled": cancelled_rungs, "deliveries_cancelled": cancelled},
            at=at,
        )
        title, body = _texts("resolved", incident, user.display_name)
        await notify(
            db,
            incident.site_id,
            ["lead", "manager"],
            title,
            body,
            incident_id=incident.id,
            kind="resolved",
            exclude_user_id=user.id,
            at=at,
            drill=incident.drill,
        )
        await _feed(db, incident, user.id)
    return await detail_out(db, incident, user)


@post(
    "/api/incidents/{incident_id:int}/notes",
    guards=[requires("lead")],
    summary="Add a note to the timeline (lead+)",
)
async def add_note(request: Req, db: AsyncSession, incident_id: int, data: NoteIn) -> dict[str, Any]:
    incident = await _get(db, request.user, incident_id)
    if incident.status == "resolved":
        raise Problem(409, "This incident is resolved; notes are closed.")
    at = await clock.now(request.app, db)
    event = await add_event(db, incident.id, "note", request.user.id, {"text": data.text.strip()}, at=at)
    return (await timeline(db, incident.id, event.id - 1, limit=1))[0]


@post(
    "/api/incidents/{incident_id:int}/steps/{step_id:str}",
    status_code=200,
    summary="Tick (or untick with done=false) a playbook step; agents tick agent steps, leads any",
)
async def tick_step(
    request: Req, db: AsyncSession, incident_id: int, step_id: str, data: TickIn | None = None
) -> dict[str, Any]:
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
    at = await clock.now(request.app, db)
    existing = await db.get(StepTick, (incident.id, step_id))
    if done and existing is None:
        await db.execute(
            insert_for(db, StepTick)
            .values(incident_id=incident.id, step_id=step_id, ticked_by=user.id, ticked_at=at)
            .on_conflict_do_nothing()
        )
        await add_event(db, incident.id, "step_ticked", user.id, {"step": step_id, "done": True}, at=at)
    elif not done and existing is not None:
        await db.delete(existing)
        await add_event(db, incident.id, "step_ticked", user.id, {"step": step_id, "done": False}, at=at)
    return await detail_out(db, incident, user)


router = Router(
    path="/",
    tags=["incidents"],
    route_handlers=[
        declare_incident,
        list_incidents,
        get_incident,
        get_timeline,
        ack_incident,
        recover_incident,
        resolve_incident,
        add_note,
        tick_step,
    ],
)
