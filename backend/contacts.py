"""Per-user contact methods and notification rules: how each rung of the ladder reaches each person.

Contact methods: the user's Web Push devices (backend.push), an email address, a mobile number (SMS, and the
@-mention in the site's group bots). Rules: per method, whether it is used and after how many minutes without an
acknowledgement (0 = at once). A user without rules of their own gets their role's defaults; a user can see
and change their own (`GET/PUT /api/me/contact`, `PUT /api/me/rules`); `users contact NAME` sets them from the
CLI. Email, SMS and the @-mention are for urgent notifications (the ladder's rungs and tests); push and the
inbox carry everything.

For other modules:
    plans = await plans_for(session, user_ids, roles_by_user) -> {user_id: Plan}
"""

from __future__ import annotations

import argparse
import re
import secrets
from datetime import datetime
from typing import Annotated, Any, Literal, NamedTuple

import msgspec
from litestar import Request, Router, get, post, put
from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from . import clock
from .auth import CurrentUser, User
from .db import Base, UTCDateTime
from .errors import Problem
from .outbox import PushDelivery

METHODS = ("push", "email", "sms", "mention")
Method = Literal["push", "email", "sms", "mention"]
# (enabled, after_minutes) per method, per role: managers get SMS when a rung is not acknowledged in 5 minutes.
DEFAULT_RULES: dict[str, dict[str, tuple[bool, int]]] = {
    "agent": {"push": (True, 0), "email": (False, 0), "sms": (False, 0), "mention": (False, 0)},
    "lead": {"push": (True, 0), "email": (True, 0), "sms": (False, 10), "mention": (True, 0)},
    "manager": {"push": (True, 0), "email": (True, 0), "sms": (True, 5), "mention": (True, 0)},
    "admin": {"push": (True, 0), "email": (True, 0), "sms": (False, 10), "mention": (False, 0)},
}
EMAIL = re.compile(r"^[^@\s<>\"',;]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
MOBILE = re.compile(r"^\+?[0-9][0-9 -]{5,19}$")
Req = Request[CurrentUser, str, Any]


class ContactMethod(Base):
    __tablename__ = "contact_methods"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    mobile: Mapped[str | None] = mapped_column(String(32), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class NotificationRule(Base):
    __tablename__ = "notification_rules"
    __table_args__ = (UniqueConstraint("user_id", "method"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    after_minutes: Mapped[int] = mapped_column(Integer, default=0)


class Plan(NamedTuple):
    """How one user is reached: method -> minutes to wait (enabled methods only), and where."""

    after: dict[str, int]
    email: str | None
    mobile: str | None


def normal_mobile(mobile: str) -> str:
    """Digits only, a mainland number without +86: what the group bots' @-mention fields want."""
    digits = "".join(c for c in mobile if c.isdigit())
    return digits[2:] if digits.startswith("86") and len(digits) == 13 else digits


async def rules_of(
    session: AsyncSession, user_ids: list[int], roles: dict[int, str]
) -> dict[int, dict[str, tuple[bool, int]]]:
    own: dict[int, dict[str, tuple[bool, int]]] = {}
    if user_ids:
        for rule in (
            await session.execute(select(NotificationRule).where(NotificationRule.user_id.in_(user_ids)))
        ).scalars():
            own.setdefault(rule.user_id, {})[rule.method] = (rule.enabled, rule.after_minutes)
    return {u: {**DEFAULT_RULES.get(roles[u], DEFAULT_RULES["agent"]), **own.get(u, {})} for u in user_ids}


async def plans_for(session: AsyncSession, user_ids: list[int], roles: dict[int, str]) -> dict[int, Plan]:
    rules = await rules_of(session, user_ids, roles)
    contacts = (
        {
            c.user_id: c
            for c in (
                await session.execute(select(ContactMethod).where(ContactMethod.user_id.in_(user_ids)))
            ).scalars()
        }
        if user_ids
        else {}
    )
    plans = {}
    for user_id in user_ids:
        contact = contacts.get(user_id)
        after = {m: minutes for m, (on, minutes) in rules[user_id].items() if on}
        plans[user_id] = Plan(after, contact.email if contact else None, contact.mobile if contact else None)
    return plans


def personal_delivery(
    site_id: int, user_id: int, kind: str, address: str, message: dict[str, Any], at: datetime, **extra: Any
) -> PushDelivery:
    return PushDelivery(
        site_id=site_id,
        kind=kind,
        user_id=user_id,
        address=address,
        urgency="high",
        state="pending",
        attempts=0,
        next_attempt_at=extra.pop("send_at", at),
        receipt=secrets.token_urlsafe(16),
        message=message,
        created_at=at,
        **extra,
    )


async def set_contact(
    session: AsyncSession, user_id: int, email: str | None, mobile: str | None, at: datetime
) -> ContactMethod:
    """Set both (None or "" clears one)."""
    contact = await session.get(ContactMethod, user_id)
    if contact is None:
        contact = ContactMethod(user_id=user_id)
        session.add(contact)
    contact.email, contact.mobile, contact.updated_at = email or None, mobile or None, at
    await session.flush()
    return contact


def contact_errors(email: str | None, mobile: str | None) -> dict[str, str]:
    errors = {}
    if email and not EMAIL.fullmatch(email):
        errors["email"] = "is not an email address"
    if mobile and not MOBILE.fullmatch(mobile):
        errors["mobile"] = "is not a mobile number (digits, optionally +country code)"
    return errors


# ---------------------------------------------------------------- API


class ContactIn(msgspec.Struct, forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(max_length=320)] | None = None
    mobile: Annotated[str, msgspec.Meta(max_length=32)] | None = None


class RuleIn(msgspec.Struct, forbid_unknown_fields=True):
    method: Method
    enabled: bool
    after_minutes: Annotated[int, msgspec.Meta(ge=0, le=24 * 60)] = 0


class RulesIn(msgspec.Struct, forbid_unknown_fields=True):
    rules: Annotated[list[RuleIn], msgspec.Meta(max_length=8)]


class TestIn(msgspec.Struct, forbid_unknown_fields=True):
    method: Literal["email", "sms"]


async def contact_out(request: Req, db: AsyncSession) -> dict[str, Any]:
    user = request.user
    contact = await db.get(ContactMethod, user.id)
    rules = (await rules_of(db, [user.id], {user.id: user.role}))[user.id]
    own = {
        r.method
        for r in (
            await db.execute(select(NotificationRule).where(NotificationRule.user_id == user.id))
        ).scalars()
    }
    settings = request.app.state.settings
    return {
        "email": contact.email if contact else None,
        "mobile": contact.mobile if contact else None,
        "rules": [
            {"method": m, "enabled": rules[m][0], "after_minutes": rules[m][1], "default": m not in own}
            for m in METHODS
        ],
        "available": {
            "email": bool(settings.smtp_url),
            "sms": bool(settings.sms_access_key_id and settings.sms_template),
        },
    }


@get("/api/me/contact", summary="My contact methods and notification rules (role defaults where I set none)")
async def my_contact(request: Req, db: AsyncSession) -> dict[str, Any]:
    return await contact_out(request, db)


@put("/api/me/contact", summary="Set my email address and mobile number")
async def set_my_contact(request: Req, db: AsyncSession, data: ContactIn) -> dict[str, Any]:
    email, mobile = (data.email or "").strip(), (data.mobile or "").strip()
    if errors := contact_errors(email, mobile):
        raise Problem(422, "These contact methods are not valid.", errors=errors, code="contact.invalid")
    await set_contact(db, request.user.id, email, mobile, await clock.now(request.app, db))
    return await contact_out(request, db)


@put("/api/me/rules", summary="Set my notification rules (how each method reaches me, and after how long)")
async def set_my_rules(request: Req, db: AsyncSession, data: RulesIn) -> dict[str, Any]:
    existing = {
        r.method: r
        for r in (
            await db.execute(select(NotificationRule).where(NotificationRule.user_id == request.user.id))
        ).scalars()
    }
    for rule in data.rules:
        row = existing.get(rule.method)
        if row is None:
            row = NotificationRule(user_id=request.user.id, method=rule.method)
            db.add(row)
            existing[rule.method] = row
        row.enabled, row.after_minutes = rule.enabled, rule.after_minutes
    await db.flush()
    return await contact_out(request, db)


TEST_MESSAGE = {
    "kind": "test",
    "title": {"zh-CN": "测试通知", "en": "Test notification"},
    "body": {
        "zh-CN": "这是应急工作台的测试通知：升级时会这样联系您。",
        "en": "A test from Outage Desk: this is how escalations will reach you.",
    },
    "drill": False,
}


@post("/api/me/contact/test", status_code=202, summary="Send myself a test by email or SMS")
async def test_contact(request: Req, db: AsyncSession, data: TestIn) -> dict[str, Any]:
    contact = await db.get(ContactMethod, request.user.id)
    address = (contact.email if data.method == "email" else contact.mobile) if contact else None
    if not address:
        raise Problem(
            409,
            f"Set your {'email address' if data.method == 'email' else 'mobile number'} first.",
            code="contact.no_email" if data.method == "email" else "contact.no_sms",
        )
    at = await clock.now(request.app, db)
    row = personal_delivery(request.user.site_id, request.user.id, data.method, address, TEST_MESSAGE, at)
    db.add(row)
    await db.flush()
    return {"delivery": row.id}


@get("/api/me/deliveries", summary="My latest email / SMS deliveries and how they went")
async def my_deliveries(request: Req, db: AsyncSession) -> list[dict[str, Any]]:
    rows = (
        await db.execute(
            select(PushDelivery)
            .where(PushDelivery.user_id == request.user.id, PushDelivery.kind.in_(("email", "sms")))
            .order_by(PushDelivery.id.desc())
            .limit(20)
        )
    ).scalars()
    return [
        {
            "id": d.id,
            "kind": d.kind,
            "state": d.state,
            "error": d.last_error,
            "sent_at": d.sent_at,
            "created_at": d.created_at,
        }
        for d in rows
    ]


router = Router(
    path="/",
    tags=["contacts"],
    route_handlers=[my_contact, set_my_contact, set_my_rules, test_contact, my_deliveries],
)


# ---------------------------------------------------------------- CLI


def cmd_contact(args: argparse.Namespace) -> int:
    if errors := contact_errors(args.email, args.mobile):
        for field, error in errors.items():
            print(f"{field}: {error}")
        return 2

    async def change(session: Any) -> str | None:
        user = (await session.execute(select(User).where(User.username == args.name))).scalar_one_or_none()
        if user is None:
            return None
        contact = await session.get(ContactMethod, user.id)
        email = args.email if args.email is not None else (contact.email if contact else None)
        mobile = args.mobile if args.mobile is not None else (contact.mobile if contact else None)
        await set_contact(session, user.id, email, mobile, await clock.now(None, session))
        return f"{user.username}: email {email or '—'}, mobile {mobile or '—'}"

    message = args.run(change)
    if message is None:
        print(f"no user {args.name!r}")
        return 2
    print(message)
    return 0


def add_users_cli(users: Any, run: Any) -> None:
    """`users contact NAME [--email ADDR] [--mobile +86…]` ("" clears one). `run(fn)`: see channels.add_cli."""
    contact = users.add_parser("contact", help="set a user's email address and mobile number")
    contact.add_argument("name")
    contact.add_argument("--email")
    contact.add_argument("--mobile")
    contact.set_defaults(fn=cmd_contact, run=run)
