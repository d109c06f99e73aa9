"""Notifications: an in-app inbox row for every recipient, plus Web Push deliveries through an outbox.

For other modules:
    await notify(session, site_id, roles, title, body, incident_id=None, kind="info", urgency="normal")
        -> {"users": n, "notifications": [ids], "deliveries": m}
title / body: a string or {"zh-CN": …, "en": …}. Notifications about a drill incident are prefixed
"【演练】" / "[DRILL]" here, so no caller can forget. The caller commits; the push worker sends.

Delivery states: pending -> sending (claimed, with a deadline: a crashed sender's rows are taken again
after it) -> sent | failed (retried with backoff, or given up when next_attempt_at is NULL)
| gone (the push service said 404/410: that subscription is deleted) | cancelled (ack / resolve).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import hmac
import json
import logging
import os
import random
import secrets
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import aiohttp
import msgspec
from litestar import Request, Response, Router, delete, get, post
from litestar.params import Parameter
from py_vapid import Vapid02, b64urlencode
from pywebpush import WebPushException, webpush_async
from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from . import escalation, incidents
from .auth import CurrentUser, User
from .config import Settings
from .db import Base, UTCDateTime, db_now
from .errors import Problem

log = logging.getLogger("outage_desk")

SEND_TIMEOUT = 10  # seconds for one POST to a push service
MAX_ATTEMPTS = 8
BACKOFF_BASE = 10  # seconds; doubled per attempt, with jitter
BACKOFF_CAP = 15 * 60
RETRY_AFTER_CAP = 3600
BATCH = 200  # deliveries claimed per round
PARALLEL = 50  # requests in flight per sender (push services are far away: overlap the waits)
# A 'sending' row older than this belongs to a sender that died. Longer than a whole claimed batch can take
# (every request timing out, PARALLEL at a time), so a slow but live sender is never doubled up.
SEND_LEASE = timedelta(seconds=SEND_TIMEOUT * (BATCH // PARALLEL + 1) + 30)
TTL = {"high": 3600, "normal": 12 * 3600}  # seconds a push service may hold the message for an offline phone
DRILL_PREFIX = {"zh-CN": "【演练】", "en": "[DRILL] "}
MAX_PAYLOAD = 3000  # bytes of JSON; Web Push allows ~4 KB after encryption
# A VAPID JWT is valid for one push service (its `aud`) until its `exp` (at most 24 h ahead). Signing one per
# message is an ECDSA signature each time for nothing: sign one per push-service origin, valid 12 h, and use
# it for 10 minutes, as production senders do.
VAPID_VALID = 12 * 3600
VAPID_REUSE = 10 * 60
_vapid_headers: dict[tuple[str, str, str], tuple[str, float]] = {}  # (key, sub, aud) -> (header, sign again at)


# ---------------------------------------------------------------- models

class PushSubscription(Base):
    __tablename__ = "push_subscriptions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    endpoint: Mapped[str] = mapped_column(String(1000), unique=True)
    p256dh: Mapped[str] = mapped_column(String(200))
    auth: Mapped[str] = mapped_column(String(100))
    user_agent: Mapped[str | None] = mapped_column(String(300), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the PWA re-syncs on every load


class Notification(Base):
    """The in-app inbox: every notification, whether or not push reached the phone."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_user_id_id", "user_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), nullable=True,
                                                    index=True)
    kind: Mapped[str] = mapped_column(String(32))
    urgency: Mapped[str] = mapped_column(String(8), default="normal")
    drill: Mapped[bool] = mapped_column(Boolean, default=False)
    title: Mapped[dict] = mapped_column(JSON)
    body: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class PushDelivery(Base):
    """The outbox: one row per (notification, subscription)."""

    __tablename__ = "push_deliveries"
    __table_args__ = (Index("ix_push_deliveries_state_next_attempt_at", "state", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id", ondelete="CASCADE"), index=True)
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("push_subscriptions.id", ondelete="SET NULL"),
                                                        nullable=True, index=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), nullable=True,
                                                    index=True)
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


# ---------------------------------------------------------------- VAPID keys

def vapid_key(settings: Settings) -> Vapid02:
    """Load the VAPID key, making it on first run. Written via a temp file and a hard link, so two
    processes starting at once end up with the same key."""
    path = Path(settings.vapid_key_path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        vapid = Vapid02()
        vapid.generate_keys()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        vapid.save_key(str(tmp))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won; use its key
        finally:
            tmp.unlink(missing_ok=True)
    return Vapid02.from_file(str(path))


def public_key_of(vapid: Vapid02) -> str:
    """The applicationServerKey browsers subscribe with: the uncompressed P-256 point, base64url."""
    from cryptography.hazmat.primitives import serialization

    raw = vapid.public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return b64urlencode(raw)


def vapid_public_key(settings: Settings) -> str:
    return public_key_of(vapid_key(settings))


async def on_startup(app: Any) -> None:
    app.state.vapid = vapid_key(app.state.settings)
    # One shared HTTP session for every push service request (connection reuse).
    app.state.push_http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT))


async def on_shutdown(app: Any) -> None:
    http = getattr(app.state, "push_http", None)
    if http is not None:
        await http.close()


# ---------------------------------------------------------------- notify

def _texts(value: str | dict[str, str]) -> dict[str, str]:
    if isinstance(value, str):
        return {"zh-CN": value, "en": value}
    return {"zh-CN": value.get("zh-CN") or value.get("en", ""), "en": value.get("en") or value.get("zh-CN", "")}


async def notify(session: AsyncSession, site_id: int, roles: list[str] | tuple[str, ...],
                 title: str | dict[str, str], body: str | dict[str, str], incident_id: int | None = None,
                 kind: str = "info", urgency: str = "normal", *, user_ids: list[int] | None = None,
                 exclude_user_id: int | None = None, at: datetime | None = None) -> dict[str, Any]:
    """Inbox rows for every active user with one of `roles` at the site (or exactly `user_ids`), and a
    pending push delivery for each of their subscriptions. The caller commits."""
    at = at or await db_now(session)
    drill = False
    if incident_id is not None:
        incident = await session.get(incidents.Incident, incident_id)
        drill = bool(incident and incident.drill)
    title, body = _texts(title), _texts(body)
    if drill:
        title = {lang: DRILL_PREFIX[lang] + text for lang, text in title.items()}
    query = select(User.id).where(User.site_id == site_id, User.active.is_(True))
    query = query.where(User.id.in_(user_ids)) if user_ids is not None else query.where(User.role.in_(list(roles)))
    if exclude_user_id is not None:
        query = query.where(User.id != exclude_user_id)
    users = list((await session.execute(query.order_by(User.id))).scalars())
    notes = [Notification(site_id=site_id, user_id=u, incident_id=incident_id, kind=kind, urgency=urgency,
                          drill=drill, title=title, body=body, created_at=at) for u in users]
    session.add_all(notes)
    await session.flush()
    by_user = {n.user_id: n for n in notes}
    subscriptions = (await session.execute(select(PushSubscription.id, PushSubscription.user_id).where(
        PushSubscription.site_id == site_id, PushSubscription.user_id.in_(users)))).all() if users else []
    session.add_all([PushDelivery(site_id=site_id, notification_id=by_user[user_id].id, subscription_id=sub_id,
                                  incident_id=incident_id, user_id=user_id, urgency=urgency, state="pending",
                                  attempts=0, next_attempt_at=at, receipt=secrets.token_urlsafe(16), created_at=at)
                     for sub_id, user_id in subscriptions])
    await session.flush()
    return {"users": len(users), "notifications": [n.id for n in notes], "deliveries": len(subscriptions)}


async def cancel_pending(session: AsyncSession, incident_id: int, at: datetime) -> int:
    """Ack / resolve: deliveries for this incident not sent yet are not needed any more."""
    result = await session.execute(
        update(PushDelivery).where(PushDelivery.incident_id == incident_id,
                                   PushDelivery.state.in_(("pending", "failed")),
                                   PushDelivery.next_attempt_at.is_not(None))
        .values(state="cancelled", next_attempt_at=None, last_error="cancelled (acknowledged or resolved)"))
    return result.rowcount or 0


# ---------------------------------------------------------------- delivery

def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def payload_for(note: Notification, delivery: PushDelivery) -> str:
    """Ids plus a short title and body in both languages; the service worker picks one."""
    data = {"v": 1, "id": note.id, "delivery": delivery.id, "receipt": delivery.receipt,
            "incident_id": note.incident_id, "kind": note.kind, "urgency": note.urgency, "drill": note.drill,
            "title": {k: _short(v, 120) for k, v in note.title.items()},
            "body": {k: _short(v, 300) for k, v in note.body.items()}}
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


def vapid_authorization(vapid: Vapid02, public_key: str, subject: str, endpoint: str) -> str:
    """The `Authorization: vapid t=…,k=…` header for the push service behind `endpoint`, signed at most
    VAPID_REUSE seconds ago (claims: aud = that service's origin, sub, exp 12 h after signing)."""
    url = urlsplit(endpoint)
    cache_key = (public_key, subject, f"{url.scheme}://{url.netloc}")
    now = time.time()
    cached = _vapid_headers.get(cache_key)
    if cached is not None and now < cached[1]:
        return cached[0]
    for stale in [k for k, (_h, until) in _vapid_headers.items() if until <= now]:
        del _vapid_headers[stale]  # bounded: only origins used in the last few minutes stay
    header = vapid.sign({"sub": subject, "aud": cache_key[2], "exp": int(now) + VAPID_VALID})["Authorization"]
    _vapid_headers[cache_key] = (header, now + VAPID_REUSE)
    return header


async def _send(state: Any, sub: PushSubscription, note: Notification, delivery: PushDelivery,
                public_key: str) -> dict[str, Any]:
    headers = {"Urgency": "high" if note.urgency == "high" else "normal",
               "Authorization": vapid_authorization(state.vapid, public_key, state.settings.vapid_subject,
                                                    sub.endpoint)}
    if note.incident_id is not None:
        headers["Topic"] = f"incident-{note.incident_id}"  # a newer message replaces an undelivered older one
    try:
        # No vapid_claims: pywebpush then signs nothing and sends our Authorization header as it is.
        response = await webpush_async(
            subscription_info={"endpoint": sub.endpoint, "keys": {"p256dh": sub.p256dh, "auth": sub.auth}},
            data=payload_for(note, delivery), ttl=TTL.get(note.urgency, TTL["normal"]), timeout=SEND_TIMEOUT,
            headers=headers, aiohttp_session=state.push_http)
        return {"status": response.status}
    except WebPushException as exc:
        return {"status": exc.status_code, "retry_after": exc.retry_after, "error": exc.message[:300]}
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        return {"status": None, "error": f"{type(exc).__name__}: {exc}"[:300]}


def _claimable(at: datetime) -> Any:
    return or_(and_(PushDelivery.state.in_(("pending", "failed")), PushDelivery.next_attempt_at <= at,
                    PushDelivery.attempts < MAX_ATTEMPTS),
               and_(PushDelivery.state == "sending", PushDelivery.deadline_at <= at))


async def deliver_due(app: Any) -> int:
    """Claim due deliveries (SKIP LOCKED on PostgreSQL, one guarded UPDATE on SQLite), send them outside
    any transaction, then record each outcome. Returns how many were attempted."""
    state = getattr(app, "state", app)
    async with state.sessionmaker() as session:
        at = await escalation.now(state, session)
        due = select(PushDelivery.id).where(_claimable(at)).order_by(PushDelivery.next_attempt_at, PushDelivery.id)
        due = due.limit(BATCH)
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        deadline = at + SEND_LEASE  # also marks this claim: only its holder may record the outcome
        claimed = list((await session.execute(
            update(PushDelivery).where(PushDelivery.id.in_(due.scalar_subquery()), _claimable(at))
            .values(state="sending", deadline_at=deadline, attempts=PushDelivery.attempts + 1)
            .returning(PushDelivery.id))).scalars())
        if not claimed:
            await session.rollback()
            return 0
        rows = (await session.execute(
            select(PushDelivery, Notification, PushSubscription, User.display_name)
            .join(Notification, Notification.id == PushDelivery.notification_id)
            .join(User, User.id == PushDelivery.user_id)
            .outerjoin(PushSubscription, PushSubscription.id == PushDelivery.subscription_id)
            .where(PushDelivery.id.in_(claimed)).order_by(PushDelivery.id))).all()
        await session.commit()

    limit = asyncio.Semaphore(PARALLEL)
    public_key = public_key_of(state.vapid)

    async def one(delivery: PushDelivery, note: Notification, sub: PushSubscription | None) -> dict[str, Any]:
        if sub is None:
            return {"status": None, "gone": True, "error": "subscription removed"}
        async with limit:
            return await _send(state, sub, note, delivery, public_key)

    outcomes = await asyncio.gather(*(one(d, n, s) for d, n, s, _ in rows))
    async with state.sessionmaker() as session:
        at = await escalation.now(state, session)
        await _record(session, [(d, s, name, o) for (d, _n, s, name), o in zip(rows, outcomes, strict=True)],
                      deadline, at)
        await session.commit()
    return len(rows)


async def _record(session: AsyncSession, results: list[tuple[PushDelivery, PushSubscription | None, str, dict]],
                  deadline: datetime, at: datetime) -> None:
    """Write each outcome, but only where our claim still holds (same deadline, still 'sending'): a sender
    whose lease ran out changes nothing. Accepted deliveries (the common case) go in one statement."""
    table = PushDelivery.__table__
    ours = and_(table.c.state == "sending", table.c.deadline_at == deadline)
    events: list[tuple[PushDelivery, str, dict[str, Any]]] = []

    def info(delivery: PushDelivery, name: str, status: int | None) -> dict[str, Any]:
        return {"delivery": delivery.id, "user_id": delivery.user_id, "user": name, "status": status,
                "attempt": delivery.attempts}

    accepted = [(d, name, o["status"]) for d, _s, name, o in results if o.get("status") and 200 <= o["status"] < 300]
    for status in {s for _d, _n, s in accepted}:
        group = {d.id: (d, name) for d, name, s in accepted if s == status}
        done = (await session.execute(table.update().where(table.c.id.in_(list(group)), ours).values(
            state="sent", sent_at=at, next_attempt_at=None, last_status=status, last_error=None, deadline_at=None)
            .returning(table.c.id))).scalars()
        events += [(group[i][0], "notification_sent", info(group[i][0], group[i][1], status)) for i in done]

    for delivery, sub, name, outcome in results:
        status = outcome.get("status")
        if status and 200 <= status < 300:
            continue
        values: dict[str, Any] = {"last_status": status, "last_error": outcome.get("error"), "deadline_at": None}
        if outcome.get("gone") or status in (404, 410):
            values.update(state="gone", next_attempt_at=None)
            kind, data = "notification_gone", info(delivery, name, status)
        else:
            retryable = status is None or status == 429 or status >= 500
            if retryable and delivery.attempts < MAX_ATTEMPTS:
                wait = _retry_after(outcome.get("retry_after"), at) if status == 429 else _backoff(delivery.attempts)
                retry_at = at + timedelta(seconds=wait)
            else:
                retry_at = None  # 400/401/403/413 or out of attempts: give up, the inbox still has it
            values.update(state="failed", next_attempt_at=retry_at)
            kind, data = "notification_failed", {**info(delivery, name, status), "error": outcome.get("error"),
                                                 "retry_at": retry_at.isoformat() if retry_at else None}
        if not (await session.execute(table.update().where(table.c.id == delivery.id, ours).values(**values))).rowcount:
            continue
        if kind == "notification_gone" and sub is not None:
            # That exact subscription is dead: remove it and whatever else was queued for it.
            await session.execute(table.update().where(
                table.c.subscription_id == sub.id, table.c.state.in_(("pending", "failed")))
                .values(state="gone", next_attempt_at=None))
            await session.execute(PushSubscription.__table__.delete().where(PushSubscription.id == sub.id))
        events.append((delivery, kind, data))

    session.add_all([incidents.IncidentEvent(incident_id=d.incident_id, kind=kind, actor_id=None, data=data, at=at)
                     for d, kind, data in sorted(events, key=lambda e: e[0].id) if d.incident_id is not None])


async def worker(app: Any) -> None:
    """Runs for the app's lifetime: send what is due, sleep when nothing is."""
    while True:
        try:
            sent = await deliver_due(app)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("push worker round failed")
            sent = 0
        if not sent:
            await asyncio.sleep(escalation.worker_interval(app.state))


workers = [worker]


# ---------------------------------------------------------------- API

Req = Request[CurrentUser, str, Any]
B64 = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]+={0,2}$", max_length=200)]


class KeysIn(msgspec.Struct, forbid_unknown_fields=True):
    p256dh: B64
    auth: B64


class SubscriptionIn(msgspec.Struct, forbid_unknown_fields=True):
    endpoint: Annotated[str, msgspec.Meta(pattern=r"^https?://", max_length=1000)]
    keys: KeysIn
    expirationTime: float | None = None  # what PushSubscription.toJSON() sends; unused


class ReceiptIn(msgspec.Struct, forbid_unknown_fields=True):
    delivery: int
    receipt: Annotated[str, msgspec.Meta(max_length=64)]


def _b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _check_keys(keys: KeysIn) -> None:
    errors = {}
    try:
        point = _b64decode(keys.p256dh.rstrip("="))
        if len(point) != 65 or point[0] != 4:
            errors["keys.p256dh"] = "must be an uncompressed P-256 public key (65 bytes, base64url)"
    except (binascii.Error, ValueError):
        errors["keys.p256dh"] = "is not base64url"
    try:
        if len(_b64decode(keys.auth.rstrip("="))) != 16:
            errors["keys.auth"] = "must be 16 bytes, base64url"
    except (binascii.Error, ValueError):
        errors["keys.auth"] = "is not base64url"
    if errors:
        raise Problem(422, "This push subscription's keys are not valid.", errors=errors)


@get("/api/push/vapid-public-key", summary="The VAPID public key browsers subscribe with (public)")
async def get_vapid_public_key(request: Request) -> dict[str, str]:
    return {"public_key": public_key_of(request.app.state.vapid)}


@post("/api/push/subscriptions", status_code=200,
      summary="Save this device's push subscription for me (upsert by endpoint)")
async def subscribe(request: Req, db: AsyncSession, data: SubscriptionIn) -> dict[str, Any]:
    _check_keys(data.keys)
    user = request.user
    at = await escalation.now(request.app, db)
    agent = (request.headers.get("user-agent") or "")[:300] or None
    sub = (await db.execute(select(PushSubscription).where(PushSubscription.endpoint == data.endpoint))
           ).scalar_one_or_none()
    created = sub is None
    if sub is None:
        sub = PushSubscription(endpoint=data.endpoint, created_at=at)
        db.add(sub)
    # A shared phone: whoever logged in last owns the device's subscription.
    sub.site_id, sub.user_id, sub.p256dh, sub.auth = user.site_id, user.id, data.keys.p256dh, data.keys.auth
    sub.user_agent, sub.last_seen_at = agent, at
    await db.commit()
    return {"id": sub.id, "endpoint": sub.endpoint, "created": created}


@delete("/api/push/subscriptions", status_code=204, summary="Unsubscribe this device (?endpoint=…)")
async def unsubscribe(request: Req, db: AsyncSession,
                      endpoint: Annotated[str, Parameter(query="endpoint", max_length=1000)]) -> None:
    result = await db.execute(PushSubscription.__table__.delete().where(
        PushSubscription.endpoint == endpoint, PushSubscription.user_id == request.user.id))
    if not result.rowcount:
        raise Problem(404, "You have no push subscription with that endpoint.")
    await db.commit()


@get("/api/push/subscriptions", summary="My devices that receive push")
async def my_subscriptions(request: Req, db: AsyncSession) -> list[dict[str, Any]]:
    rows = (await db.execute(select(PushSubscription).where(PushSubscription.user_id == request.user.id)
                             .order_by(PushSubscription.id))).scalars()
    return [{"id": s.id, "endpoint": s.endpoint, "user_agent": s.user_agent, "created_at": s.created_at,
             "last_seen_at": s.last_seen_at} for s in rows]


@post("/api/push/test", status_code=200, summary="Send myself a test notification (inbox + push)")
async def send_test(request: Req, db: AsyncSession) -> dict[str, Any]:
    at = await escalation.now(request.app, db)
    result = await notify(db, request.user.site_id, [], {"zh-CN": "测试通知", "en": "Test notification"},
                          {"zh-CN": "这是一条测试通知。如果手机上也弹出了它，推送工作正常。",
                           "en": "This is a test. If it also popped up on your phone, push works."},
                          kind="test", user_ids=[request.user.id], at=at)
    await db.commit()
    return result


@post("/api/push/receipts", status_code=204, summary="The service worker reports a push received (public)")
async def receipt(request: Request, db: AsyncSession, data: ReceiptIn) -> None:
    delivery = await db.get(PushDelivery, data.delivery)
    if delivery is None or not hmac.compare_digest(delivery.receipt, data.receipt):
        raise Problem(404, "Unknown delivery.")
    if delivery.delivered_at is None:
        at = await escalation.now(request.app, db)
        delivery.delivered_at = at
        if delivery.incident_id is not None:
            user = await db.get(User, delivery.user_id)
            await incidents.add_event(db, delivery.incident_id, "notification_delivered", None,
                                      {"delivery": delivery.id, "user_id": delivery.user_id,
                                       "user": user.display_name if user else None}, at=at)
        await db.commit()


def inbox_out(note: Notification) -> dict[str, Any]:
    return {"id": note.id, "kind": note.kind, "urgency": note.urgency, "drill": note.drill,
            "incident_id": note.incident_id, "title": note.title, "body": note.body, "created_at": note.created_at,
            "read_at": note.read_at}


@get("/api/inbox", summary="My notifications, newest first, with the unread count")
async def inbox(request: Req, db: AsyncSession,
                unread: Annotated[bool, Parameter(query="unread")] = False,
                limit: Annotated[int, Parameter(query="limit", ge=1, le=200)] = 50) -> Response[dict[str, Any]]:
    mine = Notification.user_id == request.user.id
    query = select(Notification).where(mine)
    if unread:
        query = query.where(Notification.read_at.is_(None))
    notes = (await db.execute(query.order_by(Notification.id.desc()).limit(limit))).scalars()
    count = (await db.execute(select(func.count()).select_from(Notification)
                              .where(mine, Notification.read_at.is_(None)))).scalar_one()
    return Response({"items": [inbox_out(n) for n in notes], "unread": count}, headers={"Cache-Control": "no-store"})


@post("/api/inbox/{notification_id:int}/read", status_code=200, summary="Mark one notification read")
async def mark_read(request: Req, db: AsyncSession, notification_id: int) -> dict[str, Any]:
    note = await db.get(Notification, notification_id)
    if note is None or note.user_id != request.user.id:
        raise Problem(404, "No such notification in your inbox.")
    if note.read_at is None:
        note.read_at = await escalation.now(request.app, db)
        await db.commit()
    return inbox_out(note)


@post("/api/inbox/read-all", status_code=200, summary="Mark all my notifications read")
async def mark_all_read(request: Req, db: AsyncSession) -> dict[str, int]:
    at = await escalation.now(request.app, db)
    result = await db.execute(update(Notification).where(Notification.user_id == request.user.id,
                                                         Notification.read_at.is_(None)).values(read_at=at))
    await db.commit()
    return {"marked": result.rowcount or 0}


router = Router(path="/", tags=["push"], route_handlers=[
    get_vapid_public_key, subscribe, unsubscribe, my_subscriptions, send_test, receipt, inbox, mark_read,
    mark_all_read])
