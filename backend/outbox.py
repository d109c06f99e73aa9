"""The delivery outbox: one row per (notification, push subscription), sent by the sender step (`STEP`) exactly
once across app processes, retried with backoff, given up on dead targets; every attempt on the timeline.

Delivery states: pending -> sending (claimed, with a deadline: a crashed sender's rows are taken again
after it) -> sent | failed (retried with backoff, or given up when next_attempt_at is NULL)
| gone (the push service said 404/410: that subscription is deleted) | cancelled (ack / resolve).
"""

from __future__ import annotations

import asyncio
import email.utils
import hmac
import json
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, post
from sqlalchemy import ForeignKey, Index, Integer, String, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from . import clock, push, workers
from .auth import User
from .db import Base, UTCDateTime, affected, table_of
from .errors import Problem
from .inbox import Notification
from .push import PushSubscription
from .timeline import IncidentEvent, add_event

log = logging.getLogger("outage_desk")

MAX_ATTEMPTS = 8
BACKOFF_BASE = 10  # seconds; doubled per attempt, with jitter
BACKOFF_CAP = 15 * 60
RETRY_AFTER_CAP = 3600
BATCH = 200  # deliveries claimed per round
PARALLEL = 50  # requests in flight per sender (push services are far away: overlap the waits)
# A 'sending' row older than this belongs to a sender that died. Longer than a whole claimed batch can take
# (every request timing out, PARALLEL at a time), so a slow but live sender is never doubled up.
SEND_LEASE = timedelta(seconds=push.SEND_TIMEOUT * (BATCH // PARALLEL + 1) + 30)
MAX_PAYLOAD = 3000  # bytes of JSON; Web Push allows ~4 KB after encryption


class PushDelivery(Base):
    """The outbox: one row per (notification, subscription)."""

    __tablename__ = "push_deliveries"
    __table_args__ = (Index("ix_push_deliveries_state_next_attempt_at", "state", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    notification_id: Mapped[int] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"), index=True
    )
    subscription_id: Mapped[int | None] = mapped_column(
        ForeignKey("push_subscriptions.id", ondelete="SET NULL"), nullable=True, index=True
    )
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), nullable=True, index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    urgency: Mapped[str] = mapped_column(String(8), default="normal")
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    receipt: Mapped[str] = mapped_column(String(64))  # the service worker proves receipt with it
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


async def cancel_pending(session: AsyncSession, incident_id: int, at: datetime) -> int:
    """Ack / resolve: deliveries for this incident not sent yet are not needed any more."""
    result = await session.execute(
        update(PushDelivery)
        .where(
            PushDelivery.incident_id == incident_id,
            PushDelivery.state.in_(("pending", "failed")),
            PushDelivery.next_attempt_at.is_not(None),
        )
        .values(state="cancelled", next_attempt_at=None, last_error="cancelled (acknowledged or resolved)")
    )
    return affected(result)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def payload_for(note: Notification, delivery: PushDelivery) -> str:
    """Ids plus a short title and body in both languages; the service worker picks one."""
    data = {
        "v": 1,
        "id": note.id,
        "delivery": delivery.id,
        "receipt": delivery.receipt,
        "incident_id": note.incident_id,
        "kind": note.kind,
        "urgency": note.urgency,
        "drill": note.drill,
        "title": {k: _short(v, 120) for k, v in note.title.items()},
        "body": {k: _short(v, 300) for k, v in note.body.items()},
    }
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    if len(text.encode()) > MAX_PAYLOAD:  # the app fetches the full text from the inbox anyway
        data["body"] = {}
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text


def _retry_after(value: str | None, at: datetime) -> float:
    """Retry-After in seconds or as an HTTP date; 60 s when missing or unreadable."""
    if not value:
        return 60
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (email.utils.parsedate_to_datetime(value) - at).total_seconds()
        except (TypeError, ValueError):
            seconds = 60
    return min(max(seconds, 0), RETRY_AFTER_CAP)


def _backoff(attempts: int) -> float:
    delay = min(BACKOFF_BASE * 2 ** max(attempts - 1, 0), BACKOFF_CAP)
    return delay * random.uniform(0.8, 1.2)  # jitter: many failed rows don't come back at the same instant


async def send_all(
    sends: list[Callable[[], Awaitable[dict[str, Any]]] | None], parallel: int, what: str
) -> list[dict[str, Any] | None]:
    """Run each send (None: nothing to send, None back), `parallel` at a time, outcomes in order. Whatever goes
    wrong in one is that delivery's outcome, never the other rows' in the round."""
    limit = asyncio.Semaphore(parallel)

    async def one(send: Callable[[], Awaitable[dict[str, Any]]] | None) -> dict[str, Any] | None:
        if send is None:
            return None
        async with limit:
            try:
                return await send()
            except Exception:
                log.exception("%s failed", what)
                return {"status": None, "error": "internal error while sending"}

    return list(await asyncio.gather(*(one(send) for send in sends)))


def retry_at(outcome: dict[str, Any], attempts: int, at: datetime) -> datetime | None:
    """When to try a failed delivery again: a 429 at its Retry-After, a 5xx or a network failure after the
    backoff, while attempts are left; None (give up) for anything else or when outcome says "permanent"."""
    status = outcome.get("status")
    retryable = not outcome.get("permanent") and (status is None or status == 429 or status >= 500)
    if not retryable or attempts >= MAX_ATTEMPTS:
        return None
    wait = _retry_after(outcome.get("retry_after"), at) if status == 429 else _backoff(attempts)
    return at + timedelta(seconds=wait)


def _claimable(at: datetime) -> Any:
    return or_(
        and_(
            PushDelivery.state.in_(("pending", "failed")),
            PushDelivery.next_attempt_at <= at,
            PushDelivery.attempts < MAX_ATTEMPTS,
        ),
        and_(PushDelivery.state == "sending", PushDelivery.deadline_at <= at),
    )


async def deliver_due(app: Any) -> int:
    """Claim due deliveries (SKIP LOCKED on PostgreSQL, one guarded UPDATE on SQLite), send them outside
    any transaction, then record each outcome. Returns how many were attempted."""
    state = getattr(app, "state", app)
    async with state.sessionmaker() as session:
        at = await clock.now(state, session)
        deadline = at + SEND_LEASE  # also marks this claim: only its holder may record the outcome
        claimed = await workers.claim(
            session,
            PushDelivery.id,
            [_claimable(at)],
            [PushDelivery.next_attempt_at, PushDelivery.id],
            BATCH,
            {"state": "sending", "deadline_at": deadline, "attempts": PushDelivery.attempts + 1},
        )
        if not claimed:
            await session.rollback()
            return 0
        rows = (
            await session.execute(
                select(PushDelivery, Notification, PushSubscription, User.display_name)
                .join(Notification, Notification.id == PushDelivery.notification_id)
                .join(User, User.id == PushDelivery.user_id)
                .outerjoin(PushSubscription, PushSubscription.id == PushDelivery.subscription_id)
                .where(PushDelivery.id.in_(claimed))
                .order_by(PushDelivery.id)
            )
        ).all()
        await session.commit()

    def one(delivery: PushDelivery, note: Notification, sub: PushSubscription | None) -> Any:
        if sub is None:
            return None
        topic = f"incident-{note.incident_id}" if note.incident_id is not None else None
        return lambda: push.send(state, sub, payload_for(note, delivery), note.urgency, topic)

    outcomes = [
        o if o is not None else {"status": None, "gone": True, "error": "subscription removed"}
        for o in await send_all([one(d, n, s) for d, n, s, _ in rows], PARALLEL, "push delivery")
    ]
    async with state.sessionmaker() as session:
        at = await clock.now(state, session)
        await _record(
            session,
            [(d, s, name, o) for (d, _n, s, name), o in zip(rows, outcomes, strict=True)],
            deadline,
            at,
        )
        await session.commit()
    return len(rows)


async def _record(
    session: AsyncSession,
    results: list[tuple[PushDelivery, PushSubscription | None, str, dict]],
    deadline: datetime,
    at: datetime,
) -> None:
    """Write each outcome, but only where our claim still holds (same deadline, still 'sending'): a sender
    whose lease ran out changes nothing. Accepted deliveries (the common case) go in one statement."""
    table = table_of(PushDelivery)
    ours = and_(table.c.state == "sending", table.c.deadline_at == deadline)
    events: list[tuple[PushDelivery, str, dict[str, Any]]] = []

    def info(delivery: PushDelivery, name: str, status: int | None) -> dict[str, Any]:
        return {
            "delivery": delivery.id,
            "user_id": delivery.user_id,
            "user": name,
            "status": status,
            "attempt": delivery.attempts,
        }

    accepted = [
        (d, name, o["status"]) for d, _s, name, o in results if o.get("status") and 200 <= o["status"] < 300
    ]
    for status in {s for _d, _n, s in accepted}:
        group = {d.id: (d, name) for d, name, s in accepted if s == status}
        done = (
            await session.execute(
                table.update()
                .where(table.c.id.in_(list(group)), ours)
                .values(
                    state="sent",
                    sent_at=at,
                    next_attempt_at=None,
                    last_status=status,
                    last_error=None,
                    deadline_at=None,
                )
                .returning(table.c.id)
            )
        ).scalars()
        events += [(group[i][0], "notification_sent", info(group[i][0], group[i][1], status)) for i in done]

    for delivery, sub, name, outcome in results:
        status = outcome.get("status")
        if status and 200 <= status < 300:
            continue
        values: dict[str, Any] = {
            "last_status": status,
            "last_error": outcome.get("error"),
            "deadline_at": None,
        }
        if outcome.get("gone") or status in (404, 410):
            values.update(state="gone", next_attempt_at=None)
            kind, data = "notification_gone", info(delivery, name, status)
        else:
            # None: 3xx/400/401/403/413, refused, bad keys, out of attempts: give up; the inbox has it
            again = retry_at(outcome, delivery.attempts, at)
            values.update(state="failed", next_attempt_at=again)
            kind, data = (
                "notification_failed",
                {
                    **info(delivery, name, status),
                    "error": outcome.get("error"),
                    "retry_at": again.isoformat() if again else None,
                },
            )
        if not affected(
            await session.execute(table.update().where(table.c.id == delivery.id, ours).values(**values))
        ):
            continue
        if kind == "notification_gone" and sub is not None:
            # That exact subscription is dead: remove it and whatever else was queued for it.
            await session.execute(
                table.update()
                .where(table.c.subscription_id == sub.id, table.c.state.in_(("pending", "failed")))
                .values(state="gone", next_attempt_at=None)
            )
            await session.execute(table_of(PushSubscription).delete().where(PushSubscription.id == sub.id))
        events.append((delivery, kind, data))

    session.add_all(
        [
            IncidentEvent(incident_id=d.incident_id, kind=kind, actor_id=None, data=data, at=at)
            for d, kind, data in sorted(events, key=lambda e: e[0].id)
            if d.incident_id is not None
        ]
    )


async def deliver_round(state: Any) -> int:
    return await deliver_due(state)  # looked up when called, so a test can wrap deliver_due


STEP = workers.Step("deliveries", deliver_round)


class ReceiptIn(msgspec.Struct, forbid_unknown_fields=True):
    delivery: int
    receipt: Annotated[str, msgspec.Meta(max_length=64)]


@post("/api/push/receipts", status_code=204, summary="The service worker reports a push received (public)")
async def receipt(request: Request, db: AsyncSession, data: ReceiptIn) -> None:
    delivery = await db.get(PushDelivery, data.delivery)
    # bytes: compare_digest raises TypeError for non-ASCII text, and anyone may post here
    if delivery is None or not hmac.compare_digest(delivery.receipt.encode(), data.receipt.encode()):
        raise Problem(404, "Unknown delivery.", code="delivery.not_found")
    if delivery.delivered_at is None:
        at = await clock.now(request.app, db)
        delivery.delivered_at = at
        if delivery.incident_id is not None:
            user = await db.get(User, delivery.user_id)
            await add_event(
                db,
                delivery.incident_id,
                "notification_delivered",
                None,
                {
                    "delivery": delivery.id,
                    "user_id": delivery.user_id,
                    "user": user.display_name if user else None,
                },
                at=at,
            )


router = Router(path="/", tags=["notifications"], route_handlers=[receipt])
