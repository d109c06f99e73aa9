"""Login throttling that holds under concurrency and does not lock other people out, a login burst that
leaves the rest of the API fast, and sessions that end when a password, role or account changes (CLI and
admin API, site-scoped). On SQLite and PostgreSQL; the concurrency tests on a real server process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections import Counter

import httpx
import pytest
from sqlalchemy import delete, func, select

from backend.auth import LoginFailure

from .conftest import PASSWORD, SECRET, make_site
from .servers import ROOT, ServerProcess

PROXY = "127.0.0.1"  # the real server's peer in these tests: a trusted reverse proxy


@pytest.fixture(scope="module")
def server(database_url, tmp_path_factory):
    """`python -m backend serve` on the test database, behind a trusted proxy (us), tokens keyed like the
    in-process app's so make_site's tokens work on both."""
    process = ServerProcess(
        tmp_path_factory.mktemp("sec"),
        database_url=database_url,
        OUTAGE_SECRET_KEY=SECRET,
        OUTAGE_TRUSTED_PROXIES=PROXY,
        OUTAGE_RUN_WORKERS="0",
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture
async def clean_proxy(db):
    """No failures recorded against the proxy's own address (a server that ignored X-Forwarded-For would
    have put them there), so each test starts from the same throttle state."""
    async with db() as session:
        await session.execute(delete(LoginFailure).where(LoginFailure.address == PROXY))
        await session.commit()


def fresh_address() -> str:
    n = uuid.uuid4().int
    return f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250 + 1}"


async def logins(base: str, attempts: list[tuple[str, str, str]]) -> list[int]:
    """All at once: (username, password, client address as the proxy forwards it) -> status codes."""
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:

        async def one(username: str, password: str, address: str) -> int:
            response = await http.post(
                "/api/auth/login",
                json={"username": username, "password": password},
                headers={"X-Forwarded-For": address},
            )
            return response.status_code

        return list(await asyncio.gather(*(one(*a) for a in attempts)))


async def failures(db, **where: str) -> int:
    async with db() as session:
        query = select(func.count()).select_from(LoginFailure)
        for column, value in where.items():
            query = query.where(getattr(LoginFailure, column) == value)
        return (await session.execute(query)).scalar_one()


async def test_concurrent_wrong_logins_verify_at_most_the_limit(server, db, clean_proxy):
    site = await make_site(db, roles=("agent",), prefix="burst")
    username = site.usernames["agent"]
    # 24 wrong passwords at once, each from its own address: only the per-account limit applies.
    statuses = await logins(server.base, [(username, f"wrong-{n}", fresh_address()) for n in range(24)])
    counts = Counter(statuses)
    assert set(counts) <= {401, 429}, counts
    assert counts[401] <= 5, f"{counts[401]} wrong passwords were checked against a limit of 5: {counts}"
    assert await failures(db, username=username) <= 5
    # Locked now, even with the right password, from anywhere.
    assert await logins(server.base, [(username, PASSWORD, fresh_address())]) == [429]


async def test_made_up_usernames_do_not_lock_out_real_users(server, db, clean_proxy):
    site = await make_site(db, roles=("agent", "lead", "manager"), prefix="spray")
    office = fresh_address()
    # The lead has logged in from the office before (a shared NAT address, say).
    assert await logins(server.base, [(site.usernames["lead"], PASSWORD, office)]) == [200]
    # Someone at that address guesses 30 made-up usernames.
    statuses = await logins(
        server.base, [(f"ghost-{uuid.uuid4().hex[:8]}", "guess", office) for _ in range(30)]
    )
    # The address is throttled for names it has no history with...
    assert await logins(server.base, [(f"ghost-{uuid.uuid4().hex[:8]}", "guess", office)]) == [429]
    # ...but other people, from their own addresses, log in as usual,
    assert await logins(server.base, [(site.usernames["agent"], PASSWORD, fresh_address())]) == [200]
    # and so does the lead, who is known at the office address.
    assert await logins(server.base, [(site.usernames["lead"], PASSWORD, office)]) == [200]
    # At most the address's limit of guesses had their passwords checked, even all at once.
    assert Counter(statuses)[401] <= 20 and 429 in statuses, Counter(statuses)


async def test_forwarded_for_is_believed_only_from_a_trusted_proxy(client, db):
    """The in-process client is not a trusted proxy: a made-up X-Forwarded-For does not buy fresh addresses."""
    names = [f"spoof-{uuid.uuid4().hex[:8]}" for _ in range(25)]
    try:
        statuses = []
        for name in names:  # each with another made-up forwarded address
            response = await client.post(
                "/api/auth/login",
                json={"username": name, "password": "guess"},
                headers={"X-Forwarded-For": fresh_address()},
            )
            statuses.append(response.status_code)
        assert statuses[-1] == 429 and Counter(statuses)[401] <= 20, statuses
        assert await failures(db, address="testclient") >= 20
    finally:
        async with db() as session:  # the in-process client's address is shared by every test
            await session.execute(delete(LoginFailure).where(LoginFailure.username.in_(names)))
            await session.commit()


async def test_health_stays_fast_during_a_burst_of_logins(server, db, clean_proxy):
    site = await make_site(db, roles=("agent",), prefix="kdf")
    attempts = [
        (
            site.usernames["agent"] if n % 4 == 0 else f"nobody-{uuid.uuid4().hex[:8]}",
            "wrong-password",
            fresh_address(),
        )
        for n in range(20)
    ]
    async with httpx.AsyncClient(base_url=server.base, timeout=120) as http:
        burst = asyncio.create_task(logins(server.base, attempts))
        await asyncio.sleep(0.2)  # the logins are in flight
        times = []
        while not burst.done() and len(times) < 10:
            started = time.perf_counter()
            response = await http.get("/api/health")
            times.append(time.perf_counter() - started)
            assert response.status_code == 200
            await asyncio.sleep(0.05)
        statuses = await burst
    assert times, "the burst was over before health could be measured"
    assert max(times) < 1.0, f"/api/health took {max(times):.2f} s during the burst ({len(times)} probes)"
    assert Counter(statuses)[401] >= 15, f"the passwords were not even checked: {Counter(statuses)}"


# ---------------------------------------------------------------- sessions end


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url, "OUTAGE_SECRET_KEY": SECRET}
    return subprocess.run(
        [sys.executable, "-m", "backend", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def alive(client, token_headers: dict[str, str]) -> bool:
    status = (await client.get("/api/me", headers=token_headers)).status_code
    assert status in (200, 401)
    return status == 200


async def test_cli_changes_end_the_users_sessions(client, db, database_url):
    site = await make_site(db, prefix="cli")
    assert all([await alive(client, site.headers(role)) for role in site.tokens])
    commands = {
        "agent": ("users", "reset-password", site.usernames["agent"], "--password", "a-new-password-1"),
        "lead": ("users", "disable", site.usernames["lead"]),
        "manager": ("users", "set-role", site.usernames["manager"], "lead"),
        "admin": ("users", "revoke", site.usernames["admin"]),
    }
    for role, command in commands.items():
        result = cli(database_url, *command)
        assert result.returncode == 0, result.stderr[-1000:]
        assert not await alive(client, site.headers(role)), f"{role}'s token survived {' '.join(command[:2])}"
    login = await client.post(
        "/api/auth/login", json={"username": site.usernames["agent"], "password": "a-new-password-1"}
    )
    assert login.status_code == 200
    listing = cli(database_url, "users", "list", "--site", site.slug)
    assert listing.returncode == 0
    rows = {line.split()[0]: line.split()[1:4] for line in listing.stdout.splitlines()[1:]}
    assert rows[site.usernames["manager"]] == [site.slug, "lead", "active"]
    assert rows[site.usernames["lead"]] == [site.slug, "lead", "disabled"]
    # Password rules, and a clear refusal for a user that does not exist.
    for bad in ("short", site.usernames["agent"]):
        refused = cli(database_url, "users", "reset-password", site.usernames["agent"], "--password", bad)
        assert refused.returncode == 2 and refused.stderr.strip()
    assert cli(database_url, "users", "revoke", "no-such-user-anywhere").returncode == 2


async def login_headers(client, username: str, password: str = PASSWORD) -> dict[str, str]:
    response = await client.post("/api/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def test_admin_api_changes_end_the_users_sessions(client, db):
    site = await make_site(db, prefix="api")
    admin = site.headers("admin")
    agent_second = await login_headers(client, site.usernames["agent"])  # a second device of the same user
    reset = await client.post(
        f"/api/users/{site.users['agent']}/password", headers=admin, json={"password": "agent-pass-new"}
    )
    assert reset.status_code == 204, reset.text
    assert not await alive(client, site.headers("agent")) and not await alive(client, agent_second)
    await login_headers(client, site.usernames["agent"], "agent-pass-new")

    assert (await client.post(f"/api/users/{site.users['lead']}/disable", headers=admin)).status_code == 204
    assert not await alive(client, site.headers("lead"))
    refused = await client.post(
        "/api/auth/login", json={"username": site.usernames["lead"], "password": PASSWORD}
    )
    assert refused.status_code == 401
    assert (await client.post(f"/api/users/{site.users['lead']}/enable", headers=admin)).status_code == 204
    await login_headers(client, site.usernames["lead"])

    changed = await client.put(
        f"/api/users/{site.users['manager']}/role", headers=admin, json={"role": "agent"}
    )
    assert changed.status_code == 200 and changed.json()["role"] == "agent"
    assert not await alive(client, site.headers("manager"))
    demoted = await login_headers(client, site.usernames["manager"])
    assert (await client.get("/api/users", headers=demoted)).status_code == 403

    agent = await login_headers(client, site.usernames["agent"], "agent-pass-new")
    assert (await client.post(f"/api/users/{site.users['agent']}/revoke", headers=admin)).status_code == 204
    assert not await alive(client, agent)

    # Rules: at least 8 characters, not the username; an admin cannot disable or demote themselves.
    for bad in ("seven77", site.usernames["agent"], site.usernames["agent"].upper()):
        response = await client.post(
            f"/api/users/{site.users['agent']}/password", headers=admin, json={"password": bad}
        )
        assert response.status_code == 400 and response.json()["detail"], bad
    assert (await client.post(f"/api/users/{site.users['admin']}/disable", headers=admin)).status_code == 409
    assert (
        await client.put(f"/api/users/{site.users['admin']}/role", headers=admin, json={"role": "agent"})
    ).status_code == 409
    same = await client.post(
        "/api/users",
        headers=admin,
        json={"username": "same-as-pw-1", "password": "same-as-pw-1", "role": "agent"},
    )
    assert same.status_code == 400
    assert await alive(client, admin)


async def test_logout_all_ends_every_login_of_the_caller_only(client, db):
    site = await make_site(db, roles=("agent", "lead"), prefix="all")
    phone = await login_headers(client, site.usernames["agent"])
    assert (await client.post("/api/auth/logout-all", headers=site.headers("agent"))).status_code == 204
    assert not await alive(client, site.headers("agent")) and not await alive(client, phone)
    assert await alive(client, site.headers("lead"))


async def test_admin_user_api_is_site_scoped(client, db, site, other_site):
    admin = site.headers("admin")
    theirs = other_site.users["agent"]
    calls = [
        ("POST", f"/api/users/{theirs}/password", {"password": "taken-over-1"}),
        ("POST", f"/api/users/{theirs}/disable", None),
        ("POST", f"/api/users/{theirs}/enable", None),
        ("PUT", f"/api/users/{theirs}/role", {"role": "admin"}),
        ("POST", f"/api/users/{theirs}/revoke", None),
        ("POST", "/api/users/99999999999999999999/revoke", None),
        ("POST", "/api/users/0/disable", None),
    ]
    for method, path, body in calls:
        response = await client.request(method, path, headers=admin, json=body)
        assert response.status_code == 404, f"{method} {path}: {response.status_code} {response.text[:200]}"
        assert response.headers["content-type"].startswith("application/problem+json")
    assert await alive(client, other_site.headers("agent"))
    me = (await client.get("/api/me", headers=other_site.headers("agent"))).json()
    assert me["role"] == "agent" and me["site"] == other_site.slug
    await login_headers(client, other_site.usernames["agent"])  # the password is unchanged
    for role in ("agent", "lead", "manager"):
        response = await client.post(f"/api/users/{site.users['agent']}/revoke", headers=site.headers(role))
        assert response.status_code == 403, role
