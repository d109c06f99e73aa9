"""An incident's lifecycle after it is declared: acknowledge (a manager has it: pending rungs and notifications
stop), recover (systems are back: pending rungs stop), resolve (closed: whatever is left is cancelled). Only the
first of two concurrent presses counts; each lands on the timeline and tells the team."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Router, get, post
from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from . import audit, clock, fleet, ladder
from .auth import CurrentUser, requires
from .callbacks import OPEN_STATES, Callback
from .db import affected
from .errors import Problem
from .incidents import Incident, Req, StepTick, detail_out, feed, get_incident_at_site, may_ack, texts
from .notifications import notify
from .outbox import cancel_pending
from .timeline import add_event

MESSAGES = {
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


class CloseIn(msgspec.Struct, forbid_unknown_fields=True):
    note: Annotated[str, msgspec.Meta(max_length=4000)] | None = None


async def _tell(
    db: AsyncSession, incident: Incident, user: CurrentUser | None, kind: str, roles: list[str], at: datetime
) -> None:
    """Whoever needs to know (but the one who pressed) gets a notification; every device of the site, a feed entry."""
    title, body = texts(MESSAGES[kind], incident, user.display_name if user else "ACD")
    await notify(
        db,
        incident.site_id,
        roles,
        title,
        body,
        incident_id=incident.id,
        kind=kind,
        exclude_user_id=user.id if user else None,
        at=at,
        drill=incident.drill,
    )
    await feed(db, incident)


async def acknowledge(
    db: AsyncSession, incident: Incident, user: CurrentUser, at: datetime, channel: str = "app"
) -> bool:
    """Acknowledge as `user`; `channel` says where the press came from (app, push, email, sms). Only the first
    acknowledgement counts, even when two managers press at once: False for a later one."""
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
                "channel": channel,
            },
            at=at,
        )
        await _tell(db, incident, user, "acknowledged", ["lead", "manager"], at)
    return bool(won)


@post(
    "/api/incidents/{incident_id:int}/ack",
    status_code=200,
    summary="Acknowledge: stops the ladder's pending rungs and pending notifications (manager+, or notified roles)",
)
async def ack_incident(request: Req, db: AsyncSession, incident_id: int) -> dict[str, Any]:
    user = request.user
    incident = await get_incident_at_site(db, user, incident_id)
    if incident.status == "resolved":
        raise Problem(409, "This incident is resolved already.", code="incident.resolved")
    if not may_ack(user, incident, await ladder.ladder(db, incident.id)):
        raise Problem(
            403,
            "Only managers, or the roles this incident's escalation has reached, can acknowledge.",
            code="incident.may_not_ack",
        )
    await acknowledge(db, incident, user, await clock.now(request.app, db))
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
    incident = await get_incident_at_site(db, user, incident_id)
    if incident.status == "resolved":
        raise Problem(409, "This incident is resolved already.", code="incident.resolved")
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
        await _tell(db, incident, user, "recovered", ["agent", "lead", "manager"], at)
    return await detail_out(db, incident, user)


async def still_open(db: AsyncSession, incident: Incident) -> dict[str, Any]:
    """What resolving would leave behind: unticked playbook steps, open callbacks of this incident, and the
    records the site's devices last said they still hold (the fleet)."""
    ticked = set(
        (await db.execute(select(StepTick.step_id).where(StepTick.incident_id == incident.id))).scalars()
    )
    steps = [
        {"id": s["id"], "title": s.get("title")}
        for s in incident.definition.get("steps", [])
        if s.get("id") not in ticked
    ]
    callbacks = (
        await db.execute(
            select(func.count()).where(
                Callback.site_id == incident.site_id,
                Callback.incident_id == incident.id,
                Callback.status.in_(OPEN_STATES),
            )
        )
    ).scalar_one()
    unsent = await fleet.unsent_at_site(db, incident.site_id)
    return {
        "steps": steps,
        "callbacks": callbacks,
        "unsent": unsent,
        "anything": bool(steps or callbacks or unsent["records"]),
    }


@get(
    "/api/incidents/{incident_id:int}/open",
    guards=[requires("lead")],
    summary="What is still open before resolving: unticked steps, open callbacks, unsent records (lead+)",
)
async def open_items(request: Req, db: AsyncSession, incident_id: int) -> dict[str, Any]:
    return await still_open(db, await get_incident_at_site(db, request.user, incident_id))


ResolveHook = Callable[[AsyncSession, Incident, datetime, list[Any]], Awaitable[None]]


async def resolve(
    db: AsyncSession,
    incident: Incident,
    actor: CurrentUser | None,
    at: datetime,
    *,
    hooks: list[Any],
    note: str | None = None,
    extra: dict[str, Any] | None = None,
) -> bool:
    """Close an incident (only the first of two concurrent closes counts): cancel what is left of its ladder
    and its notifications, put it on the timeline, tell the team, run the resolve hooks (app.RESOLVE_HOOKS:
    e.g. a drill's surge incident closes with it). `actor` None: the system closed it (the level is normal)."""
    won = affected(
        await db.execute(
            update(Incident)
            .where(Incident.id == incident.id, Incident.status != "resolved")
            .values(
                status="resolved",
                resolved_at=at,
                resolved_by=actor.id if actor else None,
                recovered_at=func.coalesce(Incident.recovered_at, at),
                recovered_by=func.coalesce(Incident.recovered_by, actor.id if actor else None),
            )
            .execution_options(synchronize_session=False)
        )
    )
    if not won:
        return False
    await db.refresh(incident)
    cancelled_rungs = await ladder.end_pending(db, incident.id, "cancelled", at)
    cancelled = await cancel_pending(db, incident.id, at)
    await add_event(
        db,
        incident.id,
        "resolved",
        actor.id if actor else None,
        {
            "note": note,
            "rungs_cancelled": cancelled_rungs,
            "deliveries_cancelled": cancelled,
            **(extra or {}),
        },
        at=at,
    )
    await _tell(db, incident, actor, "resolved", ["lead", "manager"], at)
    for hook in hooks:
        await hook(db, incident, at, hooks)
    return True


class ResolveIn(msgspec.Struct, forbid_unknown_fields=True):
    note: Annotated[str, msgspec.Meta(max_length=4000)] | None = None
    # Resolving while steps, callbacks or unsent records are still open: say so, and why (on the timeline).
    anyway: bool = False
    reason: Annotated[str, msgspec.Meta(max_length=4000)] | None = None


@post(
    "/api/incidents/{incident_id:int}/resolve",
    status_code=200,
    guards=[requires("lead")],
    summary="Resolve (close): cancels whatever of the ladder and its notifications is left (lead+); "
    "with anything still open, {anyway: true, reason} puts what was left and why on the timeline",
)
async def resolve_incident(
    request: Req, db: AsyncSession, incident_id: int, data: ResolveIn | None = None
) -> dict[str, Any]:
    user = request.user
    incident = await get_incident_at_site(db, user, incident_id)
    at = await clock.now(request.app, db)
    data = data or ResolveIn()
    reason = (data.reason or "").strip()
    if data.anyway and not reason:
        raise Problem(
            422,
            "Say why you resolve with things still open.",
            errors={"reason": "required"},
            code="incident.reason_required",
        )
    extra: dict[str, Any] = {}
    if incident.status != "resolved":
        left = await still_open(db, incident)
        if left["anything"]:
            extra = {"left_open": {k: left[k] for k in ("steps", "callbacks", "unsent")}}
            if data.anyway:
                extra["anyway"], extra["reason"] = True, reason
    if data.anyway and incident.status != "resolved":
        await audit.record(
            db,
            site_id=user.site_id,
            actor=user,
            action="incident.resolve_anyway",
            target=f"incident:{incident.id}",
            at=at,
            after={"reason": reason, **extra.get("left_open", {})},
        )
    await resolve(db, incident, user, at, hooks=request.app.state.resolve_hooks, note=data.note, extra=extra)
    return await detail_out(db, incident, user)


router = Router(
    path="/",
    tags=["incidents"],
    route_handlers=[ack_incident, recover_incident, resolve_incident, open_items],
)
