"""Incidents declared from a playbook: status, notes, and what each role sees and may do next.

Status: open -> acknowledged -> recovered -> resolved (backend.lifecycle); acknowledging may be skipped.
The playbook (steps, ladder, titles) and its version are frozen into the incident when it is declared, so
later playbook edits never change a running incident. Declaring schedules the ladder (backend.ladder); step
ticks are backend.steps; everything lands on the timeline (backend.timeline).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Router, get, post
from litestar.params import Parameter
from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from . import clock, documents, ladder
from .auth import RANK, CurrentUser, User, requires
from .changes import add_change
from .db import Base, UTCDateTime, get_for_site
from .errors import Problem
from .ladder import EscalationStep
from .notifications import notify
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


async def feed(session: AsyncSession, incident: Incident) -> None:
    """Tell every device of the site, through the change feed, that an incident changed."""
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
    )


MESSAGES = {
    "declared": (
        {"zh-CN": "新事件：{title}", "en": "New incident: {title}"},
        {"zh-CN": "{who} 启动了预案。{note}", "en": "{who} started the playbook. {note}"},
    ),
}


def texts(
    message: tuple[dict, dict], incident: Incident, who: str, note: str | None = None
) -> tuple[dict, dict]:
    """A notification's title and body in both languages, filled in for this incident."""
    title, body = message
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
            422,
            f"There is no playbook {playbook!r} at your site.",
            errors={"playbook": "unknown playbook"},
            code="incident.unknown_playbook",
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
    title, body = texts(MESSAGES["declared"], incident, actor.display_name if actor else "ACD", note)
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
    await feed(session, incident)
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


async def get_incident_at_site(session: AsyncSession, user: CurrentUser, incident_id: int) -> Incident:
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
    return await detail_out(db, await get_incident_at_site(db, request.user, incident_id), request.user)


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
    incident = await get_incident_at_site(db, request.user, incident_id)
    events = await timeline(db, incident.id, after)
    return {
        "incident_id": incident.id,
        "status": incident.status,
        "drill": incident.drill,
        "events": events,
        "cursor": events[-1]["id"] if events else after,
    }


@post(
    "/api/incidents/{incident_id:int}/notes",
    guards=[requires("lead")],
    summary="Add a note to the timeline (lead+)",
)
async def add_note(request: Req, db: AsyncSession, incident_id: int, data: NoteIn) -> dict[str, Any]:
    incident = await get_incident_at_site(db, request.user, incident_id)
    if incident.status == "resolved":
        raise Problem(409, "This incident is resolved; notes are closed.", code="incident.resolved")
    at = await clock.now(request.app, db)
    event = await add_event(db, incident.id, "note", request.user.id, {"text": data.text.strip()}, at=at)
    return (await timeline(db, incident.id, event.id - 1, limit=1))[0]


router = Router(
    path="/",
    tags=["incidents"],
    route_handlers=[declare_incident, list_incidents, get_incident, get_timeline, add_note],
)
