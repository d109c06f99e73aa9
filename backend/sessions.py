"""Ending sessions: a password reset, a role change or disabling a user revokes every token that user holds;
an admin can do each for the users of their own site, anyone can log themselves out everywhere. The same
functions back the CLI (`python -m backend users …`)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Router, post, put
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from . import audit, clock, throttle
from .auth import AuthToken, CurrentUser, Role, Site, User, UserOut, password_problem, requires, user_out
from .db import get_for_site
from .errors import Problem


class PasswordIn(msgspec.Struct, forbid_unknown_fields=True):
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class RoleIn(msgspec.Struct, forbid_unknown_fields=True):
    role: Role


async def revoke_sessions(session: AsyncSession, user_id: int) -> int:
    """Delete every token of this user; how many there were."""
    result = await session.execute(delete(AuthToken).where(AuthToken.user_id == user_id))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def set_password(session: AsyncSession, user: User, password_hash: str) -> int:
    user.password_hash = password_hash
    # A reset also lifts the login throttle on the account (the owner can log in with the new password now).
    await session.execute(
        delete(throttle.LoginFailure).where(throttle.LoginFailure.username == user.username)
    )
    return await revoke_sessions(session, user.id)


async def set_active(session: AsyncSession, user: User, active: bool) -> int:
    user.active = active
    return await revoke_sessions(session, user.id)


async def set_role(session: AsyncSession, user: User, role: str) -> int:
    user.role = role
    return await revoke_sessions(session, user.id)


async def find_user(session: AsyncSession, username: str) -> User | None:
    return (await session.execute(select(User).where(User.username == username))).scalar_one_or_none()


async def _site_user(db: AsyncSession, me: CurrentUser, user_id: int, *, not_me: str | None = None) -> User:
    user = await get_for_site(db, User, user_id, me.site_id, "user")  # another site's user is a 404
    if not_me and user.id == me.id:
        raise Problem(409, not_me, code="users.not_yourself")
    return user


async def _audit(
    request: Request[CurrentUser, str, Any],
    db: AsyncSession,
    user: User,
    action: str,
    before: Any = None,
    after: Any = None,
) -> None:
    await audit.record(
        db,
        site_id=user.site_id,
        actor=request.user,
        action=action,
        target=f"user:{user.username}",
        before=before,
        after=after,
        at=await clock.now(request.app.state, db),
    )


@post("/api/auth/logout-all", status_code=204, summary="End every login of mine (all devices)")
async def logout_all(request: Request[CurrentUser, str, Any], db: AsyncSession) -> None:
    await revoke_sessions(db, request.user.id)


@post(
    "/api/users/{user_id:int}/password",
    status_code=204,
    guards=[requires("admin")],
    summary="Set a user's password (ends their logins)",
)
async def reset_password(
    user_id: int, data: PasswordIn, request: Request[CurrentUser, str, Any], db: AsyncSession
) -> None:
    user = await _site_user(db, request.user, user_id)
    if rule := password_problem(user.username, data.password):
        raise Problem(400, rule, errors={"password": rule}, code="auth.weak_password")
    ended = await set_password(db, user, await throttle.hash_password(request.app.state, data.password))
    await _audit(request, db, user, "user.password", after={"logins_ended": ended})


@post(
    "/api/users/{user_id:int}/disable",
    status_code=204,
    guards=[requires("admin")],
    summary="Disable a user (ends their logins)",
)
async def disable_user(user_id: int, request: Request[CurrentUser, str, Any], db: AsyncSession) -> None:
    user = await _site_user(db, request.user, user_id, not_me="You cannot disable yourself.")
    before = user.active
    ended = await set_active(db, user, False)
    await _audit(
        request, db, user, "user.disable", {"active": before}, {"active": False, "logins_ended": ended}
    )


@post(
    "/api/users/{user_id:int}/enable",
    status_code=204,
    guards=[requires("admin")],
    summary="Enable a disabled user again",
)
async def enable_user(user_id: int, request: Request[CurrentUser, str, Any], db: AsyncSession) -> None:
    user = await _site_user(db, request.user, user_id)
    before = user.active
    user.active = True
    await _audit(request, db, user, "user.enable", {"active": before}, {"active": True})


@put(
    "/api/users/{user_id:int}/role",
    guards=[requires("admin")],
    summary="Change a user's role (ends their logins)",
)
async def change_role(
    user_id: int, data: RoleIn, request: Request[CurrentUser, str, Any], db: AsyncSession
) -> UserOut:
    user = await _site_user(db, request.user, user_id, not_me="You cannot change your own role.")
    before = user.role
    ended = await set_role(db, user, data.role)
    await _audit(request, db, user, "user.role", {"role": before}, {"role": data.role, "logins_ended": ended})
    site = (await db.execute(select(Site).where(Site.id == user.site_id))).scalar_one()
    return user_out(user, site)


@post(
    "/api/users/{user_id:int}/revoke",
    status_code=204,
    guards=[requires("admin")],
    summary="End every login of a user",
)
async def revoke_user(user_id: int, request: Request[CurrentUser, str, Any], db: AsyncSession) -> None:
    user = await _site_user(db, request.user, user_id)
    ended = await revoke_sessions(db, user.id)
    await _audit(request, db, user, "user.revoke", after={"logins_ended": ended})


router = Router(
    path="/",
    route_handlers=[logout_all, reset_password, disable_user, enable_user, change_role, revoke_user],
    tags=["auth"],
)
