"""Administration of a site in the app: the site itself (name, time zone, contact directory) and its users
(create here; role, password, disable, sign-out in backend.sessions). Every change lands in the audit log."""

from __future__ import annotations

import zoneinfo
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, get, post, put
from litestar.params import Parameter
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from . import audit, clock, documents, throttle
from .auth import (
    AuthToken,
    CurrentUser,
    NewUserIn,
    Role,
    Site,
    User,
    UserOut,
    create_user,
    password_problem,
    requires,
    user_out,
)
from .db import has_nul, utcnow
from .definitions import Contact, as_stored, parse_definition
from .errors import Problem


class SiteIn(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    time_zone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


class DirectoryIn(msgspec.Struct, forbid_unknown_fields=True):
    entries: Annotated[list[Contact], msgspec.Meta(max_length=100)]


def time_zone_problem(name: str) -> str | None:
    """None if `name` is an IANA time zone this server knows (zoneinfo), else what is wrong."""
    if name not in zoneinfo.available_timezones():
        return f"{name!r} is not a known time zone; use an IANA name such as Asia/Shanghai."
    return None


async def site_out(db: AsyncSession, site: Site) -> dict[str, Any]:
    # Every role the playbooks call, with the number they carry: what the directory can replace.
    used: dict[str, dict[str, Any]] = {}
    for playbook in await documents.latest(db, site.id, "playbook"):
        for contact in playbook.definition.get("contacts", []):
            used.setdefault(contact["role"], {**contact, "playbooks": []})["playbooks"].append(
                playbook.definition["title"]
            )
    return {
        "slug": site.slug,
        "name": site.name,
        "time_zone": site.time_zone,
        "directory": await documents.directory(db, site.id),
        "playbook_contacts": list(used.values()),
    }


async def _site(db: AsyncSession, user: CurrentUser) -> Site:
    return (await db.execute(select(Site).where(Site.id == user.site_id))).scalar_one()


@get("/api/admin/site", guards=[requires("admin")], summary="My site: name, time zone, contact directory")
async def get_site(request: Request[CurrentUser, str, Any], db: AsyncSession) -> dict[str, Any]:
    return await site_out(db, await _site(db, request.user))


@put("/api/admin/site", guards=[requires("admin")], summary="Rename my site or change its time zone")
async def update_site(
    data: SiteIn, request: Request[CurrentUser, str, Any], db: AsyncSession
) -> dict[str, Any]:
    site = await _site(db, request.user)
    if has_nul(data.name):
        raise Problem(
            422, "The name holds a NUL character.", errors={"name": "NUL character"}, code="validation.nul"
        )
    if data.time_zone is not None and (rule := time_zone_problem(data.time_zone)):
        raise Problem(422, rule, errors={"time_zone": rule}, code="site.bad_time_zone")
    before = {"name": site.name, "time_zone": site.time_zone}
    if data.name is not None:
        site.name = data.name.strip() or site.name
    if data.time_zone is not None:
        site.time_zone = data.time_zone
    after = {"name": site.name, "time_zone": site.time_zone}
    if after != before:
        await audit.record(
            db,
            site_id=site.id,
            actor=request.user,
            action="site.update",
            target=f"site:{site.slug}",
            before=before,
            after=after,
            at=await clock.now(request.app.state, db),
        )
    return await site_out(db, site)


@put(
    "/api/admin/site/directory",
    guards=[requires("admin")],
    summary="Save the contact directory (a new content version: devices get the new numbers)",
)
async def update_directory(
    data: DirectoryIn, request: Request[CurrentUser, str, Any], db: AsyncSession
) -> dict[str, Any]:
    user = request.user
    definition = as_stored(
        parse_definition("directory", {"slug": "contacts", "entries": as_stored(data)["entries"]})
    )
    before = await documents.directory(db, user.site_id)
    if definition["entries"] != before:
        await documents.add_version(
            db, user.site_id, "directory", definition, source="admin", user_id=user.id
        )
        await audit.record(
            db,
            site_id=user.site_id,
            actor=user,
            action="site.directory",
            target="directory:contacts",
            before=before,
            after=definition["entries"],
            at=await clock.now(request.app.state, db),
        )
    return await site_out(db, await _site(db, user))


@get("/api/admin/users", guards=[requires("admin")], summary="Every user of my site, disabled ones too")
async def admin_users(request: Request[CurrentUser, str, Any], db: AsyncSession) -> list[dict[str, Any]]:
    logins = (
        select(AuthToken.user_id, func.count().label("n"))
        .where(AuthToken.expires_at > utcnow())
        .group_by(AuthToken.user_id)
        .subquery()
    )
    rows = (
        await db.execute(
            select(User, func.coalesce(logins.c.n, 0))
            .outerjoin(logins, logins.c.user_id == User.id)
            .where(User.site_id == request.user.site_id)
            .order_by(User.active.desc(), User.display_name)
        )
    ).all()
    return [
        {
            "id": u.id,
            "username": u.username,
            "display_name": u.display_name,
            "role": u.role,
            "phone": u.phone,
            "active": u.active,
            "logins": int(n),
            "me": u.id == request.user.id,
            "created_at": u.created_at,
        }
        for u, n in rows
    ]


@get("/api/users", guards=[requires("lead")], summary="Users of my site")
async def list_users(
    request: Request[CurrentUser, str, Any],
    db: AsyncSession,
    role: Annotated[Role | None, Parameter(query="role")] = None,
) -> list[UserOut]:
    me_ = request.user
    query = select(User, Site).join(Site, Site.id == User.site_id).where(User.site_id == me_.site_id)
    if role:
        query = query.where(User.role == role)
    rows = (await db.execute(query.order_by(User.display_name))).all()
    return [user_out(r.User, r.Site) for r in rows]


@post("/api/users", guards=[requires("admin")], summary="Add a user to my site")
async def add_user(data: NewUserIn, request: Request[CurrentUser, str, Any], db: AsyncSession) -> UserOut:
    if rule := password_problem(data.username, data.password):
        raise Problem(400, rule, errors={"password": rule}, code="auth.weak_password")
    if has_nul([data.display_name, data.phone]):
        raise Problem(422, "The name or phone holds a NUL character.", code="validation.nul")
    exists = (await db.execute(select(User.id).where(User.username == data.username))).scalar_one_or_none()
    if exists is not None:
        raise Problem(
            409,
            f"The username {data.username!r} is taken.",
            errors={"username": "taken"},
            code="users.username_taken",
        )
    user = await create_user(
        db,
        data.username,
        data.role,
        request.user.site_slug,
        data.password,
        data.display_name,
        data.phone,
        password_hash=await throttle.hash_password(request.app.state, data.password),
    )
    await audit.record(
        db,
        site_id=user.site_id,
        actor=request.user,
        action="user.create",
        target=f"user:{user.username}",
        after={"role": user.role, "display_name": user.display_name, "phone": user.phone},
        at=await clock.now(request.app.state, db),
    )
    return user_out(user, await _site(db, request.user))


router = Router(
    path="/",
    route_handlers=[get_site, update_site, update_directory, admin_users, list_users, add_user],
    tags=["admin"],
)
