"""A site's team channels (WeCom / DingTalk / Feishu group robots, Standard-Webhooks webhooks) that receive the
ladder's rungs for chosen roles: model, admin API (each with its last delivery outcome), CLI, and
`enqueue(session, site_id, roles, message, incident_id=, at=)`, one outbox delivery per matching channel (sent
by backend.bots). Admin changes go into the audit log without the URL's secret parts or the signing secret."""

from __future__ import annotations

import argparse
import secrets
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlsplit

import msgspec
from litestar import Request, Router, delete, get, post
from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from . import audit, clock, outbound
from .auth import ROLES, CurrentUser, Site, requires
from .db import Base, UTCDateTime, get_for_site
from .errors import Problem
from .outbox import PushDelivery

KINDS = ("wecom", "dingtalk", "feishu", "webhook")
Kind = Literal["wecom", "dingtalk", "feishu", "webhook"]
Req = Request[CurrentUser, str, Any]


class Channel(Base):
    __tablename__ = "channels"
    __table_args__ = (UniqueConstraint("site_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100))
    url: Mapped[str] = mapped_column(String(1000))  # holds the robot's key / access token: never shown whole
    secret: Mapped[str | None] = mapped_column(String(200), nullable=True)  # signing secret (加签 / whsec_…)
    roles: Mapped[list] = mapped_column(JSON, default=list)  # the ladder's rungs for these roles come here
    state: Mapped[str] = mapped_column(String(16), default="active")  # active | dead (the provider said so)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


def masked(url: str) -> str:
    """The URL with its secret parts hidden: host and path start only (keys live in the query or path end)."""
    parts = urlsplit(url)
    path = parts.path if len(parts.path) <= 24 else parts.path[:16] + "…"
    return f"{parts.scheme}://{parts.netloc}{path}" + ("?…" if parts.query else "")


def shape_errors(kind: str, url: str, secret: str | None) -> dict[str, str]:
    """What each provider's webhook must look like (the robot's key is part of its URL)."""
    parts, errors = urlsplit(url), {}
    query = parse_qs(parts.query)
    if kind == "wecom" and not query.get("key"):
        errors["url"] = "a WeCom robot URL ends in ?key=… (企业微信群机器人 webhook)"
    elif kind == "dingtalk" and not query.get("access_token"):
        errors["url"] = "a DingTalk robot URL ends in ?access_token=… (钉钉自定义机器人 webhook)"
    elif kind == "feishu" and "/hook/" not in parts.path:
        errors["url"] = "a Feishu bot URL looks like …/open-apis/bot/v2/hook/… (飞书自定义机器人 webhook)"
    if kind == "webhook" and not (secret or "").startswith("whsec_"):
        errors["secret"] = "a Standard Webhooks secret (whsec_ followed by base64) is required"
    if kind == "dingtalk" and secret and not secret.startswith("SEC"):
        errors["secret"] = "a DingTalk 加签 secret starts with SEC"
    return errors


def audit_view(channel: Channel) -> dict[str, Any]:
    return {
        "kind": channel.kind,
        "name": channel.name,
        "url": masked(channel.url),
        "signed": bool(channel.secret),
        "roles": channel.roles,
        "state": channel.state,
    }


async def save(
    session: AsyncSession,
    site_id: int,
    *,
    kind: str,
    name: str,
    url: str,
    secret: str | None,
    roles: list[str],
    actor: CurrentUser | str,
    at: datetime,
) -> Channel:
    """Add the channel, or replace the one of that name (which makes a dead one active again)."""
    channel = (
        await session.execute(select(Channel).where(Channel.site_id == site_id, Channel.name == name))
    ).scalar_one_or_none()
    before = audit_view(channel) if channel is not None else None
    if channel is None:
        channel = Channel(site_id=site_id, name=name, created_at=at)
        session.add(channel)
    channel.kind, channel.url, channel.secret, channel.roles = kind, url, secret or None, roles
    channel.state, channel.updated_at = "active", at
    await session.flush()
    await audit.record(
        session,
        site_id=site_id,
        actor=actor,
        action="channel.add" if before is None else "channel.update",
        target=f"channel:{channel.id}",
        before=before,
        after=audit_view(channel),
        at=at,
    )
    return channel


def _delivery(
    channel: Channel, message: dict[str, Any], incident_id: int | None, at: datetime
) -> PushDelivery:
    return PushDelivery(
        site_id=channel.site_id,
        kind="channel",
        channel_id=channel.id,
        incident_id=incident_id,
        urgency="high",
        state="pending",
        attempts=0,
        next_attempt_at=at,
        receipt=secrets.token_urlsafe(16),
        message={**message, "to": channel.name},  # the timeline names the channel
        created_at=at,
    )


async def enqueue(
    session: AsyncSession,
    site_id: int,
    roles: list[str] | tuple[str, ...],
    message: dict[str, Any],
    *,
    incident_id: int | None,
    at: datetime,
) -> int:
    """One delivery per active channel of the site that takes any of `roles`. A channel whose robot is
    rate limited has its queue waiting: a new message waits with it, so they go out together."""
    channels = [
        c
        for c in (
            await session.execute(
                select(Channel).where(Channel.site_id == site_id, Channel.state == "active")
            )
        ).scalars()
        if set(c.roles) & set(roles)
    ]
    return len(await add_deliveries(session, channels, message, incident_id, at))


async def add_deliveries(
    session: AsyncSession,
    channels: list[Channel],
    message: dict[str, Any],
    incident_id: int | None,
    at: datetime,
) -> list[PushDelivery]:
    if not channels:
        return []
    waiting = dict(
        (
            await session.execute(
                select(PushDelivery.channel_id, func.max(PushDelivery.next_attempt_at))
                .where(
                    PushDelivery.channel_id.in_([c.id for c in channels]),
                    PushDelivery.state == "pending",
                    PushDelivery.next_attempt_at > at,
                )
                .group_by(PushDelivery.channel_id)
            )
        ).all()
    )
    rows = [_delivery(c, message, incident_id, at) for c in channels]
    for row in rows:
        row.next_attempt_at = waiting.get(row.channel_id) or at
    session.add_all(rows)
    await session.flush()
    return rows


# ---------------------------------------------------------------- API

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class ChannelIn(msgspec.Struct, forbid_unknown_fields=True):
    kind: Kind
    name: Name
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
    secret: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    roles: Annotated[list[Literal["agent", "lead", "manager", "admin"]], msgspec.Meta(max_length=4)] = (
        msgspec.field(default_factory=lambda: ["manager"])
    )


async def channel_list(session: AsyncSession, site_id: int) -> list[dict[str, Any]]:
    """Every channel of the site with its last delivery outcome."""
    channels = list(
        (
            await session.execute(select(Channel).where(Channel.site_id == site_id).order_by(Channel.id))
        ).scalars()
    )
    last_ids = (
        select(func.max(PushDelivery.id))
        .where(PushDelivery.channel_id.in_([c.id for c in channels]), PushDelivery.attempts > 0)
        .group_by(PushDelivery.channel_id)
    )
    found = await session.execute(select(PushDelivery).where(PushDelivery.id.in_(last_ids)))
    last = {d.channel_id: d for d in found.scalars()}
    return [{"id": c.id, **audit_view(c), "last": last_out(last.get(c.id))} for c in channels]


def last_out(d: PushDelivery | None) -> dict[str, Any] | None:
    if d is None:
        return None
    keys = ("state", "last_status", "last_error", "sent_at", "next_attempt_at", "attempts")
    return {k.removeprefix("last_"): getattr(d, k) for k in keys}


@get(
    "/api/channels",
    guards=[requires("admin")],
    summary="My site's team channels, each with its last delivery",
)
async def list_channels(request: Req, db: AsyncSession) -> list[dict[str, Any]]:
    return await channel_list(db, request.user.site_id)


@post(
    "/api/channels",
    status_code=200,
    guards=[requires("admin")],
    summary="Add a team channel (or replace one by name)",
)
async def add_channel(request: Req, db: AsyncSession, data: ChannelIn) -> dict[str, Any]:
    errors = shape_errors(data.kind, data.url, data.secret)
    try:
        await request.app.state.outbound.check(data.url)
    except outbound.Refused as exc:
        errors["url"] = f"is not an address this server may send to ({exc})"
    if errors:
        raise Problem(422, "This channel is not valid.", errors=errors, code="channel.invalid")
    at = await clock.now(request.app, db)
    channel = await save(
        db,
        request.user.site_id,
        kind=data.kind,
        name=data.name,
        url=data.url,
        secret=data.secret,
        roles=list(dict.fromkeys(data.roles)),
        actor=request.user,
        at=at,
    )
    return {"id": channel.id, **audit_view(channel)}


@delete(
    "/api/channels/{channel_id:int}",
    status_code=204,
    guards=[requires("admin")],
    summary="Remove a team channel",
)
async def remove_channel(request: Req, db: AsyncSession, channel_id: int) -> None:
    channel = await get_for_site(db, Channel, channel_id, request.user.site_id, "channel")
    at = await clock.now(request.app, db)
    await audit.record(
        db,
        site_id=channel.site_id,
        actor=request.user,
        action="channel.remove",
        target=f"channel:{channel.id}",
        before=audit_view(channel),
        at=at,
    )
    await db.delete(channel)


TEST_MESSAGE = {
    "kind": "test",
    "drill": False,
    "mobiles": [],
    "title": {"zh-CN": "测试消息", "en": "Test message"},
}
TEST_MESSAGE["body"] = {
    "zh-CN": "应急工作台测试消息：本群会收到升级通知。",
    "en": "Outage Desk test: escalations come here.",
}


@post(
    "/api/channels/{channel_id:int}/test",
    status_code=202,
    guards=[requires("admin")],
    summary="Send a test message to a team channel",
)
async def test_channel(request: Req, db: AsyncSession, channel_id: int) -> dict[str, Any]:
    channel = await get_for_site(db, Channel, channel_id, request.user.site_id, "channel")
    at = await clock.now(request.app, db)
    (row,) = await add_deliveries(db, [channel], TEST_MESSAGE, None, at)
    return {"delivery": row.id}


router = Router(
    path="/", tags=["channels"], route_handlers=[list_channels, add_channel, remove_channel, test_channel]
)


# ---------------------------------------------------------------- CLI


def cmd_add(args: argparse.Namespace) -> int:
    from .config import load_settings

    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    errors = shape_errors(args.kind, args.url, args.secret)
    if bad := [r for r in roles if r not in ROLES] or (not roles and ["(none)"]):
        errors["roles"] = f"unknown role(s) {', '.join(bad)}: use {', '.join(ROLES)}"
    try:
        outbound.Rules(load_settings().outbound_allow).check_url(args.url)
    except outbound.Refused as exc:
        errors["url"] = f"not an address this server may send to ({exc})"
    if errors:
        for field, error in errors.items():
            print(f"{field}: {error}")
        return 2

    async def add(session: Any) -> Channel | None:
        site = (await session.execute(select(Site).where(Site.slug == args.site))).scalar_one_or_none()
        if site is None:
            return None
        at = await clock.now(None, session)
        return await save(
            session,
            site.id,
            kind=args.kind,
            name=args.name,
            url=args.url,
            secret=args.secret,
            roles=roles,
            actor="cli",
            at=at,
        )

    channel = args.run(add)
    if channel is None:
        print(f"no site {args.site!r}")
        return 2
    print(f"channel {channel.name} ({channel.kind}) at {args.site} takes rungs for {', '.join(roles)}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    async def rows(session: Any) -> list[dict[str, Any]] | None:
        site = (await session.execute(select(Site).where(Site.slug == args.site))).scalar_one_or_none()
        return None if site is None else await channel_list(session, site.id)

    channels = args.run(rows)
    if channels is None:
        print(f"no site {args.site!r}")
        return 2
    print(f"{'name':20} {'kind':9} {'roles':16} {'state':7} last delivery")
    for c in channels:
        last = c["last"]
        outcome = f"{last['state']} {last['status'] or ''} {last['error'] or ''}".strip() if last else "never"
        print(f"{c['name']:20} {c['kind']:9} {','.join(c['roles']):16} {c['state']:7} {outcome}  {c['url']}")
    return 0


def add_cli(sub: Any, run: Any) -> None:
    """`channels add …` and `channels list …`, under `python -m backend`. `run(fn)`: migrate, then fn(session)
    in one committed transaction (backend.cli passes it: this module does not import the CLI)."""
    group = sub.add_parser("channels", help="a site's team channels (group bots, webhooks)")
    channels = group.add_subparsers(dest="channels_command", required=True)
    add = channels.add_parser("add", help="add a team channel (or replace the one with that name)")
    add.add_argument("--site", required=True)
    add.add_argument("--kind", required=True, choices=KINDS)
    add.add_argument("--name", required=True)
    add.add_argument("--url", required=True)
    add.add_argument("--secret")
    add.add_argument("--roles", default="manager", help="comma-separated roles whose rungs go here")
    add.set_defaults(fn=cmd_add, run=run)
    listing = channels.add_parser("list", help="a site's channels with their last delivery")
    listing.add_argument("--site", required=True)
    listing.set_defaults(fn=cmd_list, run=run)
