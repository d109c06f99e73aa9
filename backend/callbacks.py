"""Callbacks: every call record that promises one (`callback_promised` + `callback_due`) becomes a callback,
made and kept up to date by the records hook `promises.on_records_stored` in the same transaction as the record.
Due time: the promise, else two hours after the call (the emergency script's promise). Owner: the agent
who took the call until a lead assigns someone else. Attempts are made on the device (UUID ids, also
offline) and upserted, so re-sending them is harmless. States:
  open -> trying (an attempt without reaching anyone) -> done (reached / resolved)
                                                      -> failed (wrong number: the lead must look)
  any -> cancelled (the record no longer promises a callback)
An overdue callback (due passed, still open/trying) notifies the site's leads once (the worker `STEP`).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, put
from litestar.params import Parameter
from sqlalchemy import ForeignKey, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from . import clock, workers
from .auth import CurrentUser, User, requires, site_names
from .changes import add_personal_change
from .clock import parse_time
from .db import INT32, Base, UTCDateTime, get_for_site
from .errors import Problem
from .incidents import Incident
from .notifications import notify
from .records import Record

Req = Request[CurrentUser, str, Any]

CALLBACK_FORM = "call-record"
IncidentRef = Annotated[int | None, Parameter(ge=1, le=INT32)]
DEFAULT_DUE = timedelta(hours=2)  # the emergency script promises a callback within 2 hours
OUTCOMES = ("reached", "no_answer", "wrong_number", "resolved")
OPEN_STATES = ("open", "trying")
STATE_AFTER = {"reached": "done", "resolved": "done", "wrong_number": "failed", "no_answer": "trying"}
POLL_SECONDS = 15.0


class Callback(Base):
    """One promised callback per call record (its id is the record's id)."""

    __tablename__ = "callbacks"
    record_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("records.id", ondelete="CASCADE"), primary_key=True
    )
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    record_rev: Mapped[int] = mapped_column(Integer)
    caller_name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str] = mapped_column(String(40))
    called_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    promised_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    assigned_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # first final outcome
    overdue_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


# ---------------------------------------------------------------- from records to callbacks


def promised_due(record: Record) -> datetime | None:
    """When the callback is due, or None when this record promises none."""
    data = record.data or {}
    if record.form != CALLBACK_FORM or data.get("callback_promised") is not True:
        return None
    return (
        parse_time(data.get("callback_due"))
        or (parse_time(data.get("called_at")) or record.captured_at) + DEFAULT_DUE
    )


async def announce(
    session: AsyncSession, callback: Callback, kind: str, *, also: int | None = None, flush: bool = True
) -> None:
    """Devices learn of callback changes through the sync change feed: the owner's (and `also`, e.g. the previous
    owner's) and the leads', never other agents' (a callback holds the caller's name and phone)."""
    if flush:
        await session.flush()
    await add_personal_change(
        session,
        callback.site_id,
        kind,
        str(callback.record_id),
        callback_out(callback),
        {callback.owner_id} | ({also} if also else set()),
    )


# ---------------------------------------------------------------- overdue: notify the leads once


async def claim_overdue(session: AsyncSession, at: datetime, limit: int = 50) -> list[uuid.UUID]:
    """Mark overdue callbacks as notified and return them; SKIP LOCKED on PostgreSQL and the status guard
    make sure two app processes never notify for the same callback."""
    return await workers.claim(
        session,
        Callback.record_id,
        [Callback.status.in_(OPEN_STATES), Callback.due_at < at, Callback.overdue_notified_at.is_(None)],
        [Callback.due_at],
        limit,
        {"overdue_notified_at": at},
    )


async def _known_incidents(session: AsyncSession, ids: set[int]) -> set[tuple[int, int, bool]]:
    """(incident id, site id, drill) of the incidents that exist: a record may name an incident id the device made
    up, and a notification must only link to a real one of its own site."""
    if not ids:
        return set()
    return {
        (i, site, drill)
        for i, site, drill in (
            await session.execute(
                select(Incident.id, Incident.site_id, Incident.drill).where(Incident.id.in_(ids))
            )
        ).all()
    }


def _link(known: set[tuple[int, int, bool]], callback: Callback) -> tuple[int | None, bool | None]:
    """The incident a notice about this callback links to (only a real one of its own site), and its drill mark."""
    for incident_id, site_id, drill in known:
        if incident_id == callback.incident_id and site_id == callback.site_id:
            return incident_id, drill
    return None, None


async def notify_overdue(app: Any) -> int:
    """One pass: every callback that went overdue since the last pass notifies the site's leads."""
    state = getattr(app, "state", app)
    async with state.sessionmaker() as session:
        at = await clock.now(state, session)
        ids = await claim_overdue(session, at)
        if not ids:
            await session.rollback()
            return 0
        callbacks = (
            await session.execute(
                select(Callback, User.display_name)
                .join(User, User.id == Callback.owner_id)
                .where(Callback.record_id.in_(ids))
            )
        ).all()
        linked = {c.incident_id for c, _ in callbacks if c.incident_id is not None}
        known = await _known_incidents(session, linked)
        for callback, owner in callbacks:
            late = int((at - callback.due_at).total_seconds() // 60)
            title = {
                "zh-CN": f"回拨超时：{callback.caller_name}",
                "en": f"Callback overdue: {callback.caller_name}",
            }
            body = {
                "zh-CN": f"{callback.phone}，应于 {late} 分钟前回拨，负责人 {owner}。请跟进或改派。",
                "en": f"{callback.phone} was due {late} min ago; owner {owner}. Follow up or reassign.",
            }
            incident_id, drill = _link(known, callback)
            await notify(
                session,
                callback.site_id,
                ["lead"],
                title,
                body,
                incident_id=incident_id,
                kind="callback_overdue",
                urgency="high",
                at=at,
                drill=drill,
            )
        await session.commit()
        return len(callbacks)


async def overdue_round(state: Any) -> int:
    await notify_overdue(state)
    return 0  # polled on its interval: a pass handles everything overdue at once


STEP = workers.Step("overdue callbacks", overdue_round, every=POLL_SECONDS)


# ---------------------------------------------------------------- callbacks API


def callback_out(callback: Callback, names: dict[int, str] | None = None) -> dict[str, Any]:
    names = names or {}
    return {
        "id": str(callback.record_id),
        "record_id": str(callback.record_id),
        "incident_id": callback.incident_id,
        "caller_name": callback.caller_name,
        "phone": callback.phone,
        "called_at": callback.called_at.isoformat() if callback.called_at else None,
        "due_at": callback.due_at.isoformat(),
        "status": callback.status,
        "attempts": callback.attempts,
        "last_outcome": callback.last_outcome,
        "completed_at": callback.completed_at.isoformat() if callback.completed_at else None,
        "owner": {"id": callback.owner_id, "name": names.get(callback.owner_id)},
        "promised_by": {"id": callback.promised_by, "name": names.get(callback.promised_by)},
        "assigned_at": callback.assigned_at.isoformat() if callback.assigned_at else None,
        "overdue_notified_at": callback.overdue_notified_at.isoformat()
        if callback.overdue_notified_at
        else None,
        "record_rev": callback.record_rev,
    }


class AssignIn(msgspec.Struct, forbid_unknown_fields=True):
    owner_id: Annotated[int, msgspec.Meta(ge=1, le=INT32)]


@put(
    "/api/callbacks/{callback_id:uuid}/owner", guards=[requires("lead")], summary="Assign a callback (lead+)"
)
async def assign(request: Req, db: AsyncSession, callback_id: uuid.UUID, data: AssignIn) -> dict[str, Any]:
    user = request.user
    callback = await get_callback_at_site(db, user, callback_id)
    owner = await db.get(User, data.owner_id)
    if owner is None or owner.site_id != user.site_id or not owner.active:
        raise Problem(
            422,
            "Assign to an active user of your site.",
            errors={"owner_id": "unknown user"},
            code="callback.unknown_owner",
        )
    previous = callback.owner_id
    now = await clock.now(request.app, db)
    callback.owner_id, callback.assigned_by, callback.assigned_at, callback.updated_at = (
        owner.id,
        user.id,
        now,
        now,
    )
    await announce(db, callback, "callback.assigned", also=previous)
    if previous != owner.id:
        known = await _known_incidents(db, {callback.incident_id} if callback.incident_id else set())
        incident_id, drill = _link(known, callback)
        await notify(
            db,
            user.site_id,
            [],
            {"zh-CN": f"新的回拨：{callback.caller_name}", "en": f"Callback for you: {callback.caller_name}"},
            {
                "zh-CN": f"{user.display_name} 把 {callback.phone} 的回拨交给你。",
                "en": f"{user.display_name} gave you the callback to {callback.phone}.",
            },
            incident_id=incident_id,
            kind="callback_assigned",
            user_ids=[owner.id],
            at=now,
            drill=drill,
        )
    return callback_out(callback, await site_names(db, user.site_id))


async def get_callback_at_site(db: AsyncSession, user: CurrentUser, callback_id: uuid.UUID) -> Callback:
    return await get_for_site(db, Callback, callback_id, user.site_id, "callback")


router = Router(path="/", route_handlers=[assign], tags=["callbacks"])
