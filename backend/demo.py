"""The first run and the demo site from the command line: the address a server really answers on (kept under
var/ for `demo` to print), the one-time setup link `serve` prints while no admin exists, and `demo`: one user
per role, idempotent (existing passwords are kept unless --reset-passwords). Every change is audited as "cli"."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from .commands import prepare, with_session
from .config import VAR_DIR, load_settings


async def cli_audit(session: Any, user: Any, action: str, before: Any = None, after: Any = None) -> None:
    """An audit entry for a change made from the command line (actor "cli")."""
    from . import audit, clock

    await audit.record(
        session,
        site_id=user.site_id,
        actor="cli",
        action=action,
        target=f"user:{user.username}",
        before=before,
        after=after,
        at=await clock.now(None, session),
    )


def remember_address(address: str) -> None:
    try:
        _served_file().write_text(address + "\n")
    except OSError:
        pass  # a read-only var/ only costs `demo` the address


def served_address(host: str, port: int, *, public: bool = False) -> str:
    """The address this server answers on; with public=True, OUTAGE_PUBLIC_BASE_URL when set (a proxy's)."""
    if public and os.environ.get("OUTAGE_PUBLIC_BASE_URL"):
        return os.environ["OUTAGE_PUBLIC_BASE_URL"].rstrip("/")
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}"


def _served_file() -> Any:
    import os

    return Path(os.environ.get("OUTAGE_VAR_DIR", VAR_DIR)) / "served-address"


def demo_address(host: str | None, port: int | None) -> str:
    """Where to log in: --host/--port if given, else OUTAGE_PUBLIC_BASE_URL, else the address the last
    `serve` of this install said it answers on, else the default."""
    if host or port:
        return served_address(host or "127.0.0.1", port or 8000)
    if os.environ.get("OUTAGE_PUBLIC_BASE_URL"):
        return os.environ["OUTAGE_PUBLIC_BASE_URL"].rstrip("/")
    path = _served_file()
    return path.read_text().strip() if path.exists() else served_address("127.0.0.1", 8000)


def announce_setup(base_url: str) -> None:
    """Once per start, until an admin exists: the one-time link that creates the first admin and site."""
    from . import firstrun

    if with_session(firstrun.needs_setup):
        link = firstrun.setup_link(base_url, load_settings().secret_key)
        print(
            "\nNo admin yet. Open this one-time setup link to create the first admin and site:\n"
            f"  {link}\n(or run `just demo` for a demo site with one user per role)\n",
            flush=True,
        )


DEMO_USERS = [
    ("agent", "坐席 小王"),
    ("lead", "值班组长 李"),
    ("manager", "运营主管 陈"),
    ("admin", "管理员"),
]


def cmd_demo(args: argparse.Namespace) -> int:
    """A demo site with one user per role. Idempotent: a second run keeps every existing password (and says
    so) unless --reset-passwords is given; new users get --password or a random one, printed once."""
    from sqlalchemy import select

    from .app import SITE_SEEDERS
    from .auth import User, create_user, get_or_create_site, hasher, password_problem

    if args.password and (rule := password_problem(f"{args.site}-agent", args.password)):
        print(rule, file=sys.stderr)
        return 2
    prepare()
    credentials: list[tuple[str, str, str]] = []

    async def make(session: Any) -> None:
        await get_or_create_site(session, args.site, "演示呼叫中心 Demo call center", seeders=SITE_SEEDERS)
        for index, (role, name) in enumerate(DEMO_USERS):
            username = f"{args.site}-{role}"
            password = args.password or secrets.token_urlsafe(9)
            existing = (
                await session.execute(select(User).where(User.username == username))
            ).scalar_one_or_none()
            if existing is None:
                user = await create_user(
                    session,
                    username,
                    role,
                    args.site,
                    password,
                    name,
                    f"138-0000-000{index}",
                    seeders=SITE_SEEDERS,
                )
                await cli_audit(session, user, "user.create", after={"role": role, "demo": True})
            elif args.reset_passwords:
                from .sessions import set_password

                await set_password(session, existing, hasher.hash(password))
                await cli_audit(session, existing, "user.password", after={"demo": True})
            else:
                password = "(unchanged: existing password kept; --reset-passwords sets new ones)"
            credentials.append((role, username, password))

    with_session(make)
    address = demo_address(args.host, args.port)
    print(f"Demo site '{args.site}' ready. Start the server (`just run`) and log in at {address} with:")
    for role, username, password in credentials:
        print(f"  {role:8} {username:20} {password}")
    return 0


def add_parsers(sub: Any) -> None:
    demo = sub.add_parser("demo", help="a demo site with one user per role (keeps existing passwords)")
    demo.add_argument("--site", default="demo")
    demo.add_argument("--password", help="one password for new demo users (default: random, printed)")
    demo.add_argument(
        "--reset-passwords", action="store_true", help="give existing demo users new passwords too"
    )
    demo.add_argument("--host", help="the host `serve` listens on, for the printed address")
    demo.add_argument("--port", type=int, help="the port `serve` listens on, for the printed address")
    demo.set_defaults(fn=cmd_demo)
