"""python -m backend: serve, migrate, users (add, list, disable, enable, set-role, reset-password, revoke,
contact), channels (add, list), demo, vapid, export, crm (set, show, push: backend.crmcli); backup and restore
(backend.backup)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from . import backup, channels, contacts, demo
from .commands import load_defaults, prepare, with_session
from .config import load_settings, tls_options
from .demo import cli_audit as _audit

_with_session = with_session  # the name the commands below use
__all__ = ["load_defaults", "main"]  # load_defaults: kept importable from here (tests, bench)


def _load_models() -> None:
    """Every capability's tables on Base.metadata (the app imports them all)."""
    from . import app  # noqa: F401


def _run(fn: Callable[[Any], Awaitable[Any]]) -> Any:
    """For commands defined in their capability's module: migrate, then fn(session), committed."""
    prepare()
    return _with_session(fn)


def cmd_serve(args: argparse.Namespace) -> int:
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
    tls = tls_options(load_settings())  # direct TLS for a small site without a reverse proxy
    shown = demo.served_address(args.host, args.port)
    shown = shown.replace("http://", "https://", 1) if tls else shown
    print(f"Outage Desk on {shown} ({args.workers} process(es))", flush=True)
    public = demo.served_address(args.host, args.port, public=True)
    if tls and public.startswith("http://") and not os.environ.get("OUTAGE_PUBLIC_BASE_URL"):
        public = "https://" + public.removeprefix("http://")
    demo.remember_address(public)
    demo.announce_setup(public)
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        "timeout_graceful_shutdown": 5,
        "proxy_headers": False,
    }
    if args.workers == 1:
        uvicorn.run(serving_app(), **options, **tls)
    else:
        # uvicorn's supervisor: N processes on one socket, each a whole app with its own lifespan (engine,
        # push client, worker steps; the steps claim work with SKIP LOCKED, so N of them never do it twice).
        uvicorn.run("backend.cli:serving_app", factory=True, workers=args.workers, **options, **tls)
    return 0


def serving_app() -> Any:
    """The app as a serving process runs it. Pydantic is installed for the test tools only; Litestar loads its
    pydantic plugins whenever it can import pydantic (about 7 MB resident), and nothing served uses them."""
    if "pydantic" not in sys.modules:
        sys.modules["pydantic"] = None  # type: ignore[assignment]  # import pydantic -> ImportError
    from .app import create_app

    return create_app()


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
    from .auth import ROLES, Site, User, create_user, password_problem

    if args.role not in ROLES:
        print(f"role must be one of {', '.join(ROLES)}", file=sys.stderr)
        return 2
    if rule := password_problem(args.name, args.password):
        print(rule, file=sys.stderr)
        return 2
    prepare()

    async def add(session: Any) -> bool:
        if (await session.execute(select(User).where(User.username == args.name))).scalar_one_or_none():
            raise SystemExit(f"user {args.name!r} exists already")
        existed = (await session.execute(select(Site.id).where(Site.slug == args.site))).scalar_one_or_none()
        user = await create_user(
            session,
            args.name,
            args.role,
            args.site,
            args.password,
            args.display_name,
            args.phone,
            seeders=SITE_SEEDERS,
        )
        await _audit(session, user, "user.create", after={"role": args.role, "site_created": existed is None})
        return existed is None

    if _with_session(add):
        print(
            f"created a new site {args.site!r} (there was none by that name; check the spelling if you meant "
            "an existing one: `users list` shows every site)"
        )
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
        before = user.active
        ended = await set_active(session, user, False)
        await _audit(session, user, "user.disable", {"active": before}, {"active": False})
        return f"disabled {user.username}; {ended} login(s) ended"

    return _user_command(args.name, change)


def cmd_users_enable(args: argparse.Namespace) -> int:
    async def change(session: Any, user: Any) -> str:
        await _audit(session, user, "user.enable", {"active": user.active}, {"active": True})
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
        before = user.role
        ended = await set_role(session, user, args.role)
        await _audit(session, user, "user.role", {"role": before}, {"role": args.role})
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
        await _audit(session, user, "user.password", after={"logins_ended": ended})
        return f"password of {user.username} reset; {ended} login(s) ended"

    return _user_command(args.name, change)


def cmd_users_revoke(args: argparse.Namespace) -> int:
    from .sessions import revoke_sessions

    async def change(session: Any, user: Any) -> str:
        ended = await revoke_sessions(session, user.id)
        await _audit(session, user, "user.revoke", after={"logins_ended": ended})
        return f"{ended} login(s) of {user.username} ended"

    return _user_command(args.name, change)


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
    contacts.add_users_cli(users, _run)
    channels.add_cli(sub, _run)

    demo.add_parsers(sub)

    sub.add_parser("vapid", help="print the VAPID public key (made on first use)").set_defaults(fn=cmd_vapid)

    export = sub.add_parser("export", help="print everything a site holds as JSON (no credentials)")
    export.add_argument("--site", required=True)
    export.set_defaults(fn=cmd_export)

    from .crmcli import add_parsers as add_crm_parsers

    add_crm_parsers(sub, prepare)
    backup.add_commands(sub, load_models=_load_models)

    args = parser.parse_args(argv)
    return args.fn(args)
