"""Web Push, the transport: browsers' subscriptions, the VAPID key, and sending one encrypted message to one
push service. What to send, to whom and when is the notifications outbox's business (backend.notifications).

In mainland China Chrome's push service (Google's) is unreachable; Firefox's and Edge's work. Push is one
contact method among several, never the only way an escalation reaches anyone.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import msgspec
from litestar import Request, Router, delete, get, post
from litestar.params import Parameter
from sqlalchemy import ForeignKey, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

if TYPE_CHECKING:
    from py_vapid import Vapid02

# cryptography and py_vapid (about 7 MB resident) are imported when the key is first used (a push sent, the
# public key asked for), not by a server that has nothing to push yet.

from . import clock, outbound
from .auth import CurrentUser
from .config import Settings, write_once
from .db import Base, UTCDateTime, affected, table_of
from .errors import Problem

log = logging.getLogger("outage_desk")
SEND_TIMEOUT = 10  # seconds for one POST to a push service
MAX_PAYLOAD = 3000  # bytes of JSON; Web Push allows ~4 KB after encryption
TTL = {"high": 3600, "normal": 12 * 3600}  # seconds a push service may hold the message for an offline phone
# A VAPID JWT is valid for one push service (its `aud`) until its `exp` (at most 24 h ahead). Signing one per
# message is an ECDSA signature each time for nothing: sign one per push-service origin, valid 12 h, and use
# it for 10 minutes, as production senders do.
VAPID_VALID = 12 * 3600
VAPID_REUSE = 10 * 60
_vapid_headers: dict[
    tuple[str, str, str], tuple[str, float]
] = {}  # (key, sub, aud) -> (header, sign again at)


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


# ---------------------------------------------------------------- VAPID keys


def vapid_key(settings: Settings) -> Vapid02:
    """Load the VAPID key, making it on first run (config.write_once: N processes starting at once agree)."""
    from py_vapid import Vapid02

    path = Path(settings.vapid_key_path)

    def make(tmp: Path) -> None:
        vapid = Vapid02()
        vapid.generate_keys()
        vapid.save_key(str(tmp))

    write_once(path, make)
    return Vapid02.from_file(str(path))


def public_key_of(vapid: Vapid02) -> str:
    """The applicationServerKey browsers subscribe with: the uncompressed P-256 point, base64url."""
    from cryptography.hazmat.primitives import serialization
    from py_vapid import b64urlencode

    raw = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64urlencode(raw)


def vapid_public_key(settings: Settings) -> str:
    return public_key_of(vapid_key(settings))


def vapid_of(state: Any) -> tuple[Vapid02, str]:
    """This app's VAPID key and its public key, loaded on first use (cli's `migrate --keys` made the file)."""
    if getattr(state, "vapid", None) is None:
        state.vapid = vapid_key(state.settings)
    if getattr(state, "vapid_public", None) is None:
        state.vapid_public = public_key_of(state.vapid)
    return state.vapid, state.vapid_public


async def on_startup(app: Any) -> None:
    app.state.vapid = app.state.vapid_public = None  # vapid_of(state) loads them
    # The app's one outbound HTTP client (connection reuse, and the outbound rules on every request); push is
    # its first user, so it is made here.
    settings = app.state.settings
    app.state.outbound = outbound.Client(settings.outbound_allow, SEND_TIMEOUT, settings.outbound_proxy)


async def on_shutdown(app: Any) -> None:
    client = getattr(app.state, "outbound", None)
    if client is not None:
        await client.close()


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


async def send(
    state: Any, sub: PushSubscription, payload: str, urgency: str, topic: str | None
) -> dict[str, Any]:
    """Encrypt and POST one message; returns {"status", "retry_after"?, "error"?, "permanent"?} and never
    raises. "error" is a short classification, never the push service's reply: whoever registered the
    endpoint chose who answers. "permanent": sending this again can never succeed."""
    try:
        state.outbound.rules.check_url(sub.endpoint)  # refused anyway when posting: spare the work
        # We encrypt and POST ourselves, through the outbound rules and without following redirects (pywebpush's
        # webpush_async posts with aiohttp's default, which follows them).
        body = encrypt(payload.encode(), sub.p256dh, sub.auth)
        authorization = vapid_authorization(*vapid_of(state), state.settings.vapid_subject, sub.endpoint)
    except outbound.Refused as exc:
        return {"status": None, "error": outbound.describe(exc), "permanent": True}
    except Exception as exc:  # a stored key that is not a P-256 point, an endpoint VAPID cannot name …
        log.warning("push delivery to subscription %s: cannot encrypt or sign: %r", sub.id, exc)
        return {"status": None, "error": "cannot encrypt or sign for this subscription", "permanent": True}
    headers = {
        "Content-Encoding": "aes128gcm",
        "TTL": str(TTL.get(urgency, TTL["normal"])),
        "Urgency": "high" if urgency == "high" else "normal",
        "Authorization": authorization,
    }
    if topic is not None:
        headers["Topic"] = topic  # a newer message replaces an undelivered older one
    try:
        reply = await state.outbound.post(sub.endpoint, data=body, headers=headers)
    except Exception as exc:  # refused by the rules, timeout, connection failure …
        return {
            "status": None,
            "error": outbound.describe(exc),
            "permanent": outbound.refusal(exc) is not None,
        }
    if 200 <= reply.status < 300:
        return {"status": reply.status}
    error = f"push service answered {reply.status}"
    if 300 <= reply.status < 400:
        error += " (redirects are not followed)"
    return {"status": reply.status, "retry_after": reply.headers.get("Retry-After"), "error": error}


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def payload_for(note: Any, delivery: Any, ack_url: str | None = None) -> str:
    """Ids plus a short title and body in both languages (the service worker picks one), and the personal
    acknowledge link of an escalation."""
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
    if ack_url:
        data["ack_url"] = ack_url
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    if len(text.encode()) > MAX_PAYLOAD:  # the app fetches the full text from the inbox anyway
        data["body"] = {}
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text


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


def _b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def encrypt(payload: bytes, p256dh: str, auth: str) -> bytes:
    """The message body for one subscription: RFC 8291 (aes128gcm) with a fresh ECDH key, exactly as
    pywebpush's WebPusher.encode makes it, without importing pywebpush (it loads requests, ~8 MB, for nothing)."""
    import http_ece
    from cryptography.hazmat.primitives.asymmetric import ec

    return http_ece.encrypt(
        payload,
        salt=None,
        private_key=ec.generate_private_key(ec.SECP256R1()),
        dh=_b64decode(p256dh.rstrip("=")),
        auth_secret=_b64decode(auth.rstrip("=")),
        version="aes128gcm",
    )


def _key_errors(keys: KeysIn) -> dict[str, str]:
    from cryptography.hazmat.primitives.asymmetric import ec

    errors = {}
    try:
        point = _b64decode(keys.p256dh.rstrip("="))
        if len(point) != 65 or point[0] != 4:
            errors["keys.p256dh"] = "must be an uncompressed P-256 public key (65 bytes, base64url)"
        else:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)  # raises if not on the curve
    except (binascii.Error, ValueError):
        errors.setdefault("keys.p256dh", "is not a P-256 public key (base64url)")
    try:
        if len(_b64decode(keys.auth.rstrip("="))) != 16:
            errors["keys.auth"] = "must be 16 bytes, base64url"
    except (binascii.Error, ValueError):
        errors["keys.auth"] = "is not base64url"
    return errors


def _same_keys(sub: PushSubscription, keys: KeysIn) -> bool:
    """The same browser subscription: only the browser holding it knows its keys (auth is a secret)."""
    try:
        return hmac.compare_digest(
            _b64decode(sub.p256dh.rstrip("=")), _b64decode(keys.p256dh.rstrip("="))
        ) and hmac.compare_digest(_b64decode(sub.auth.rstrip("=")), _b64decode(keys.auth.rstrip("=")))
    except (binascii.Error, ValueError):
        return False


@get("/api/push/vapid-public-key", summary="The VAPID public key browsers subscribe with (public)")
async def get_vapid_public_key(request: Request) -> dict[str, str]:
    return {"public_key": vapid_of(request.app.state)[1]}


@post(
    "/api/push/subscriptions",
    status_code=200,
    summary="Save this device's push subscription for me (upsert by endpoint)",
)
async def subscribe(request: Req, db: AsyncSession, data: SubscriptionIn) -> dict[str, Any]:
    errors = _key_errors(data.keys)
    try:
        await request.app.state.outbound.check(data.endpoint)
    except outbound.Refused as exc:
        errors["endpoint"] = f"is not a push service this server may send to ({exc})"
    if errors:
        raise Problem(
            422, "This push subscription is not valid.", errors=errors, code="push.invalid_subscription"
        )
    user = request.user
    at = await clock.now(request.app, db)
    agent = (request.headers.get("user-agent") or "")[:300] or None
    sub = (
        await db.execute(select(PushSubscription).where(PushSubscription.endpoint == data.endpoint))
    ).scalar_one_or_none()
    created = sub is None
    if sub is None:
        sub = PushSubscription(endpoint=data.endpoint, created_at=at)
        db.add(sub)
    elif sub.user_id != user.id and (sub.site_id != user.site_id or not _same_keys(sub, data.keys)):
        # Knowing an endpoint is not owning it: only the same browser subscription (a shared phone where
        # someone else logs in) moves to another user, and never to another site.
        raise Problem(
            409,
            "This push endpoint belongs to another user. To get notifications here, unsubscribe "
            "this browser from push and subscribe again (that makes a new endpoint).",
            code="push.endpoint_taken",
        )
    sub.site_id, sub.user_id, sub.p256dh, sub.auth = user.site_id, user.id, data.keys.p256dh, data.keys.auth
    sub.user_agent, sub.last_seen_at = agent, at
    await db.flush()
    return {"id": sub.id, "endpoint": sub.endpoint, "created": created}


@delete("/api/push/subscriptions", status_code=204, summary="Unsubscribe this device (?endpoint=…)")
async def unsubscribe(
    request: Req, db: AsyncSession, endpoint: Annotated[str, Parameter(query="endpoint", max_length=1000)]
) -> None:
    result = await db.execute(
        table_of(PushSubscription)
        .delete()
        .where(PushSubscription.endpoint == endpoint, PushSubscription.user_id == request.user.id)
    )
    if not affected(result):
        raise Problem(404, "You have no push subscription with that endpoint.", code="push.not_found")


@get("/api/push/subscriptions", summary="My devices that receive push")
async def my_subscriptions(request: Req, db: AsyncSession) -> list[dict[str, Any]]:
    rows = (
        await db.execute(
            select(PushSubscription)
            .where(PushSubscription.user_id == request.user.id)
            .order_by(PushSubscription.id)
        )
    ).scalars()
    return [
        {
            "id": s.id,
            "endpoint": s.endpoint,
            "user_agent": s.user_agent,
            "created_at": s.created_at,
            "last_seen_at": s.last_seen_at,
        }
        for s in rows
    ]


router = Router(
    path="/", tags=["push"], route_handlers=[get_vapid_public_key, subscribe, unsubscribe, my_subscriptions]
)
