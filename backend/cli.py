"""python -m backend: serve, migrate, users (add, list, disable, enable, set-role, reset-password, revoke),
demo, vapid, export."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from .config import load_settings
from .db import make_engine, sessionmaker
from .migrate import upgrade


def _with_session(fn: Callable[[Any], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        engine = make_engine(load_settings().database_url)
        try:
            async with sessionmaker(engine)() as session:
                result = await fn(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(run())


async def load_defaults(session: Any) -> None:
    """Load the shipped data (playbooks, forms) into every site."""
    from .app import DEFAULT_LOADERS

    for load in DEFAULT_LOADERS:
        await load(session)


def prepare() -> None:
    """Migrate and load defaults: what `serve` does before it listens."""
    settings = load_settings()
    upgrade(settings.database_url)
    _with_session(load_defaults)


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    if args.workers < 1:
        print("--workers must be at least 1", file=sys.stderr)
        return 2
    # Every process reads its share of the pool and of the sync admission from OUTAGE_WORKERS (Settings.pool,
    # Settings.sync_slots). The keys under var/ and the migration are made here, once, before any worker starts
    # (and atomically anyway: config.write_once, Alembic's advisory lock).
    os.environ["OUTAGE_WORKERS"] = str(args.workers)
    # Migrate in a child process: the serving process never loads Alembic and Mako (about 9 MB it would keep).
    subprocess.run([sys.executable, "-m", "backend", "migrate", "--keys"], check=True)
    print(f"Outage Desk on http://{args.host}:{args.port} ({args.workers} process(es))", flush=True)
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        "timeout_graceful_shutdown": 5,
        "proxy_headers": False,
    }
    if args.workers == 1:
        from .app import create_app

        uvicorn.run(create_app(), **options)
    else:
        # uvicorn's supervisor: N processes on one socket, each a whole app with its own lifespan (engine,
        # push client, worker steps; the steps claim work with SKIP LOCKED, so N of them never do it twice).
        uvicorn.run("backend.app:create_app", factory=True, workers=args.workers, **options)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    prepare()
    if args.keys:  # `serve` asks for the keys too, so they exist before any of its workers starts
        from . import push

        push.vapid_key(load_settings())
    print("database migrated and defaults loaded")
    return 0


def cmd_users_add(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from .app import SITE_SEEDERS
    from .auth import ROLES, User, create_user

    if args.role not in ROLES:
        print(f"role must be one of {', '.join(ROLES)}", file=sys.stderr)
        return 2
    prepare()

    async def add(session: Any) -> str:
        if (await session.execute(select(User).where(User.username == args.name))).scalar_one_or_none():
            raise SystemExit(f"user {args.name!r} exists already")
        await create_user(
            session,
            args.name,
            args.role,
            args.site,
            args.password,
            args.display_name,
            args.phone,
            seeders=SITE_SEEDERS,
        )
        return args.name

    _with_session(add)
    print(f"added {args.role} {args.name} at site {args.site}")
    return 0


def _user_command(name: str, change: Callable[[Any, Any], Awaitable[str]]) -> int:
    """Run change(session, user) on the named user in one transaction; 2 if there is no such user."""
    from .sessions import find_user

    prepare()

    async def run(session: Any) -> str | None:
        user = await find_user(session, name)
        return None if user is None else await change(session, user)

    message = _with_session(run)
    if message is None:
        print(f"no user {name!r}", file=sys.stderr)
        return 2
    print(message)
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from .auth import Site, User

    prepare()

    async def rows(session: Any) -> list[Any]:
        query = select(User, Site.slug).join(Site, Site.id == User.site_id).order_by(Site.slug, User.username)
        if args.site:
            query = query.where(Site.slug == args.site)
        return list((await session.execute(query)).all())

    print(f"{'username':24} {'site':16} {'role':8} {'status':8} display name")
    for user, site in _with_session(rows):
        print(
            f"{user.username:24} {site:16} {user.role:8} {'active' if user.active else 'disabled':8} "
            f"{user.display_name}"
        )
    return 0


def cmd_users_disable(args: argparse.Namespace) -> int:
    from .sessions import set_active

    async def change(session: Any, user: Any) -> str:
        ended = await set_active(session, user, False)
        return f"disabled {user.username}; {ended} login(s) ended"

    return _user_command(args.name, change)


def cmd_users_enable(args: argparse.Namespace) -> int:
    async def change(session: Any, user: Any) -> str:
        user.active = True
        return f"enabled {user.username}"

    return _user_command(args.name, change)


def cmd_users_set_role(args: argparse.Namespace) -> int:
    from .auth import ROLES
    from .sessions import set_role

    if args.role not in ROLES:
        print(f"role must be one of {', '.join(ROLES)}", file=sys.stderr)
        return 2

    async def change(session: Any, user: Any) -> str:
        ended = await set_role(session, user, args.role)
        return f"{user.username} is now {args.role}; {ended} login(s) ended"

    return _user_command(args.name, change)


def cmd_users_reset_password(args: argparse.Namespace) -> int:
    from .auth import hasher, password_problem
    from .sessions import set_password

    if rule := password_problem(args.name, args.password):
        print(rule, file=sys.stderr)
        return 2

    async def change(session: Any, user: Any) -> str:
        ended = await set_password(session, user, hasher.hash(args.password))
        return f"password of {user.username} reset; {ended} login(s) ended"

    return _user_command(args.name, change)


def cmd_users_revoke(args: argparse.Namespace) -> int:
    from .sessions import revoke_sessions

    async def change(session: Any, user: Any) -> str:
        return f"{await revoke_sessions(session, user.id)} login(s) of {user.username} ended"

    return _user_command(args.name, change)


DEMO_USERS = [
    ("agent", "坐席 小王"),
    ("lead", "值班组长 李"),
    ("manager", "运营主管 陈"),
    ("admin", "管理员"),
]


def cmd_demo(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from .app import SITE_SEEDERS
    from .auth import User, create_user, get_or_create_site, hasher

    prepare()
    credentials: list[tuple[str, str, str]] = []

    async def make(session: Any) -> None:
        await get_or_create_site(session, args.site, "演示呼叫中心 Demo call center", seeders=SITE_SEEDERS)
        for role, name in DEMO_USERS:
            username = f"{args.site}-{role}"
            password = args.password or secrets.token_urlsafe(9)
            existing = (
                await session.execute(select(User).where(User.username == username))
            ).scalar_one_or_none()
            if existing is not None:
                existing.password_hash = hasher.hash(password)
            else:
                await create_user(
                    session,
                    username,
                    role,
                    args.site,
                    password,
                    name,
                    f"138-0000-000{len(credentials)}",
                    seeders=SITE_SEEDERS,
                )
            credentials.append((role, username, password))

    _with_session(make)
    print(f"Demo site '{args.site}' ready. Log in at http://127.0.0.1:8000 with:")
    for role, username, password in credentials:
        print(f"  {role:8} {username:20} {password}")
    return 0


def cmd_vapid(args: argparse.Namespace) -> int:
    from . import push

    print(push.vapid_public_key(load_settings()))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_site

    prepare()

    async def export(session: Any) -> Any:
        return await export_site(session, args.site)

    try:
        data = _with_session(export)
    except LookupError:
        print(f"no site {args.site!r}", file=sys.stderr)
        return 2
    json.dump(data, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend", description="Outage Desk server and tools")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="migrate, load defaults and serve")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="app processes on one socket (PostgreSQL; SQLite has one writer)",
    )
    serve.set_defaults(fn=cmd_serve)

    migrate = sub.add_parser("migrate", help="upgrade the database to the newest schema")
    migrate.add_argument("--keys", action="store_true", help="also make the secret and VAPID keys if missing")
    migrate.set_defaults(fn=cmd_migrate)

    users = sub.add_parser("users", help="manage users").add_subparsers(dest="users_command", required=True)
    add = users.add_parser("add", help="add a user (and the site, if new)")
    add.add_argument("name")
    add.add_argument("--role", required=True)
    add.add_argument("--site", required=True)
    add.add_argument("--password", required=True)
    add.add_argument("--display-name")
    add.add_argument("--phone")
    add.set_defaults(fn=cmd_users_add)
    listing = users.add_parser("list", help="every user with site, role and status")
    listing.add_argument("--site", help="only this site")
    listing.set_defaults(fn=cmd_users_list)
    for command, fn, what in (
        ("disable", cmd_users_disable, "disable a user and end their logins"),
        ("enable", cmd_users_enable, "enable a disabled user again"),
        ("revoke", cmd_users_revoke, "end every login of a user"),
    ):
        one = users.add_parser(command, help=what)
        one.add_argument("name")
        one.set_defaults(fn=fn)
    set_role = users.add_parser("set-role", help="change a user's role and end their logins")
    set_role.add_argument("name")
    set_role.add_argument("role")
    set_role.set_defaults(fn=cmd_users_set_role)
    reset = users.add_parser("reset-password", help="set a new password and end the user's logins")
    reset.add_argument("name")
    reset.add_argument("--password", required=True)
    reset.set_defaults(fn=cmd_users_reset_password)

    demo = sub.add_parser("demo", help="a demo site with one user per role")
    demo.add_argument("--site", default="demo")
    demo.add_argument("--password", help="one password for all demo users (default: random, printed)")
    demo.set_defaults(fn=cmd_demo)

    sub.add_parser("vapid", help="print the VAPID public key (made on first use)").set_defaults(fn=cmd_vapid)

    export = sub.add_parser("export", help="print everything a site holds as JSON (no credentials)")
    export.add_argument("--site", required=True)
    export.set_defaults(fn=cmd_export)

    args = parser.parse_args(argv)
    return args.fn(args)
