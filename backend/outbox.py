"""The delivery outbox: one row per message to send, whatever carries it (a Web Push subscription, a site's
group bot, an email, an SMS), sent by the sender step (`STEP`) exactly once across app processes, retried with
backoff, given up on dead targets; every attempt on the incident timeline.

Each kind of delivery has a `Transport` (wired in backend.app TRANSPORTS); deliveries with the same `group` key
in a round go as one message (a robot's rate limit is met by fewer, longer messages, never by dropping). A new
kind (a CRM push) is one more Transport.

Delivery states: pending -> sending (claimed, with a deadline: a crashed sender's rows are taken again
after it) -> sent | failed (retried with backoff, or given up when next_attempt_at is NULL)
| gone (the target said it no longer exists) | cancelled (ack / resolve). Rate limited: back to pending,
no attempt used up.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from . import acklinks, clock, push, workers
from .auth import User
from .db import Base, UTCDateTime, affected, table_of
from .inbox import Notification
from .push import PushSubscription
from .retries import BACKOFF_BASE, MAX_ATTEMPTS, retry_at, send_all  # noqa: F401 (BACKOFF_BASE: tests, crmpush)
from .timeline import IncidentEvent

log = logging.getLogger("outage_desk")

BATCH = 200  # deliveries claimed per round
PARALLEL = 50  # requests in flight per sender (push services are far away: overlap the waits)
# A 'sending' row older than this belongs to a sender that died. Longer than a whole claimed batch can take
# (every request timing out, PARALLEL at a time), so a slow but live sender is never doubled up.
SEND_LEASE = timedelta(seconds=push.SEND_TIMEOUT * (BATCH // PARALLEL + 1) + 30)


class PushDelivery(Base):
    """One row per message; `kind`: push (subscription_id), channel (channel_id), email / sms (address).
    `message`: what it says ({"title", "body", "kind", "drill", "ack", "mobiles", "to"})."""

    __tablename__ = "push_deliveries"
    __table_args__ = (Index("ix_push_deliveries_state_next_attempt_at", "state", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    kind: Mapped[str] = mapped_column(String(16), default="push")
    notification_id: Mapped[int | None] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"), nullable=True, index=True
    )
    subscription_id: Mapped[int | None] = mapped_column(
        ForeignKey("push_subscriptions.id", ondelete="SET NULL"), nullable=True, index=True
    )
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), nullable=True, index=True
    )
    channel_id: Mapped[int | None] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), nullable=True, index=True
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True)
    address: Mapped[str | None] = mapped_column(String(320), nullable=True)
    message: Mapped[dict | None] = mapped_column(JSON, nullable=True)
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


def _claimable(at: datetime) -> Any:
    return or_(
        and_(
            PushDelivery.state.in_(("pending", "failed")),
            PushDelivery.next_attempt_at <= at,
            PushDelivery.attempts < MAX_ATTEMPTS,
        ),
        and_(PushDelivery.state == "sending", PushDelivery.deadline_at <= at),
    )


class Item(NamedTuple):
    """A claimed delivery as a transport sees it: row, notification, the user's name, what `load` found."""

    delivery: PushDelivery
    note: Notification | None
    who: str | None
    context: Any


class Transport(NamedTuple):
    """`send(state, items)`: one message for a group, never raises, outcome {"status", "ok"?, "error"?,
    "permanent"?, "gone"?, "retry"?, "retry_after"?, "defer"? (seconds; no attempt used)}. `load(session,
    deliveries, at)` -> {id: context}; `group(delivery)` -> coalescing key; `gone(session, item)`: dead target."""

    send: Callable[[Any, list[Item]], Awaitable[dict[str, Any]]]
    load: Callable[[AsyncSession, list[PushDelivery], datetime], Awaitable[dict[int, Any]]] | None = None
    group: Callable[[PushDelivery], Any] | None = None
    gone: Callable[[AsyncSession, Item], Awaitable[None]] | None = None


async def _load_subscriptions(
    session: AsyncSession, deliveries: list[PushDelivery], at: datetime
) -> dict[int, Any]:
    ids = {d.subscription_id for d in deliveries if d.subscription_id is not None}
    subs = (
        {
            s.id: s
            for s in (
                await session.execute(select(PushSubscription).where(PushSubscription.id.in_(ids)))
            ).scalars()
        }
        if ids
        else {}
    )
    return {d.id: subs.get(d.subscription_id) for d in deliveries if d.subscription_id is not None}


async def _send_push(state: Any, items: list[Item]) -> dict[str, Any]:
    (item,) = items
    sub, note = item.context, item.note
    if sub is None or note is None:
        return {"status": None, "gone": True, "error": "subscription removed"}
    topic = f"incident-{note.incident_id}" if note.incident_id is not None else None
    ack = (item.delivery.message or {}).get("ack")
    ack_url = acklinks.url_for(state.settings, ack) if ack else None
    return await push.send(state, sub, push.payload_for(note, item.delivery, ack_url), note.urgency, topic)


async def _push_gone(session: AsyncSession, item: Item) -> None:
    """That exact subscription is dead: remove it and whatever else was queued for it."""
    if item.context is None:
        return
    table = table_of(PushDelivery)
    await session.execute(
        table.update()
        .where(table.c.subscription_id == item.context.id, table.c.state.in_(("pending", "failed")))
        .values(state="gone", next_attempt_at=None)
    )
    await session.execute(table_of(PushSubscription).delete().where(PushSubscription.id == item.context.id))


PUSH = Transport(send=_send_push, load=_load_subscriptions, gone=_push_gone)


def transports_of(state: Any) -> dict[str, Transport]:
    return getattr(state, "transports", None) or {"push": PUSH}


async def deliver_due(app: Any) -> int:
    """Claim due deliveries (SKIP LOCKED / guarded UPDATE), send them outside any transaction (coalesced per
    group), then record each outcome. Returns how many were attempted."""
    state = getattr(app, "state", app)
    transports = transports_of(state)
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
                select(PushDelivery, Notification, User.display_name)
                .outerjoin(Notification, Notification.id == PushDelivery.notification_id)
                .outerjoin(User, User.id == PushDelivery.user_id)
                .where(PushDelivery.id.in_(claimed))
                .order_by(PushDelivery.id)
            )
        ).all()
        contexts: dict[int, Any] = {}
        for kind in {d.kind for d, _n, _w in rows}:
            transport = transports.get(kind)
            if transport is not None and transport.load is not None:
                contexts.update(
                    await transport.load(session, [d for d, _n, _w in rows if d.kind == kind], at)
                )
        await session.commit()

    items = [Item(d, n, w, contexts.get(d.id)) for d, n, w in rows]
    groups: dict[Any, list[Item]] = {}
    for item in items:
        transport = transports.get(item.delivery.kind)
        key = transport.group(item.delivery) if transport is not None and transport.group else None
        group = (item.delivery.kind, key) if key is not None else ("one", item.delivery.id)
        groups.setdefault(group, []).append(item)

    def one(group: list[Item]) -> Any:
        transport = transports.get(group[0].delivery.kind)
        return None if transport is None else (lambda: transport.send(state, group))

    outcomes = [
        o if o is not None else {"status": None, "error": "no transport for this kind", "permanent": True}
        for o in await send_all([one(g) for g in groups.values()], PARALLEL, "delivery")
    ]
    results = [
        (item, outcome) for group, outcome in zip(groups.values(), outcomes, strict=True) for item in group
    ]
    async with state.sessionmaker() as session:
        at = await clock.now(state, session)
        await _record(session, transports, sorted(results, key=lambda r: r[0].delivery.id), deadline, at)
        await session.commit()
    return len(rows)


def _succeeded(outcome: dict[str, Any]) -> bool:
    status = outcome.get("status")
    if outcome.get("defer") is not None or outcome.get("gone"):
        return False
    return bool(outcome.get("ok", status is not None and 200 <= status < 300))


def _info(item: Item, status: int | None) -> dict[str, Any]:
    d = item.delivery
    data = {
        "delivery": d.id,
        "user_id": d.user_id,
        "user": item.who or (d.message or {}).get("to"),
        "status": status,
        "attempt": d.attempts,
    }
    if d.kind != "push":
        data.update(channel=d.kind, channel_id=d.channel_id)
    return data


async def _record(
    session: AsyncSession,
    transports: dict[str, Transport],
    results: list[tuple[Item, dict[str, Any]]],
    deadline: datetime,
    at: datetime,
) -> None:
    """Write each outcome, but only where our claim still holds (same deadline, still 'sending'): a sender
    whose lease ran out changes nothing. Accepted deliveries (the common case) go in one statement."""
    table = table_of(PushDelivery)
    ours = and_(table.c.state == "sending", table.c.deadline_at == deadline)
    events: list[tuple[PushDelivery, str, dict[str, Any]]] = []

    accepted = [(item, o.get("status")) for item, o in results if _succeeded(o)]
    for status in {s for _i, s in accepted}:
        group = {i.delivery.id: i for i, s in accepted if s == status}
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
        events += [(group[i].delivery, "notification_sent", _info(group[i], status)) for i in done]

    for item, outcome in results:
        if _succeeded(outcome):
            continue
        delivery, status = item.delivery, outcome.get("status")
        values: dict[str, Any] = {
            "last_status": status,
            "last_error": outcome.get("error"),
            "deadline_at": None,
        }
        if outcome.get("defer") is not None:
            wait_until = at + timedelta(seconds=float(outcome["defer"]))
            # Rate limited: not this delivery's fault; it keeps its attempts and waits for the robot.
            values.update(state="pending", next_attempt_at=wait_until, attempts=delivery.attempts - 1)
            kind = "notification_deferred"
            data = {**_info(item, status), "error": outcome.get("error"), "retry_at": wait_until.isoformat()}
        elif outcome.get("gone") or (delivery.kind == "push" and status in (404, 410)):
            values.update(state="gone", next_attempt_at=None)
            kind, data = "notification_gone", _info(item, status)
        else:
            # None: 3xx/400/401/403/413, refused, bad keys, out of attempts: give up; the inbox has it
            again = retry_at(outcome, delivery.attempts, at)
            values.update(state="failed", next_attempt_at=again)
            kind = "notification_failed"
            data = {
                **_info(item, status),
                "error": outcome.get("error"),
                "retry_at": again.isoformat() if again else None,
            }
        if not affected(
            await session.execute(table.update().where(table.c.id == delivery.id, ours).values(**values))
        ):
            continue
        if kind == "notification_deferred" and delivery.channel_id is not None:
            # Everything queued for that robot waits with it, so it all goes out as one message then.
            await session.execute(
                table.update()
                .where(
                    table.c.channel_id == delivery.channel_id,
                    table.c.state == "pending",
                    table.c.next_attempt_at < values["next_attempt_at"],
                )
                .values(next_attempt_at=values["next_attempt_at"])
            )
        transport = transports.get(delivery.kind)
        if kind == "notification_gone" and transport is not None and transport.gone is not None:
            await transport.gone(session, item)
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
