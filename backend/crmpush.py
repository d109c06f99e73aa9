"""Pushing records into the CRM: a lead picks records (or "all pending re-entry of this incident"); each becomes
one CRM delivery, sent by the sender step (`STEP`) exactly once across app processes with the outbox's rules
(the claim helper of backend.workers; backoff, Retry-After and attempt limit of backend.outbox), under the
idempotency key of its record id and revision, so a retry or a second push never makes a second CRM entry.

Delivery states, as in the push outbox: pending -> sending (claimed, with a lease) -> sent | failed (retried
with backoff, 429 at its Retry-After; given up when next_attempt_at is NULL: 3xx/4xx with the CRM's reason,
no reference in the answer, out of attempts) | superseded (the record changed before it went: the new rev is
pending again). A 409 for a known key with a reference in the answer is success: the CRM had it already.

The seam for the shared outbox: `crm_deliveries` has the push outbox's queue columns (state, attempts,
next_attempt_at, deadline_at, last_status, last_error) and `deliver_due` is its claim / send / record round;
what is CRM-only is what to send (`crm.build_request`) and what success does (`_mark_reentered`).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint, Uuid, and_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from . import clock, crm, crmmap, outbound, outbox, workers
from .auth import Site, User
from .changes import add_personal_change
from .db import Base, UTCDateTime, affected, table_of
from .records import Record
from .timeline import add_event

TIMEOUT = 15  # seconds for one request to the CRM
BATCH = 50
PARALLEL = 4  # one CRM server behind it: a few requests at a time, not a stampede
SEND_LEASE = timedelta(seconds=TIMEOUT * (BATCH // PARALLEL + 1) + 30)
OPEN = ("pending", "sending")


class CrmDelivery(Base):
    __tablename__ = "crm_deliveries"
    __table_args__ = (
        UniqueConstraint("record_id", "rev"),
        Index("ix_crm_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    record_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("records.id", ondelete="CASCADE"))
    rev: Mapped[int] = mapped_column(Integer)
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    idempotency_key: Mapped[str] = mapped_column(String(100))
    requested_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    crm_ref: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


def gave_up(delivery: CrmDelivery) -> bool:
    return delivery.state == "failed" and delivery.next_attempt_at is None


# ---------------------------------------------------------------- what a push would send


async def plan(
    session: AsyncSession,
    site_id: int,
    record_ids: list[uuid.UUID] | None,
    incident_id: int | None,
) -> tuple[list[Record], list[dict[str, Any]], dict[uuid.UUID, CrmDelivery]]:
    """The records to send, the ones skipped (with why), and the given-up deliveries a push sends again.

    Without ids: every record pending re-entry (of the incident). With ids: those records, including ones
    changed after the CRM got them (the second push they are flagged for). Never one already in the CRM at
    this rev, or already queued."""
    where = [Record.site_id == site_id]
    if incident_id is not None:
        where.append(Record.incident_id == incident_id)
    if record_ids is None:
        where.append(Record.reentry_status == "pending")
    else:
        where.append(Record.id.in_(record_ids))
    records = list((await session.execute(select(Record).where(*where).order_by(Record.seq))).scalars())
    skipped: list[dict[str, Any]] = []
    if record_ids is not None:
        found = {r.id for r in records}
        skipped += [{"record_id": str(i), "reason": "no such record"} for i in record_ids if i not in found]
    existing = {
        (d.record_id, d.rev): d
        for d in (
            await session.execute(
                select(CrmDelivery).where(CrmDelivery.record_id.in_([r.id for r in records]))
            )
        ).scalars()
    }
    send: list[Record] = []
    again: dict[uuid.UUID, CrmDelivery] = {}
    for record in records:
        delivery = existing.get((record.id, record.rev))
        reason = None
        if record.reentry_status == "closed":
            reason = "closed"
        elif record.reentry_status == "reentered" and (
            record.crm_rev is None or record.crm_rev >= record.rev
        ):
            reason = "already re-entered"
        elif delivery is not None and delivery.state == "sent":
            reason = "already in the CRM"
        elif delivery is not None and not gave_up(delivery):
            reason = "already queued"
        if reason:
            skipped.append({"record_id": str(record.id), "reason": reason})
            continue
        if delivery is not None:
            again[record.id] = delivery
        send.append(record)
    return send, skipped, again


async def enqueue(
    session: AsyncSession,
    records: list[Record],
    again: dict[uuid.UUID, CrmDelivery],
    user_id: int | None,
    at: datetime,
) -> int:
    """One delivery per (record, rev); a given-up one is queued again (the same key: still one CRM entry)."""
    table = table_of(CrmDelivery)
    rows = [
        {
            "site_id": r.site_id,
            "record_id": r.id,
            "rev": r.rev,
            "incident_id": r.incident_id,
            "idempotency_key": crm.idempotency_key(r.id, r.rev),
            "requested_by": user_id,
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": at,
            "created_at": at,
        }
        for r in records
        if r.id not in again
    ]
    if rows:
        from .db import insert_for

        await session.execute(
            insert_for(session, table).on_conflict_do_nothing(index_elements=["record_id", "rev"]), rows
        )
    if again:
        await session.execute(
            table.update()
            .where(table.c.id.in_([d.id for d in again.values()]), table.c.state == "failed")
            .values(state="pending", attempts=0, next_attempt_at=at, requested_by=user_id, last_error=None)
        )
    return len(records)


# ---------------------------------------------------------------- the sender


def _connected() -> Any:
    """A connector switched off holds its site's deliveries."""
    return CrmDelivery.site_id.in_(select(crm.CrmConnector.site_id).where(crm.CrmConnector.enabled.is_(True)))


CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def crm_reason(error: str | None, status: int | None) -> str | None:
    """The CRM's own words in a delivery's last error (what follows "the CRM answered N: "), if any."""
    prefix = f"the CRM answered {status}: "
    return error[len(prefix) :] if error and status and error.startswith(prefix) else None


def _reason(body: Any) -> str:
    """A short reason from the CRM's error answer (the admin chose this CRM; leads need to know why)."""
    if isinstance(body, dict):
        for key in ("detail", "message", "error", "title", "msg", "errmsg"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return CONTROL.sub(" ", value).strip()[:200]
            if isinstance(value, dict):
                return _reason(value)
    return ""


Request = tuple[str, dict[str, str], bytes, str]  # url, headers, body, where the answer holds the reference


async def _send(state: Any, request: Request | str | None) -> dict[str, Any]:
    """One POST; {"status", "ref"?, "error"?, "retry_after"?, "permanent"?}; never raises. None: superseded
    (the record changed before this went out); text: why it cannot be sent at all."""
    if request is None:
        return {"superseded": True}
    if isinstance(request, str):
        return {"status": None, "error": request, "permanent": True}
    url, headers, data, ref_path = request
    try:
        reply = await state.outbound.post_json_reply(url, data=data, headers=headers)
    except Exception as exc:
        return {
            "status": None,
            "error": outbound.describe(exc),
            "permanent": outbound.refusal(exc) is not None,
        }
    if 200 <= reply.status < 300 or reply.status == 409:
        if ref := crmmap.read_path(reply.body, ref_path):
            return {"status": reply.status, "ref": ref}
        what = "already has this entry" if reply.status == 409 else f"answered {reply.status}"
        return {
            "status": reply.status,
            "error": f"the CRM {what} but gave no reference at {ref_path}",
            "permanent": True,
        }
    reason = _reason(reply.body)
    error = f"the CRM answered {reply.status}" + (f": {reason}" if reason else "")
    if 300 <= reply.status < 400:
        error += " (redirects are not followed)"
    return {"status": reply.status, "error": error, "retry_after": reply.headers.get("Retry-After")}


def _request(state: Any, row: Any, at: datetime) -> Request | str | None:
    delivery, record, connector, site, agent = row
    if record.rev != delivery.rev:
        return None
    try:
        secret = crm.unseal(state.settings.secret_key, connector.secret)
    except ValueError as exc:
        return str(exc)
    headers, data, _ = crm.build_request(
        connector, secret, crm.facts(record, agent, site.slug), site.time_zone, int(at.timestamp())
    )
    return connector.url, headers, data, connector.ref_path


async def deliver_due(app: Any) -> int:
    """Claim due CRM deliveries, send them outside any transaction, record each outcome; how many tried."""
    state = getattr(app, "state", app)
    async with state.sessionmaker() as session:
        at = await clock.now(state, session)
        claimed, deadline = await workers.claim_leased(
            session, CrmDelivery, at, SEND_LEASE, BATCH, outbox.MAX_ATTEMPTS, _connected()
        )
        if not claimed:
            await session.rollback()
            return 0
        rows = (
            await session.execute(
                select(CrmDelivery, Record, crm.CrmConnector, Site, User.display_name)
                .join(Record, Record.id == CrmDelivery.record_id)
                .join(crm.CrmConnector, crm.CrmConnector.site_id == CrmDelivery.site_id)
                .join(Site, Site.id == CrmDelivery.site_id)
                .outerjoin(User, User.id == Record.agent_id)
                .where(CrmDelivery.id.in_(claimed))
                .order_by(CrmDelivery.id)
            )
        ).all()
        await session.commit()

    def one(request: Request | str | None) -> Any:
        return lambda: _send(state, request)

    outcomes = await outbox.send_all(
        [one(_request(state, row, at)) for row in rows], PARALLEL, "CRM delivery"
    )
    async with state.sessionmaker() as session:
        at = await clock.now(state, session)
        for (delivery, record, *_), outcome in zip(rows, outcomes, strict=True):
            await _record(session, delivery, record, outcome or {}, deadline, at)
        await session.commit()
    return len(rows)


async def _record(
    session: AsyncSession,
    delivery: CrmDelivery,
    record: Record,
    outcome: dict[str, Any],
    deadline: datetime,
    at: datetime,
) -> None:
    """Write one outcome where our claim still holds (still 'sending' with our deadline): a sender whose lease
    ran out changes nothing. Success marks the record re-entered with the CRM's reference."""
    table = table_of(CrmDelivery)
    ours = and_(table.c.id == delivery.id, table.c.state == "sending", table.c.deadline_at == deadline)
    status = outcome.get("status")
    values: dict[str, Any] = {"last_status": status, "deadline_at": None}
    data: dict[str, Any] = {
        "delivery": delivery.id,
        "record": str(delivery.record_id),
        "rev": delivery.rev,
        "status": status,
        "attempt": delivery.attempts,
    }
    if outcome.get("superseded"):
        values.update(
            state="superseded", next_attempt_at=None, last_error="the record changed before it was sent"
        )
        kind = None
    elif outcome.get("ref"):
        values.update(state="sent", sent_at=at, next_attempt_at=None, last_error=None, crm_ref=outcome["ref"])
        kind, data = "crm_reentered", {**data, "crm_ref": outcome["ref"]}
    else:
        retry_at = outbox.retry_at(outcome, delivery.attempts, at)
        values.update(state="failed", next_attempt_at=retry_at, last_error=outcome.get("error"))
        kind = "crm_failed"
        data = {**data, "error": outcome.get("error"), "retry_at": retry_at.isoformat() if retry_at else None}
    if not affected(await session.execute(table.update().where(ours).values(**values))):
        return
    if kind == "crm_reentered":
        await _mark_reentered(session, delivery, record, outcome["ref"], at)
    if kind is not None and delivery.incident_id is not None:
        await add_event(session, delivery.incident_id, kind, delivery.requested_by, data, at=at)


async def _mark_reentered(
    session: AsyncSession, delivery: CrmDelivery, record: Record, ref: str, at: datetime
) -> None:
    """The record is in the CRM at this rev: marked re-entered as a lead's mark by hand would be."""
    values = {
        "reentry_status": "reentered",
        "crm_ref": ref,
        "crm_rev": delivery.rev,
        "reentered_by": delivery.requested_by,
        "reentered_at": at,
    }
    await session.execute(table_of(Record).update().where(Record.id == delivery.record_id).values(**values))
    await add_personal_change(
        session,
        delivery.site_id,
        "record.status",
        str(delivery.record_id),
        {"id": str(delivery.record_id), "reentry_status": "reentered", "crm_ref": ref},
        {record.agent_id},
    )


async def deliver_round(state: Any) -> int:
    return await deliver_due(state)  # looked up when called, so a test can wrap deliver_due


STEP = workers.Step("crm", deliver_round)


async def drain(state: Any, rounds: int = 1000) -> int:
    """Send until nothing is due right now (the CLI, which runs no worker); how many were tried."""
    tried = 0
    for _ in range(rounds):
        done = await deliver_due(state)
        if not done:
            break
        tried += done
    return tried
