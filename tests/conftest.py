"""Shared fixtures: a migrated SQLite and PostgreSQL database, an in-process API client per database,
test sites with one user per role, a live server process and headless Chromium.

PostgreSQL tests run when TEST_POSTGRES_URL is set; browser tests when /usr/bin/chromium exists.
With OUTAGE_TEST_REQUIRE_ALL=1 (set by .ci/run) a missing PostgreSQL or Chromium is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient, TestClient

from backend.app import SITE_SEEDERS, create_app
from backend.auth import create_user, hasher, issue_token
from backend.cli import load_defaults
from backend.config import load_settings
from backend.db import make_engine, sessionmaker
from backend.migrate import upgrade

from .contract import Contract
from .servers import ServerProcess, drop_postgres_database, fresh_postgres_database, off_loop

REQUIRE_ALL = os.environ.get("OUTAGE_TEST_REQUIRE_ALL") == "1"
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL")
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct-horse-9"
PASSWORD_HASH = hasher.hash(PASSWORD)  # hashed once: Argon2 is slow on purpose
ROLES = ("agent", "lead", "manager", "admin")
SECRET = "test-secret-key"
_counter = itertools.count()


def require(condition: bool, what: str) -> None:
    """Skip when a real part is missing, or fail when CI said it must be there."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"{what} is required (OUTAGE_TEST_REQUIRE_ALL=1) but missing")
    pytest.skip(f"{what} not available")


# ---------------------------------------------------------------- databases


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database with the default playbooks and forms, once per test session per backend."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
        off_loop(_prepare, url)
        yield url
        return
    require(bool(POSTGRES_URL), "PostgreSQL (TEST_POSTGRES_URL)")
    url = fresh_postgres_database(POSTGRES_URL)
    try:
        off_loop(_prepare, url)
        yield url
    finally:
        drop_postgres_database(POSTGRES_URL, url)


def _prepare(url: str) -> None:
    upgrade(url)
    asyncio.run(_load_defaults(url))


async def _load_defaults(url: str) -> None:
    engine = make_engine(url)
    async with sessionmaker(engine)() as session:
        await load_defaults(session)
        await session.commit()
    await engine.dispose()


@pytest.fixture(scope="session")
def settings_for(tmp_path_factory: pytest.TempPathFactory):
    var_dir = tmp_path_factory.mktemp("var")

    def make(database_url: str, **overrides):
        # Push stand-ins listen on 127.0.0.1: allow it (a test of the outbound rules passes outbound_allow="").
        values = dict(
            database_url=database_url,
            secret_key=SECRET,
            vapid_key_path=var_dir / "vapid.pem",
            run_workers=False,
            outbound_allow="127.0.0.1",
        )
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture(scope="session")
async def client(database_url: str, settings_for) -> AsyncIterator[AsyncTestClient]:
    """The app in-process (workers off), one per database backend."""
    app = create_app(settings_for(database_url))
    contract = Contract(app)  # every answer it gets is checked against the OpenAPI document
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as test_client:
        test_client.event_hooks["response"].append(contract.observe)
        yield test_client
    print(f"\ncontract: {contract.checked} answers checked, {len(contract.mismatches)} mismatches")
    assert not contract.mismatches, contract.report()


@pytest.fixture(scope="session")
async def db(database_url: str):
    """A session factory on the client's database, with its own engine: the app runs its requests on
    another event loop, and an asyncpg connection belongs to the loop that opened it."""
    engine = make_engine(database_url)
    yield sessionmaker(engine)
    await engine.dispose()


# ---------------------------------------------------------------- sites and users


@dataclass
class TestSite:
    slug: str
    users: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    usernames: dict[str, str] = field(default_factory=dict)

    def headers(self, role: str = "agent") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


async def make_site(factory, roles=ROLES, prefix: str = "site") -> TestSite:
    site = TestSite(slug=f"{prefix}-{next(_counter)}-{uuid.uuid4().hex[:6]}")
    async with factory() as session:
        for role in roles:
            username = f"{site.slug}-{role}"
            user = await create_user(
                session,
                username,
                role,
                site.slug,
                PASSWORD,
                f"{role.title()} {site.slug}",
                "13800000000",
                password_hash=PASSWORD_HASH,
                seeders=SITE_SEEDERS,
            )
            token, _ = issue_token(session, SECRET, user.id, timedelta(hours=1))
            site.users[role], site.tokens[role], site.usernames[role] = user.id, token, username
        await session.commit()
    return site


@contextlib.contextmanager
def sync_client_and_site(database_url: str, settings_for, prefix: str):
    """A blocking TestClient on the app and a fresh site, for hypothesis tests (which are not async)."""

    async def new_site() -> TestSite:
        engine = make_engine(database_url)
        try:
            return await make_site(sessionmaker(engine), prefix=prefix)
        finally:
            await engine.dispose()

    site = off_loop(asyncio.run, new_site())
    with TestClient(app=create_app(settings_for(database_url)), raise_server_exceptions=False) as client:
        yield client, site


@pytest.fixture
async def site(db) -> TestSite:
    """A fresh site with one user per role, each with a valid token: tests never see each other's data."""
    return await make_site(db)


@pytest.fixture
async def other_site(db) -> TestSite:
    return await make_site(db, prefix="other")


# ---------------------------------------------------------------- live server and browser


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The real server (`python -m backend serve`) on a free port with its own SQLite file and a demo site."""
    server = ServerProcess(tmp_path_factory.mktemp("live"))
    server.add_users("live")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    # Per module, not per session: Playwright's sync API keeps an event loop running in this thread while it is
    # started, and the async fixtures and tests of later modules need the thread free of it.
    require(Path(CHROMIUM).exists() or bool(shutil.which("chromium")), "Chromium (/usr/bin/chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-quic",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


ARTIFACTS = Path(
    os.environ.get("OUTAGE_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts")
)


@pytest.fixture
def new_context(browser):
    """Phone-sized browser contexts (390×844), zh-CN unless told; closed after the test."""
    contexts = []

    def make(locale: str = "zh-CN", **kwargs):
        # Playwright's wait_for_function evaluates its predicate with eval(), which the app's CSP forbids (the
        # app itself never needs it): tests bypass the CSP unless told not to; test_browser_login runs under it.
        kwargs.setdefault("bypass_csp", True)
        context = browser.new_context(viewport={"width": 390, "height": 844}, locale=locale, **kwargs)
        context.set_default_timeout(15000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
