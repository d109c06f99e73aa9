"""After recovery: the callback queue and CRM re-entry of the records taken during an outage.

Callbacks: every call record that promises a callback (`callback_promised` + `callback_due`) becomes a
callback, made and kept up to date by the `on_records_stored` hook in the same transaction as the record.
Due time: the promise, else two hours after the call (the emergency script's promise). Owner: the agent
who took the call until a lead assigns someone else. Attempts are made on the device (UUID ids, also
offline) and upserted, so re-sending them is harmless. States:
  open -> trying (an attempt without reaching anyone) -> done (reached / resolved)
                                                      -> failed (wrong number: the lead must look)
  any -> cancelled (the record no longer promises a callback)
An overdue callback (due passed, still open/trying) notifies the site's leads once (the `workers` entry).

Re-entry: leads mark records re-entered (with the CRM reference) or closed, one or many at once; counts of
what is left; CSV (UTF-8 with BOM, for Excel) and JSON exports by incident / status / form / date range.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, Router, get, post, put
from litestar.params import Parameter
from sqlalchemy import ForeignKey, Integer, String, Text, Uuid, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from . import documents, escalation, incidents, push
from .auth import CurrentUser, User, requires
from .db import Base, UTCDateTime, db_now, insert_for
from .errors import Problem
from .records import Record, add_change

log = logging.getLogger("outage_desk")
Req = Request[CurrentUser, str, Any]

CALLBACK_FORM = "call-record"
INT32 = 2_147_483_647  # ids beyond a database integer cannot exist: refuse them as bad input, not a 500
IncidentRef = Annotated[int | None, Parameter(ge=1, le=INT32)]
DEFAULT_DUE = timedelta(hours=2)  # the emergency script promises a callback within 2 hours
OUTCOMES = ("reached", "no_answer", "wrong_number", "resolved")
OPEN_STATES = ("open", "trying")
STATE_AFTER = {"reached": "done", "resolved": "done", "wrong_number": "failed", "no_answer": "trying"}
POLL_SECONDS = 15.0


class Callback(Base):
    """One promised callback per call record (its id is the record's id)."""

    __tablename__ = "callbacks"
    record_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("records.id", ondelete="CASCADE"), primary_key=True)
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


class CallbackAttempt(Base):
    """One try at a callback, made on the device (id from the device: re-sending it changes nothing)."""

    __tablename__ = "callback_attempts"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    callback_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("callbacks.record_id", ondelete="CASCADE"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    outcome: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime)  # device clock
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)  # server clock


# ---------------------------------------------------------------- from records to callbacks

def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def promised_due(record: Record) -> datetime | None:
    """When the callback is due, or None when this record promises none."""
    data = record.data or {}
    if record.form != CALLBACK_FORM or data.get("callback_promised") is not True:
        return None
    return _time(data.get("callback_due")) or (_time(data.get("called_at")) or record.captured_at) + DEFAULT_DUE


async def on_records_stored(session: AsyncSession, stored: list[tuple[Record, str]]) -> None:
    """Records hook (same transaction, once per sync batch): make, update or cancel each record's callback.
    One read for the batch's existing callbacks and one flush, not one of each per record: during an outage
    nearly every call record promises a callback, so this is the sync's hot path."""
    relevant: list[tuple[Record, datetime | None]] = []
    for record, outcome in stored:
        due = promised_due(record)
        # a new record that promises nothing has no callback to make or cancel: skip it
        if record.form == CALLBACK_FORM and (due is not None or outcome != "created"):
            relevant.append((record, due))
    if not relevant:
        return
    now = await db_now(session)
    existing = {cb.record_id: cb for cb in (await session.execute(
        select(Callback).where(Callback.record_id.in_([record.id for record, _ in relevant])))).scalars()}
    announce: list[tuple[Callback, str]] = []
    for record, due in relevant:
        callback = existing.get(record.id)
        if due is None:
            if callback is not None and callback.status in OPEN_STATES:
                callback.status, callback.updated_at, callback.record_rev = "cancelled", now, record.rev
                announce.append((callback, "callback.cancelled"))
            continue
        data = record.data or {}
        fields = {"incident_id": record.incident_id, "record_rev": record.rev,
                  "caller_name": str(data.get("caller_name", ""))[:200], "phone": str(data.get("phone", ""))[:40],
                  "called_at": _time(data.get("called_at")), "due_at": due, "updated_at": now}
        if callback is None:
            callback = Callback(record_id=record.id, site_id=record.site_id, promised_by=record.agent_id,
                                owner_id=record.agent_id, status="open", attempts=0, created_at=now, **fields)
            session.add(callback)
            announce.append((callback, "callback.created"))
            continue
        if due > callback.due_at:
            callback.overdue_notified_at = None  # a later promise: warn again if that one slips too
        for name, value in fields.items():
            setattr(callback, name, value)
        if callback.status == "cancelled":
            callback.status = "trying" if callback.attempts else "open"
        announce.append((callback, "callback.updated"))
    await session.flush()
    for callback, kind in announce:
        await add_change(session, callback.site_id, kind, str(callback.record_id), callback_out(callback))


async def _announce(session: AsyncSession, callback: Callback, kind: str) -> None:
    """Devices learn of callback changes through the sync change feed; the owner's list refreshes."""
    await session.flush()
    await add_change(session, callback.site_id, kind, str(callback.record_id), callback_out(callback))


# ---------------------------------------------------------------- overdue: notify the leads once

async def claim_overdue(session: AsyncSession, at: datetime, limit: int = 50) -> list[uuid.UUID]:
    """Mark overdue callbacks as notified and return them; SKIP LOCKED on PostgreSQL and the status guard
    make sure two app processes never notify for the same callback."""
    due = (select(Callback.record_id).where(Callback.status.in_(OPEN_STATES), Callback.due_at < at,
                                            Callback.overdue_notified_at.is_(None))
           .order_by(Callback.due_at).limit(limit))
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    result = await session.execute(
        update(Callback).where(Callback.record_id.in_(due.scalar_subquery()),
                               Callback.overdue_notified_at.is_(None))
        .values(overdue_notified_at=at).returning(Callback.record_id))
    return list(result.scalars())


async def _known_incidents(session: AsyncSession, ids: set[int]) -> set[tuple[int, int]]:
    """(incident id, site id) of the incidents that exist: a record may name an incident id the device made
    up, and a notification must only link to a real one of its own site."""
    if not ids:
        return set()
    return set((await session.execute(select(incidents.Incident.id, incidents.Incident.site_id)
                                       .where(incidents.Incident.id.in_(ids)))).all())


async def notify_overdue(app: Any) -> int:
    """One pass: every callback that went overdue since the last pass notifies the site's leads."""
    state = getattr(app, "state", app)
    async with state.sessionmaker() as session:
        at = await escalation.now(state, session)
        ids = await claim_overdue(session, at)
        if not ids:
            await session.rollback()
            return 0
        callbacks = (await session.execute(select(Callback, User.display_name).join(User, User.id == Callback.owner_id)
                                           .where(Callback.record_id.in_(ids)))).all()
        linked = {c.incident_id for c, _ in callbacks if c.incident_id is not None}
        known = await _known_incidents(session, linked)
        for callback, owner in callbacks:
            late = int((at - callback.due_at).total_seconds() // 60)
            title = {"zh-CN": f"回拨超时：{callback.caller_name}", "en": f"Callback overdue: {callback.caller_name}"}
            body = {"zh-CN": f"{callback.phone}，应于 {late} 分钟前回拨，负责人 {owner}。请跟进或改派。",
                    "en": f"{callback.phone} was due {late} min ago; owner {owner}. Follow up or reassign."}
            incident_id = callback.incident_id if (callback.incident_id, callback.site_id) in known else None
            await push.notify(session, callback.site_id, ["lead"], title, body, incident_id=incident_id,
                              kind="callback_overdue", urgency="high", at=at)
        await session.commit()
        return len(callbacks)


async def poll_forever(app: Any, one_pass: Any, every: float, what: str) -> None:
    """Run `one_pass(app)` every `every` seconds for the app's lifetime (app.state.poll_interval overrides)."""
    while True:
        try:
            await one_pass(app)
        except asyncio.CancelledError:
            raise
        except Exception:  # a database hiccup must not end the worker
            log.exception(what)
        await asyncio.sleep(getattr(app.state, "poll_interval", None) or every)


async def overdue_worker(app: Any) -> None:
    await poll_forever(app, notify_overdue, POLL_SECONDS, "overdue callbacks")


workers = [overdue_worker]


# ---------------------------------------------------------------- callbacks API

def callback_out(callback: Callback, names: dict[int, str] | None = None) -> dict[str, Any]:
    names = names or {}
    return {"id": str(callback.record_id), "record_id": str(callback.record_id), "incident_id": callback.incident_id,
            "caller_name": callback.caller_name, "phone": callback.phone,
            "called_at": callback.called_at.isoformat() if callback.called_at else None,
            "due_at": callback.due_at.isoformat(), "status": callback.status, "attempts": callback.attempts,
            "last_outcome": callback.last_outcome,
            "completed_at": callback.completed_at.isoformat() if callback.completed_at else None,
            "owner": {"id": callback.owner_id, "name": names.get(callback.owner_id)},
            "promised_by": {"id": callback.promised_by, "name": names.get(callback.promised_by)},
            "assigned_at": callback.assigned_at.isoformat() if callback.assigned_at else None,
            "overdue_notified_at": callback.overdue_notified_at.isoformat() if callback.overdue_notified_at else None,
            "record_rev": callback.record_rev}


async def _names(session: AsyncSession, site_id: int) -> dict[int, str]:
    return dict((await session.execute(select(User.id, User.display_name).where(User.site_id == site_id))).all())


@get("/api/callbacks", summary="Callbacks: agents their own; leads and up everyone's (?mine=true, ?status=, ?incident_id=)")
async def list_callbacks(request: Req, db: AsyncSession,
                         status: Literal["active", "open", "trying", "done", "failed", "cancelled", "all"] = "active",
                         mine: bool = False, incident_id: IncidentRef = None) -> dict[str, Any]:
    user = request.user
    where = [Callback.site_id == user.site_id]
    if user.role == "agent" or mine:
        where.append(Callback.owner_id == user.id)
    if status == "active":
        where.append(Callback.status.in_(OPEN_STATES))
    elif status != "all":
        where.append(Callback.status == status)
    if incident_id is not None:
        where.append(Callback.incident_id == incident_id)
    rows = (await db.execute(select(Callback).where(*where).order_by(Callback.due_at, Callback.record_id)
                             .limit(2000))).scalars().all()
    names = await _names(db, user.site_id)
    now = await db_now(db)
    return {"items": [callback_out(c, names) for c in rows], "now": now.isoformat(),
            "overdue": sum(1 for c in rows if c.status in OPEN_STATES and c.due_at < now)}


class AssignIn(msgspec.Struct, forbid_unknown_fields=True):
    owner_id: Annotated[int, msgspec.Meta(ge=1, le=INT32)]


@put("/api/callbacks/{callback_id:uuid}/owner", guards=[requires("lead")], summary="Assign a callback (lead+)")
async def assign(request: Req, db: AsyncSession, callback_id: uuid.UUID, data: AssignIn) -> dict[str, Any]:
    user = request.user
    callback = await _callback(db, user, callback_id)
    owner = await db.get(User, data.owner_id)
    if owner is None or owner.site_id != user.site_id or not owner.active:
        raise Problem(422, "Assign to an active user of your site.", errors={"owner_id": "unknown user"})
    previous = callback.owner_id
    now = await db_now(db)
    callback.owner_id, callback.assigned_by, callback.assigned_at, callback.updated_at = owner.id, user.id, now, now
    await _announce(db, callback, "callback.assigned")
    if previous != owner.id:
        known = await _known_incidents(db, {callback.incident_id} if callback.incident_id else set())
        await push.notify(db, user.site_id, [], {"zh-CN": f"新的回拨：{callback.caller_name}",
                                                 "en": f"Callback for you: {callback.caller_name}"},
                          {"zh-CN": f"{user.display_name} 把 {callback.phone} 的回拨交给你。",
                           "en": f"{user.display_name} gave you the callback to {callback.phone}."},
                          incident_id=callback.incident_id if (callback.incident_id, user.site_id) in known else None,
                          kind="callback_assigned", user_ids=[owner.id], at=now)
    await db.commit()
    return callback_out(callback, await _names(db, user.site_id))


async def _callback(db: AsyncSession, user: CurrentUser, callback_id: uuid.UUID) -> Callback:
    callback = await db.get(Callback, callback_id)
    if callback is None or callback.site_id != user.site_id:
        raise Problem(404, "No such callback at your site.")
    return callback


class AttemptIn(msgspec.Struct, forbid_unknown_fields=True):
    id: uuid.UUID
    callback_id: uuid.UUID
    outcome: Literal["reached", "no_answer", "wrong_number", "resolved"]
    attempted_at: Annotated[datetime, msgspec.Meta(tz=True)]
    note: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


class AttemptsIn(msgspec.Struct, forbid_unknown_fields=True):
    attempts: Annotated[list[Any], msgspec.Meta(max_length=500)]


@post("/api/callbacks/attempts", status_code=200,
      summary="Record callback attempts (device ids; re-sending one is harmless). One answer per attempt.")
async def record_attempts(request: Req, db: AsyncSession, data: AttemptsIn) -> dict[str, Any]:
    user = request.user
    now = await db_now(db)
    results = []
    for index, raw in enumerate(data.attempts):
        try:
            item = msgspec.convert(raw, AttemptIn, str_keys=True)
        except msgspec.ValidationError as exc:
            results.append({"index": index, "id": raw.get("id") if isinstance(raw, dict) else None,
                            "status": "rejected", "message": str(exc)})
            continue
        callback = await db.get(Callback, item.callback_id)
        if callback is None or callback.site_id != user.site_id or (
                user.role == "agent" and callback.owner_id != user.id and callback.promised_by != user.id):
            results.append({"index": index, "id": str(item.id), "status": "rejected",
                            "message": "No such callback of yours."})
            continue
        inserted = (await db.execute(insert_for(db, CallbackAttempt.__table__).values(
            id=item.id, callback_id=callback.record_id, site_id=user.site_id, user_id=user.id, outcome=item.outcome,
            note=item.note, attempted_at=item.attempted_at, received_at=now)
            .on_conflict_do_nothing(index_elements=["id"]).returning(CallbackAttempt.id))).scalar_one_or_none()
        if inserted is None:
            results.append({"index": index, "id": str(item.id), "status": "duplicate"})
            continue
        await _apply_attempt(db, callback, item, now)
        results.append({"index": index, "id": str(item.id), "status": "created", "callback": callback_out(callback)})
    await db.commit()
    return {"results": results}


async def _apply_attempt(db: AsyncSession, callback: Callback, item: AttemptIn, now: datetime) -> None:
    callback.attempts += 1
    callback.updated_at = now
    latest = (await db.execute(select(CallbackAttempt.outcome).where(CallbackAttempt.callback_id == callback.record_id)
                               .order_by(CallbackAttempt.attempted_at.desc(), CallbackAttempt.received_at.desc())
                               .limit(1))).scalar_one()
    callback.last_outcome = latest
    if callback.status == "cancelled":
        return
    final = item.outcome != "no_answer"
    if final and (callback.completed_at is None or item.attempted_at < callback.completed_at):
        callback.completed_at = item.attempted_at  # attempts may arrive out of order from offline devices
    if callback.completed_at is None:
        callback.status = "trying"
    else:
        # the state follows the first final outcome; a later "reached" still beats "wrong number"
        finals = list((await db.execute(select(CallbackAttempt.outcome).where(
            CallbackAttempt.callback_id == callback.record_id, CallbackAttempt.outcome != "no_answer"))).scalars())
        callback.status = "done" if any(STATE_AFTER[o] == "done" for o in finals) else "failed"
    await _announce(db, callback, "callback.attempted")


@get("/api/callbacks/{callback_id:uuid}/attempts", summary="The attempts made on one callback")
async def list_attempts(request: Req, db: AsyncSession, callback_id: uuid.UUID) -> list[dict[str, Any]]:
    user = request.user
    callback = await _callback(db, user, callback_id)
    if user.role == "agent" and user.id not in (callback.owner_id, callback.promised_by):
        raise Problem(404, "No such callback at your site.")
    names = await _names(db, user.site_id)
    rows = (await db.execute(select(CallbackAttempt).where(CallbackAttempt.callback_id == callback_id)
                             .order_by(CallbackAttempt.attempted_at))).scalars().all()
    return [{"id": str(a.id), "outcome": a.outcome, "note": a.note, "attempted_at": a.attempted_at.isoformat(),
             "by": {"id": a.user_id, "name": names.get(a.user_id)}} for a in rows]


# ---------------------------------------------------------------- CRM re-entry

class ReentryItem(msgspec.Struct, forbid_unknown_fields=True):
    id: uuid.UUID
    crm_ref: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None


class ReentryIn(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["reentered", "closed", "pending"]
    records: Annotated[list[ReentryItem], msgspec.Meta(min_length=1, max_length=1000)]
    crm_ref: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None  # one ref for all


@post("/api/recovery/reentry", status_code=200, guards=[requires("lead")],
      summary="Mark records re-entered into the CRM (with its reference), closed, or back to pending (lead+)")
async def mark_reentry(request: Req, db: AsyncSession, data: ReentryIn) -> dict[str, Any]:
    user = request.user
    now = await db_now(db)
    ids = [item.id for item in data.records]
    found = {r.id: r for r in (await db.execute(select(Record).where(Record.id.in_(ids),
                                                                    Record.site_id == user.site_id))).scalars()}
    errors: dict[str, str] = {}
    updated = []
    for item in data.records:
        record = found.get(item.id)
        crm_ref = item.crm_ref or data.crm_ref
        if record is None:
            errors[str(item.id)] = "no such record at your site"
            continue
        if data.status == "reentered" and not crm_ref:
            errors[str(item.id)] = "a re-entered record needs the CRM reference"
            continue
        record.reentry_status = data.status
        record.crm_ref = None if data.status == "pending" else crm_ref
        record.reentered_by = None if data.status == "pending" else user.id
        record.reentered_at = None if data.status == "pending" else now
        await add_change(db, user.site_id, "record.status", str(record.id),
                         {"id": str(record.id), "reentry_status": record.reentry_status, "crm_ref": record.crm_ref})
        updated.append(str(record.id))
    await db.commit()
    body = {"updated": updated, "errors": errors, "counts": await reentry_counts(db, user.site_id)}
    if errors and not updated:
        raise Problem(422, "None of these records could be marked.", errors=errors)
    return body


async def reentry_counts(session: AsyncSession, site_id: int, incident_id: int | None = None) -> dict[str, Any]:
    where = [Record.site_id == site_id]
    if incident_id is not None:
        where.append(Record.incident_id == incident_id)
    rows = (await session.execute(select(Record.form, Record.reentry_status, func.count())
                                  .where(*where).group_by(Record.form, Record.reentry_status))).all()
    counts = {"pending": 0, "reentered": 0, "closed": 0}
    by_form: dict[str, dict[str, int]] = {}
    for form, status, n in rows:
        counts[status] = counts.get(status, 0) + n
        by_form.setdefault(form, {"pending": 0, "reentered": 0, "closed": 0})[status] = n
    return {**counts, "total": sum(counts.values()), "by_form": by_form}


@get("/api/recovery/counts", guards=[requires("lead")], summary="What is still to re-enter (?incident_id=)")
async def counts(request: Req, db: AsyncSession,
                 incident_id: IncidentRef = None) -> dict[str, Any]:
    return await reentry_counts(db, request.user.site_id, incident_id)


async def _export_rows(db: AsyncSession, user: CurrentUser, form: str | None, incident_id: int | None,
                       status: str | None, since: datetime | None, until: datetime | None) -> list[Record]:
    where = [Record.site_id == user.site_id]
    for column, value in ((Record.form, form), (Record.incident_id, incident_id), (Record.reentry_status, status)):
        if value is not None:
            where.append(column == value)
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise Problem(400, f"{name} needs a timezone, e.g. 2026-11-23T08:00:00+08:00", errors={name: "naive"})
    if since is not None:
        where.append(Record.captured_at >= since)
    if until is not None:
        where.append(Record.captured_at < until)
    return list((await db.execute(select(Record).where(*where).order_by(Record.captured_at, Record.id))).scalars())


ExportStatus = Literal["pending", "reentered", "closed"] | None
Since = Annotated[datetime | None, Parameter(description="captured at or after (ISO 8601)")]
Until = Annotated[datetime | None, Parameter(description="captured before (ISO 8601)")]
META = [("id", "记录编号", "Record ID"), ("receipt", "回执", "Receipt"), ("source", "来源", "Source"),
        ("sheet_id", "纸表编号", "Sheet ID"), ("sheet_row", "纸表行号", "Sheet row"), ("agent", "坐席", "Agent"),
        ("captured_at", "记录时间", "Captured at"), ("received_at", "服务器收到", "Received at"),
        ("incident_id", "事件", "Incident"), ("reentry_status", "录入状态", "Re-entry status"),
        ("crm_ref", "系统单号", "CRM reference"), ("reentered_by", "录入人", "Re-entered by"),
        ("reentered_at", "录入时间", "Re-entered at")]
STATUS_TEXT = {"pending": "待录入 pending", "reentered": "已录入 re-entered", "closed": "已关闭 closed"}


def _cell(field: dict[str, Any], value: Any) -> str:
    """What a person re-typing into the CRM wants to see: labels, not codes."""
    if value is None:
        return ""
    if field.get("type") == "boolean":
        return "是 Yes" if value else "否 No"
    if field.get("type") == "choice":
        for choice in field.get("choices") or []:
            if choice["value"] == value:
                return f"{choice['label']['zh-CN']} {choice['label']['en']}"
    return str(value)


@get("/api/recovery/export.csv", guards=[requires("lead")],
     summary="One form's records as CSV (UTF-8 with BOM; bilingual headers) by incident / status / date range")
async def export_csv(request: Req, db: AsyncSession, form: str = CALLBACK_FORM,
                     incident_id: IncidentRef = None,
                     status: ExportStatus = None, since: Since = None, until: Until = None) -> Response[bytes]:
    user = request.user
    document = await documents.get_document(db, user.site_id, "form", form)
    if document is None:
        raise Problem(404, f"No form {form!r} at your site.", errors={"form": "unknown"})
    fields = document.definition["fields"]
    records = await _export_rows(db, user, form, incident_id, status, since, until)
    # Columns follow the newest version; fields only older versions had come after them.
    known = {f["name"] for f in fields}
    for record in records:
        if record.form_version != document.version:
            old = await documents.get_document(db, user.site_id, "form", form, record.form_version)
            for f in old.definition["fields"] if old else []:
                if f["name"] not in known:
                    known.add(f["name"])
                    fields = [*fields, f]
    names = await _names(db, user.site_id)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([f"{f['label']['zh-CN']} {f['label']['en']}" for f in fields] + [f"{zh} {en}" for _, zh, en in META])
    for r in records:
        meta = {"id": str(r.id), "receipt": r.receipt, "source": r.source, "sheet_id": r.sheet_id or "",
                "sheet_row": r.sheet_row or "", "agent": names.get(r.agent_id, r.agent_id),
                "captured_at": r.captured_at.isoformat(), "received_at": r.received_at.isoformat(),
                "incident_id": r.incident_id or "", "reentry_status": STATUS_TEXT.get(r.reentry_status, r.reentry_status),
                "crm_ref": r.crm_ref or "", "reentered_by": names.get(r.reentered_by, "") if r.reentered_by else "",
                "reentered_at": r.reentered_at.isoformat() if r.reentered_at else ""}
        writer.writerow([_cell(f, (r.data or {}).get(f["name"])) for f in fields] + [meta[k] for k, _, _ in META])
    filename = f"{form}-records.csv"
    return Response(b"\xef\xbb\xbf" + out.getvalue().encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@get("/api/recovery/export.json", guards=[requires("lead")],
     summary="Records as JSON (raw values plus re-entry state) by form / incident / status / date range")
async def export_json(request: Req, db: AsyncSession, form: str | None = None,
                      incident_id: IncidentRef = None,
                      status: ExportStatus = None, since: Since = None, until: Until = None) -> Response[bytes]:
    user = request.user
    records = await _export_rows(db, user, form, incident_id, status, since, until)
    names = await _names(db, user.site_id)
    body = {"site": user.site_slug, "exported_at": (await db_now(db)).isoformat(),
            "filters": {"form": form, "incident_id": incident_id, "status": status,
                        "since": since.isoformat() if since else None, "until": until.isoformat() if until else None},
            "records": [{"id": str(r.id), "form": r.form, "form_version": r.form_version, "rev": r.rev,
                         "data": r.data, "incident_id": r.incident_id, "agent": {"id": r.agent_id,
                                                                                "name": names.get(r.agent_id)},
                         "source": r.source, "sheet_id": r.sheet_id, "sheet_row": r.sheet_row,
                         "captured_at": r.captured_at.isoformat(), "received_at": r.received_at.isoformat(),
                         "receipt": r.receipt, "reentry_status": r.reentry_status, "crm_ref": r.crm_ref,
                         "reentered_by": r.reentered_by,
                         "reentered_at": r.reentered_at.isoformat() if r.reentered_at else None} for r in records]}
    return Response(msgspec.json.encode(body), media_type="application/json",
                    headers={"Content-Disposition": 'attachment; filename="records.json"'})


router = Router(path="/", route_handlers=[list_callbacks, assign, record_attempts, list_attempts, mark_reentry, counts,
                                          export_csv, export_json], tags=["recovery"])
