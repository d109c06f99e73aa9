"""Backup and restore with real processes: a backup taken while a sync burst is running holds every record the
server had acknowledged before it started; it restores into an empty SQLite and an empty PostgreSQL database
(a server on the restored PostgreSQL logs in and stores more); a portable backup of PostgreSQL restores into
SQLite; a database that holds data is refused; scheduled backups follow a manual clock and keep the newest N."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from types import SimpleNamespace

import httpx
import pytest

from backend import backup
from backend.clock import ManualClock
from backend.config import load_settings

from .conftest import POSTGRES_URL, require
from .servers import ROOT, ServerProcess, drop_postgres_database, fresh_postgres_database

DEVICES = 4
MAX_BATCHES = 80  # per device; the burst runs until the backup is done, bounded by this and by 90 s
PER_BATCH = 25


def record() -> dict:
    return {
        "id": str(uuid.uuid4()),
        "form": "call-record",
        "form_version": 1,
        "rev": 1,
        "captured_at": "2026-11-23T10:00:05+08:00",
        "data": {
            "called_at": "2026-11-23T10:00:00+08:00",
            "caller_name": "张三",
            "phone": "13800001111",
            "category": "complaint",
            "urgency": "normal",
            "details": "停电",
            "callback_promised": False,
        },
    }


def cli(database_url: str, *args: str, var_dir) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "OUTAGE_VAR_DIR": str(var_dir),
        "OUTAGE_SECRET_KEY": "x",
    }
    return subprocess.run(
        [sys.executable, "-m", "backend", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def sqlite_ids(path) -> set[uuid.UUID]:
    with sqlite3.connect(path) as conn:
        return {uuid.UUID(row[0]) for row in conn.execute("SELECT id FROM records")}


def test_backup_during_sync_burst_restores_every_acknowledged_record(tmp_path):
    require(bool(POSTGRES_URL), "PostgreSQL (TEST_POSTGRES_URL)")
    server = ServerProcess(tmp_path / "live", OUTAGE_SYNC_PER_USER="8", OUTAGE_BACKUP_EVERY_HOURS="0")
    users = server.add_users("bk", ("agent",))
    server.start()
    token = server.login(users["agent"])
    acknowledged: set[uuid.UUID] = set()
    sent: set[uuid.UUID] = set()
    lock = threading.Lock()
    errors: list[str] = []
    stop = threading.Event()

    def device(n: int) -> None:
        with httpx.Client(
            base_url=server.base, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as c:
            until = time.monotonic() + 90
            for _ in range(MAX_BATCHES):
                if stop.is_set() or time.monotonic() > until:
                    return
                batch = [record() for _ in range(PER_BATCH)]
                with lock:
                    sent.update(uuid.UUID(r["id"]) for r in batch)
                answer = c.post("/api/sync", json={"device_id": f"dev-{n}", "records": batch})
                if answer.status_code != 200:
                    errors.append(f"{answer.status_code} {answer.text[:200]}")
                    continue
                with lock:
                    acknowledged.update(
                        uuid.UUID(r["id"]) for r in answer.json()["results"] if r["status"] == "created"
                    )

    pg_url = None
    try:
        threads = [threading.Thread(target=device, args=(n,)) for n in range(DEVICES)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        with lock:
            before = set(acknowledged)
        during = tmp_path / "during.db"
        server.cli("backup", str(during))  # while the devices keep syncing
        still_running = all(t.is_alive() for t in threads)
        stop.set()
        for thread in threads:
            thread.join(120)
        assert not errors, errors[:3]
        assert still_running and len(before) >= 200
        assert acknowledged == sent and len(acknowledged) > len(before)

        restored = tmp_path / "restored.db"
        backup.restore(f"sqlite+aiosqlite:///{restored}", during)
        ids = sqlite_ids(restored)
        assert before <= ids, f"{len(before - ids)} acknowledged records missing from the backup"
        assert ids <= sent
        with sqlite3.connect(restored) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

        again = cli(f"sqlite+aiosqlite:///{restored}", "restore", str(during), var_dir=tmp_path / "r1")
        assert again.returncode == 2 and "not empty" in again.stderr
        assert sqlite_ids(restored) == ids

        # The final backup into PostgreSQL: a server on it logs the agent in and stores more.
        final = tmp_path / "final.db"
        backup.backup(
            server.env.get("DATABASE_URL") or f"sqlite+aiosqlite:///{server.var_dir / 'outage_desk.db'}",
            final,
        )
        pg_url = fresh_postgres_database(POSTGRES_URL)
        backup.restore(pg_url, final)
        server.stop()
        on_pg = ServerProcess(tmp_path / "pg", database_url=pg_url, OUTAGE_BACKUP_EVERY_HOURS="0")
        on_pg.env["OUTAGE_SECRET_KEY"] = server.env["OUTAGE_SECRET_KEY"]
        on_pg.start()
        try:
            pg_token = on_pg.login(users["agent"])
            headers = {"Authorization": f"Bearer {pg_token}"}
            listed = httpx.get(f"{on_pg.base}/api/records?limit=1", headers=headers, timeout=30)
            assert listed.status_code == 200, listed.text
            more = httpx.post(
                f"{on_pg.base}/api/sync",
                json={"device_id": "new", "records": [record()]},
                headers=headers,
                timeout=30,
            )
            assert more.status_code == 200 and more.json()["results"][0]["status"] == "created", more.text
        finally:
            on_pg.stop()

        # A portable backup of PostgreSQL into SQLite: every record, the new one too.
        portable = tmp_path / "pg.jsonl.gz"
        assert "portable" in backup.backup(pg_url, portable)
        from_pg = tmp_path / "from_pg.db"
        backup.restore(f"sqlite+aiosqlite:///{from_pg}", portable)
        assert acknowledged <= sqlite_ids(from_pg) and len(sqlite_ids(from_pg)) == len(acknowledged) + 1
    finally:
        stop.set()
        server.stop()
        if pg_url:
            drop_postgres_database(POSTGRES_URL, pg_url)


async def test_scheduled_backups_follow_the_clock_and_keep_the_newest(tmp_path):
    database = tmp_path / "site.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (42)")
    folder = tmp_path / "backups"
    settings = load_settings(
        database_url=f"sqlite+aiosqlite:///{database}",
        secret_key="k",
        backup_dir=str(folder),
        backup_every_hours=24.0,
        backup_keep=2,
    )
    clock = ManualClock()
    state = SimpleNamespace(settings=settings, clock=clock)
    assert await backup.backup_due(state) == 1  # none yet: one now
    assert await backup.backup_due(state) == 0
    clock.advance(hours=23)
    assert await backup.backup_due(state) == 0
    clock.advance(hours=1)
    assert await backup.backup_due(state) == 1
    clock.advance(hours=24)
    assert await backup.backup_due(state) == 1
    kept = backup.scheduled(folder)
    assert len(kept) == 2 and kept[-1].name == clock.at.strftime(backup.NAME)
    with sqlite3.connect(kept[-1]) as conn:
        assert conn.execute("SELECT x FROM t").fetchone() == (42,)
    off = SimpleNamespace(
        settings=load_settings(
            database_url=settings.database_url, secret_key="k", backup_dir=str(folder), backup_every_hours=0.0
        ),
        clock=clock,
    )
    clock.advance(hours=48)
    assert await backup.backup_due(off) == 0


def test_restore_refuses_what_is_not_a_backup(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a backup at all")
    with pytest.raises(backup.RestoreError, match="not an Outage Desk backup"):
        backup.restore(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", junk)
    assert not (tmp_path / "x.db").exists()  # refused before the target was touched
