"""The first run: while no admin exists, the server prints a one-time setup link when it starts; opening it
creates the first admin and the first site. The link's token is derived from the install's secret key, so
every app process prints the same one and only whoever can read the server's output has it; it stops working
the moment an admin exists."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, get, post
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from . import audit, clock, throttle
from .admin import time_zone_problem
from .auth import DEFAULT_TIME_ZONE, Site, User, create_user, get_or_create_site, password_problem
from .db import has_nul
from .errors import Problem


class SetupIn(msgspec.Struct, forbid_unknown_fields=True):
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[\w.@-]+$")]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    site_slug: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
    site_name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    display_name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    time_zone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = DEFAULT_TIME_ZONE


def setup_token(secret_key: str) -> str:
    return hmac.new(secret_key.encode(), b"outage-desk first-run setup", hashlib.sha256).hexdigest()[:32]


def setup_link(base_url: str, secret_key: str) -> str:
    return f"{base_url.rstrip('/')}/#/setup/{setup_token(secret_key)}"


async def needs_setup(session: AsyncSession) -> bool:
    """No active admin exists: the install cannot be administered from the app yet."""
    query = select(User.id).where(User.role == "admin", User.active.is_(True)).limit(1)
    return (await session.execute(query)).scalar_one_or_none() is None


async def has_users(session: AsyncSession) -> bool:
    return (await session.execute(select(User.id).limit(1))).scalar_one_or_none() is not None


@get("/api/setup", tags=["setup"], summary="Whether this install still needs its first admin (public)")
async def setup_status(db: AsyncSession) -> dict[str, Any]:
    return {"needed": await needs_setup(db), "users": await has_users(db)}


@post("/api/setup", tags=["setup"], status_code=201, summary="Create the first admin and site (setup link)")
async def setup(data: SetupIn, request: Request, db: AsyncSession) -> dict[str, Any]:
    state = request.app.state
    if not await needs_setup(db):
        raise Problem(
            409,
            "This install has an admin already: log in, or ask that admin for an account.",
            code="setup.done",
        )
    if not hmac.compare_digest(data.token.encode(), setup_token(state.settings.secret_key).encode()):
        raise Problem(
            403,
            "This setup link is not valid: use the one the server printed when it started.",
            code="setup.bad_link",
        )
    if rule := password_problem(data.username, data.password):
        raise Problem(400, rule, errors={"password": rule}, code="auth.weak_password")
    if has_nul([data.site_name, data.display_name]):
        raise Problem(422, "A name holds a NUL character.", code="validation.nul")
    if rule := time_zone_problem(data.time_zone):
        raise Problem(422, rule, errors={"time_zone": rule}, code="site.bad_time_zone")
    if (await db.execute(select(User.id).where(User.username == data.username))).scalar_one_or_none():
        raise Problem(
            409,
            f"The username {data.username!r} is taken.",
            errors={"username": "taken"},
            code="users.username_taken",
        )
    existed = (await db.execute(select(Site.id).where(Site.slug == data.site_slug))).scalar_one_or_none()
    site = await get_or_create_site(db, data.site_slug, data.site_name, seeders=state.site_seeders)
    if existed is None:
        site.time_zone = data.time_zone
    user = await create_user(
        db,
        data.username,
        "admin",
        site.slug,
        data.password,
        data.display_name,
        password_hash=await throttle.hash_password(state, data.password),
    )
    await audit.record(
        db,
        site_id=site.id,
        actor="setup",
        action="setup.first_admin",
        target=f"user:{user.username}",
        after={"site": site.slug, "site_created": existed is None, "time_zone": site.time_zone},
        at=await clock.now(state, db),
    )
    return {"username": user.username, "site": site.slug, "site_created": existed is None}


router = Router(path="/", route_handlers=[setup_status, setup])
