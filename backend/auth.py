"""Sites, users, roles, login with throttling, expiring bearer tokens, role guards."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Router, get, post
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult, DefineMiddleware
from sqlalchemy import Boolean, ForeignKey, Integer, String, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from . import throttle
from .db import Base, UTCDateTime, utcnow
from .errors import Problem
from .headers import client_address as _client_address
from .throttle import FAIL_WINDOW, LoginFailure, hasher

__all__ = ["LoginFailure", "hasher"]  # kept importable from here (tests, CLI)

Role = Literal["agent", "lead", "manager", "admin"]
ROLES: tuple[str, ...] = ("agent", "lead", "manager", "admin")
RANK = {role: i for i, role in enumerate(ROLES)}
DEFAULT_TIME_ZONE = "Asia/Shanghai"


class Site(Base):
    __tablename__ = "sites"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # IANA zone the site works in: exports, paper forms and reports show its local time.
    time_zone: Mapped[str] = mapped_column(
        String(64), default=DEFAULT_TIME_ZONE, server_default=DEFAULT_TIME_ZONE
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    phone: Mapped[str | None] = mapped_column(String(40), nullable=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuthToken(Base):
    __tablename__ = "auth_tokens"
    # Only a keyed hash of the token is stored: a leaked table gives no usable tokens.
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CurrentUser(msgspec.Struct, frozen=True):
    """Who is calling: what every handler scopes its queries by."""

    id: int
    username: str
    display_name: str
    role: str
    site_id: int
    site_slug: str
    site_name: str
    site_time_zone: str = DEFAULT_TIME_ZONE


class UserOut(msgspec.Struct):
    id: int
    username: str
    display_name: str
    role: str
    site: str
    site_name: str
    phone: str | None = None
    site_time_zone: str = DEFAULT_TIME_ZONE


class LoginIn(msgspec.Struct, forbid_unknown_fields=True):
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class LoginOut(msgspec.Struct):
    token: str
    expires_at: datetime
    user: UserOut


class NewUserIn(msgspec.Struct, forbid_unknown_fields=True):
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[\w.@-]+$")]
    password: Annotated[str, msgspec.Meta(min_length=8, max_length=256)]
    role: Role
    display_name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    phone: Annotated[str, msgspec.Meta(max_length=40)] | None = None


def user_out(user: CurrentUser | User, site: Site | None = None, phone: str | None = None) -> UserOut:
    if isinstance(user, CurrentUser):
        return UserOut(
            user.id,
            user.username,
            user.display_name,
            user.role,
            user.site_slug,
            user.site_name,
            phone,
            user.site_time_zone,
        )
    assert site is not None
    return UserOut(
        user.id, user.username, user.display_name, user.role, site.slug, site.name, user.phone, site.time_zone
    )


async def site_names(session: AsyncSession, site_id: int) -> dict[int, str]:
    """Display names of everyone at a site, by user id (for lists that show who did what)."""
    return dict(
        (await session.execute(select(User.id, User.display_name).where(User.site_id == site_id))).all()
    )


MIN_PASSWORD = 8


def password_problem(username: str, password: str) -> str | None:
    """What is wrong with this password for this user (None: it is acceptable)."""
    if len(password) < MIN_PASSWORD:
        return f"The password needs at least {MIN_PASSWORD} characters."
    if password.strip().casefold() == username.strip().casefold():
        return "The password must not be the username."
    return None


def token_hash(secret_key: str, token: str) -> str:
    return hmac.new(secret_key.encode(), token.encode(), hashlib.sha256).hexdigest()


SiteSeeder = Callable[[AsyncSession, Site], Awaitable[None]]


async def get_or_create_site(
    session: AsyncSession, slug: str, name: str | None = None, *, seeders: Sequence[SiteSeeder] = ()
) -> Site:
    """The site with this slug; a new one is given its starting data by `seeders` (app.SITE_SEEDERS: the
    shipped playbooks and forms)."""
    site = (await session.execute(select(Site).where(Site.slug == slug))).scalar_one_or_none()
    if site is None:
        site = Site(slug=slug, name=name or slug)
        session.add(site)
        await session.flush()
        for seed in seeders:
            await seed(session, site)
    return site


async def create_user(
    session: AsyncSession,
    username: str,
    role: str,
    site_slug: str,
    password: str,
    display_name: str | None = None,
    phone: str | None = None,
    password_hash: str | None = None,
    *,
    seeders: Sequence[SiteSeeder] = (),
) -> User:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    site = await get_or_create_site(session, site_slug, seeders=seeders)
    user = User(
        site_id=site.id,
        username=username,
        display_name=display_name or username,
        role=role,
        phone=phone,
        password_hash=password_hash or hasher.hash(password),
    )
    session.add(user)
    await session.flush()
    return user


def issue_token(session: AsyncSession, secret_key: str, user_id: int, ttl: timedelta) -> tuple[str, datetime]:
    token = secrets.token_urlsafe(32)
    expires_at = utcnow() + ttl
    session.add(AuthToken(token_hash=token_hash(secret_key, token), user_id=user_id, expires_at=expires_at))
    return token, expires_at


async def resolve_token(session: AsyncSession, secret_key: str, token: str) -> CurrentUser | None:
    # Plain columns, no ORM objects: this runs on every request (a recovery burst is thousands of them).
    row = (
        await session.execute(
            select(
                User.id,
                User.username,
                User.display_name,
                User.role,
                Site.id,
                Site.slug,
                Site.name,
                Site.time_zone,
                AuthToken.expires_at,
            )
            .join(AuthToken, AuthToken.user_id == User.id)
            .join(Site, Site.id == User.site_id)
            .where(AuthToken.token_hash == token_hash(secret_key, token), User.active.is_(True))
        )
    ).one_or_none()
    if row is None or row[8] <= utcnow():
        return None
    return CurrentUser(*row[:8])


class TokenAuth(AbstractAuthenticationMiddleware):
    """Bearer tokens on /api; an unknown or expired token is a 401 problem."""

    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Problem(
                401,
                "Log in first: this needs an 'Authorization: Bearer <token>' header.",
                headers={"WWW-Authenticate": "Bearer"},
                code="auth.required",
            )
        app_state = connection.app.state
        async with app_state.sessionmaker() as session:
            user = await resolve_token(session, app_state.settings.secret_key, token.strip())
        if user is None:
            raise Problem(
                401,
                "Your login has expired or is not valid; please log in again.",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                code="auth.expired",
            )
        return AuthenticationResult(user=user, auth=token)


PUBLIC_PATHS = [
    r"^/api/health$",
    r"^/api/auth/login$",
    r"^/api/setup$",
    r"^/api/push/vapid-public-key$",
    r"^/api/push/receipts$",
    r"^/ack/",  # personal acknowledge links: the signed link is the credential (backend.acklinks)
    r"^/schema",
    r"^/$",
    r"^/static/",
    r"^/sw",
    r"^/manifest\.webmanifest$",
    r"^/favicon",
]
auth_middleware = DefineMiddleware(TokenAuth, exclude=PUBLIC_PATHS)


def requires(min_role: str):
    """Guard: the caller's role is at least min_role (agent < lead < manager < admin)."""

    def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        user = connection.user
        if not isinstance(user, CurrentUser):
            raise Problem(401, "Log in first.", code="auth.required")
        if RANK[user.role] < RANK[min_role]:
            raise Problem(
                403, f"This needs the {min_role} role or higher; you are {user.role}.", code="auth.forbidden"
            )

    return guard


def client_address(request: Request) -> str:
    """The caller's address: the peer, or the client a trusted proxy forwarded for (backend.headers)."""
    return _client_address(request.scope)


@post("/api/auth/login", status_code=200, summary="Log in; returns a bearer token")
async def login(data: LoginIn, request: Request, db: AsyncSession) -> LoginOut:
    state = request.app.state
    address = client_address(request)
    # The reservation and the user lookup in a short transaction of their own, committed before the slow
    # password check (which holds no database connection and runs in a thread).
    async with state.sessionmaker() as session:
        reserved = await throttle.reserve(session, data.username, address)
        row = (
            None
            if reserved is None
            else (
                await session.execute(
                    select(User, Site)
                    .join(Site, Site.id == User.site_id)
                    .where(User.username == data.username, User.active.is_(True))
                )
            ).one_or_none()
        )
    if reserved is None:
        raise Problem(
            429,
            "Too many failed logins; wait 15 minutes or ask your team lead to reset your password.",
            headers={"Retry-After": str(int(FAIL_WINDOW.total_seconds()))},
            code="auth.locked",
        )
    ok = await throttle.verify_password(state, row.User.password_hash if row else None, data.password)
    if not ok or row is None:
        raise Problem(
            401, "Wrong username or password.", code="auth.bad_credentials"
        )  # the reserved failure stays counted
    user, site = row.User, row.Site
    await throttle.succeeded(db, data.username, address)
    await db.execute(delete(AuthToken).where(AuthToken.expires_at < utcnow()))
    token, expires_at = issue_token(
        db, state.settings.secret_key, user.id, timedelta(minutes=state.settings.token_ttl_minutes)
    )
    return LoginOut(token=token, expires_at=expires_at, user=user_out(user, site))


@post("/api/auth/logout", status_code=204, summary="End this token")
async def logout(request: Request[CurrentUser, str, Any], db: AsyncSession) -> None:
    await db.execute(
        delete(AuthToken).where(
            AuthToken.token_hash == token_hash(request.app.state.settings.secret_key, request.auth)
        )
    )


@get("/api/me", summary="Who am I")
async def me(request: Request[CurrentUser, str, Any], db: AsyncSession) -> UserOut:
    phone = (await db.execute(select(User.phone).where(User.id == request.user.id))).scalar_one_or_none()
    return user_out(request.user, phone=phone)


router = Router(path="/", route_handlers=[login, logout, me], tags=["auth"])
