"""Several app processes on one PostgreSQL database, as `python -m backend serve --workers N` runs them:
keys made once when N processes start cold together, one schema, tokens valid on every process, records
stored exactly once when copies race through different processes, and each escalation rung fired once
however many processes run the workers. Real processes, a real PostgreSQL database, loopback only."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from .conftest import POSTGRES_URL, require
from .servers import ROOT, ServerProcess, drop_postgres_database, fresh_postgres_database, off_loop
from .test_recovery import call, record

COLD_STARTS = 4


def test_cold_starts_agree_on_the_keys(tmp_path: Path) -> None:
    """N processes making secret.key and the VAPID key at the same instant all end up with one complete key."""
    script = (
        "import sys; from backend.config import load_settings; from backend import push\n"
        "s = load_settings(); print(s.secret_key, push.vapid_public_key(s))"
    )
    env = {k: v for k, v in os.environ.items() if k != "OUTAGE_SECRET_KEY"}
    env["OUTAGE_VAR_DIR"] = str(tmp_path / "var")
    env.pop("OUTAGE_VAPID_KEY_PATH", None)
    procs = [
        subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(COLD_STARTS)
    ]
    outputs = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(outputs) == 1, outputs  # every process read the same secret and the same VAPID key
    secret, vapid = outputs.pop().split()
    assert len(secret) >= 40 and len(vapid) > 80
    assert (tmp_path / "var" / "secret.key").read_text().strip() == secret
    assert not [p for p in (tmp_path / "var").iterdir() if p.name.endswith(".tmp")]  # no leftovers


def _count(url: str, sql: str) -> list[tuple]:
    import asyncpg
    from sqlalchemy.engine import make_url

    u = make_url(url)

    async def run() -> list[tuple]:
        conn = await asyncpg.connect(host=u.host, port=u.port or 5432, user=u.username, database=u.database)
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return off_loop(asyncio.run, run())


@pytest.fixture
def two_servers(tmp_path: Path):
    """One `serve --workers 2` and one single-process `serve`, sharing a fresh PostgreSQL database and one var/
    (no OUTAGE_SECRET_KEY: the key file is shared as on one machine), started cold at the same moment."""
    require(bool(POSTGRES_URL), "PostgreSQL (TEST_POSTGRES_URL)")
    url = fresh_postgres_database(POSTGRES_URL)
    var = tmp_path / "var"
    env = {"OUTAGE_VAR_DIR": str(var), "OUTAGE_SECRET_KEY": "", "OUTAGE_SYNC_PER_USER": "8"}
    many = ServerProcess(tmp_path / "a", url, args=("--workers", "2"), **env)
    one = ServerProcess(tmp_path / "b", url, **env)
    for server in (many, one):
        server.env.pop("OUTAGE_SECRET_KEY")
        server.var_dir.mkdir(parents=True)
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda s: s.start(timeout=90), (many, one)))  # both migrate at once: one wins
        many.add_users("mp", ("agent", "lead", "manager"))
        yield many, one, url
    finally:
        many.stop()
        one.stop()
        drop_postgres_database(POSTGRES_URL, url)


def test_two_processes_one_database(two_servers) -> None:
    many, one, url = two_servers
    assert _count(url, "SELECT count(*) FROM alembic_version") == [(1,)]

    # Tokens: a login made by either serves on both (and on both workers of the first: several requests).
    tokens = {s.base: s.login("mp-agent") for s in (many, one)}
    for token in tokens.values():
        for server in (many, one, many, many, one, many):
            r = httpx.get(f"{server.base}/api/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert r.status_code == 200, r.text
    agent = {"Authorization": f"Bearer {tokens[many.base]}"}

    # Exactly once: the same 120 records, in overlapping batches, through both servers at once.
    records = [record(call(name=f"客户{n}", phone=f"1380000{n:04d}")) for n in range(120)]
    batches = [records[i : i + 40] for i in range(0, 120, 20)] * 2  # every record in 4 batches

    def send(job: tuple[int, list[dict]]) -> list[dict]:
        n, batch = job
        server = (many, one)[n % 2]
        body = {"device_id": f"dev-{n % 3}", "cursor": None, "records": batch}
        r = httpx.post(f"{server.base}/api/sync", json=body, headers=agent, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()["results"]

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = [res for results in pool.map(send, enumerate(batches)) for res in results]
    outcomes = Counter(a["status"] for a in answers)
    assert outcomes == {"created": 120, "duplicate": len(answers) - 120}, outcomes
    receipts: dict[str, set[str]] = {}
    for a in answers:
        receipts.setdefault(a["id"], set()).add(a["receipt"])
    assert len(receipts) == 120 and all(len(r) == 1 for r in receipts.values())  # one receipt per record
    assert _count(url, "SELECT count(*), count(DISTINCT seq) FROM records") == [(120, 120)]
    assert _count(url, "SELECT count(*) FROM callbacks") == [(120,)]  # the hook ran once per record

    # One escalation per rung: drill incidents whose ladders run out in seconds, workers in all 3 processes.
    lead = {"Authorization": f"Bearer {many.login('mp-lead')}"}
    ids = []
    for n in range(3):
        server = (many, one)[n % 2]
        r = httpx.post(
            f"{server.base}/api/incidents",
            json={"playbook": "fire-theft", "drill": {"time_scale": 3600}},
            headers=lead,
            timeout=30,
        )
        assert r.status_code in (200, 201), r.text
        ids.append(r.json()["id"])
    with httpx.Client(timeout=30, headers=lead) as http:
        for incident_id in ids:
            for _ in range(200):
                ladder = http.get(f"{one.base}/api/incidents/{incident_id}").json()["ladder"]
                if all(rung["status"] == "fired" for rung in ladder):
                    break
                time.sleep(0.1)
            assert all(rung["status"] == "fired" for rung in ladder), ladder
    fired = _count(
        url,
        "SELECT incident_id, data->>'rung', count(*) FROM incident_events "
        "WHERE kind = 'escalation_fired' GROUP BY 1, 2",
    )
    assert len(fired) == 3 * len(ladder) and {n for *_, n in fired} == {1}, fired
    # Both servers still agree on who is who after all that (no process made a key of its own).
    r = httpx.get(f"{one.base}/api/me", headers=lead, timeout=10)
    assert r.status_code == 200 and r.json()["username"] == "mp-lead"
