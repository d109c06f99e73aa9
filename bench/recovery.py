"""Recovery burst: N devices × M records synced at once over HTTP to a real server process.

Baseline, measured in the same run on the same database: the raw DBAPI executemany insert rate of the
same rows into the same `records` table, M rows per transaction, one connection (no HTTP, no validation,
no receipts or cursors). Afterwards every record must be stored exactly once.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy.engine import make_url

from tests.servers import ServerProcess, drop_postgres_database, fresh_postgres_database

from .devices import Device, make_agents, make_devices, percentile, upload_all

AGENTS = 20  # devices share these accounts round-robin (one login each is enough for the server's work)


@dataclass
class BurstResult:
    backend: str
    devices: int
    records: int
    seconds: float
    rate: float
    p50: float
    p99: float
    peak_rss: int
    raw_rate: float
    stored: int
    duplicates: int
    retries: int
    p99_50: float = float("nan")  # 100-record batch p99 with 50 devices uploading at once
    p50_50: float = float("nan")
    single_batch: float = float("nan")  # one device alone: the floor for a batch's latency
    idle_rss: int = 0  # the server after start-up and the first requests
    notes: list[str] = field(default_factory=list)


class PeakRSS:
    """Samples the server process's resident memory every 50 ms in a thread."""

    def __init__(self, pid: int):
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------- the database, directly


def _row_values(site_id: int, agent_id: int, device: Device, record: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "id": uuid.uuid4(),
        "site_id": site_id,
        "device_id": device.device_id + "-raw",
        "form": record["form"],
        "form_version": record["form_version"],
        "agent_id": agent_id,
        "rev": 1,
        "data": record["data"],
        "content_hash": "0" * 64,
        "captured_at": now,
        "received_at": now,
        "updated_at": now,
        "receipt": "R-RAW0-0000",
        "seq": 0,
        "source": "device",
        "reentry_status": "pending",
    }


COLUMNS = [
    "id",
    "site_id",
    "device_id",
    "form",
    "form_version",
    "agent_id",
    "rev",
    "data",
    "content_hash",
    "captured_at",
    "received_at",
    "updated_at",
    "receipt",
    "seq",
    "source",
    "reentry_status",
]


class Database:
    """The benchmark's view of the server's database: site/user ids, the raw baseline, counts."""

    def __init__(self, url: str):
        self.url = make_url(url)
        self.dialect = self.url.get_backend_name()

    async def _pg(self):
        import asyncpg

        return await asyncpg.connect(
            host=self.url.host,
            port=self.url.port or 5432,
            user=self.url.username,
            password=self.url.password,
            database=self.url.database,
        )

    async def fetch(self, sql: str, *args: Any) -> list[tuple]:
        if self.dialect == "sqlite":
            with sqlite3.connect(self.url.database, timeout=30) as conn:
                return conn.execute(sql.replace("$1", "?").replace("$2", "?"), args).fetchall()
        conn = await self._pg()
        try:
            return [tuple(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    async def insert_many(self, table: str, columns: list[str], rows: list[tuple]) -> None:
        if self.dialect == "sqlite":
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            with sqlite3.connect(self.url.database, timeout=30) as conn:
                conn.executemany(sql, [tuple(_sqlite_value(v) for v in row) for row in rows])
            return
        marks = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
        conn = await self._pg()
        try:
            await conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
        finally:
            await conn.close()

    async def raw_insert_rate(self, site_id: int, agent_id: int, devices: list[Device]) -> float:
        """Rows/s of plain executemany, one transaction per device's batch; the rows are deleted after."""
        batches = [[_row_values(site_id, agent_id, d, r) for r in d.queue] for d in devices]
        total = sum(len(b) for b in batches)
        if self.dialect == "sqlite":
            sql = f"INSERT INTO records ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
            prepared = [[tuple(_sqlite_value(row[c]) for c in COLUMNS) for row in b] for b in batches]
            with sqlite3.connect(self.url.database, timeout=30, isolation_level=None) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")  # as the app runs it
                started = time.perf_counter()
                for rows in prepared:
                    conn.execute("BEGIN")
                    conn.executemany(sql, rows)
                    conn.execute("COMMIT")
                seconds = time.perf_counter() - started
                conn.execute("DELETE FROM records WHERE device_id LIKE '%-raw'")
            return total / seconds
        sql = (
            f"INSERT INTO records ({', '.join(COLUMNS)}) VALUES "
            f"({', '.join(f'${n}' for n in range(1, len(COLUMNS) + 1))})"
        )
        prepared = [
            [
                tuple(json.dumps(row[c], ensure_ascii=False) if c == "data" else row[c] for c in COLUMNS)
                for row in b
            ]
            for b in batches
        ]
        conn = await self._pg()
        try:
            started = time.perf_counter()
            for rows in prepared:
                async with conn.transaction():
                    await conn.executemany(sql, rows)
            seconds = time.perf_counter() - started
            await conn.execute("DELETE FROM records WHERE device_id LIKE '%-raw'")
        finally:
            await conn.close()
        return total / seconds

    async def stored_ids(self, device_prefix: str) -> list[str]:
        rows = await self.fetch("SELECT id FROM records WHERE device_id LIKE $1", device_prefix + "%")
        return [str(uuid.UUID(str(r[0]))) for r in rows]


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return value.hex  # SQLAlchemy's Uuid on SQLite: CHAR(32)
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ")
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return value


# ---------------------------------------------------------------- one backend


def check_exactly_once(sent: set[str], stored: list[str]) -> tuple[int, int]:
    """(stored count, duplicates); raises if any acknowledged record is missing or unknown ones appear."""
    duplicates = len(stored) - len(set(stored))
    missing = sent - set(stored)
    extra = set(stored) - sent
    if missing or extra or duplicates:
        raise AssertionError(
            f"exactly-once broken: {len(missing)} missing, {len(extra)} unknown, {duplicates} duplicated"
        )
    return len(stored), duplicates


def run_burst(
    backend: str,
    devices: int,
    records: int,
    *,
    postgres_admin: str | None,
    log=print,
    concurrent_p99: int = 50,
    p99_rounds: int = 6,
) -> BurstResult:
    with tempfile.TemporaryDirectory(prefix=f"bench-{backend}-") as tmp:
        url = None
        if backend == "postgresql":
            assert postgres_admin, "PostgreSQL needs --postgres-url (or TEST_POSTGRES_URL)"
            url = fresh_postgres_database(postgres_admin)
        server = ServerProcess(Path(tmp), database_url=url)
        try:
            return asyncio.run(_burst(server, backend, devices, records, log, concurrent_p99, p99_rounds))
        except Exception:
            if server.log.exists():  # the temporary directory goes away: show why the server failed
                log(f"server log ({backend}), last lines:\n" + server.log.read_text(errors="replace")[-6000:])
            raise
        finally:
            server.stop()
            if url:
                drop_postgres_database(postgres_admin, url)


async def _burst(
    server: ServerProcess,
    backend: str,
    n_devices: int,
    n_records: int,
    log,
    concurrent_p99: int,
    p99_rounds: int,
) -> BurstResult:
    users = await asyncio.to_thread(server.add_users, "bench", ("agent", "admin"))
    await asyncio.to_thread(server.start)
    admin = server.login(users["admin"])
    tokens = await asyncio.to_thread(make_agents, server.base, admin, "bench", AGENTS, server.PASSWORD)
    db = Database(server.env.get("DATABASE_URL") or f"sqlite:///{server.var_dir / 'outage_desk.db'}")
    site_id = (await db.fetch("SELECT id FROM sites WHERE slug = $1", "bench"))[0][0]
    agent_id = (await db.fetch("SELECT id FROM users WHERE username = $1", "bench-a0"))[0][0]

    devices = make_devices(tokens, "burst", n_devices, n_records)
    log(f"  {backend}: raw executemany baseline ({n_devices * n_records} rows)…")
    raw_rate = await db.raw_insert_rate(site_id, agent_id, devices)

    # One device alone first: the unloaded latency of a 100-record batch.
    solo = make_devices(tokens, "solo", 1, 100 * 5)
    await upload_all(server.base, solo)
    single = percentile(solo[0].latencies, 50)
    idle_rss = psutil.Process(server.proc.pid).memory_info().rss

    log(f"  {backend}: burst of {n_devices} devices × {n_records} records…")
    sent = {r["id"] for d in devices for r in d.queue}
    with PeakRSS(server.proc.pid) as rss:
        seconds = await upload_all(server.base, devices)
        # 50 devices at once, each uploading p99_rounds batches of 100 back to back.
        few = make_devices(tokens, "p99", concurrent_p99, 100 * p99_rounds)
        await upload_all(server.base, few)
    leftovers = sum(len(d.queue) for d in devices + few)
    if leftovers:
        raise AssertionError(f"{leftovers} records still queued after the burst")
    stored, duplicates = check_exactly_once(sent, await db.stored_ids("burst-"))
    latencies = [x for d in devices for x in d.latencies]
    few_latencies = [x for d in few for x in d.latencies]
    return BurstResult(
        backend,
        n_devices,
        n_records,
        seconds,
        len(sent) / seconds,
        percentile(latencies, 50),
        percentile(latencies, 99),
        rss.peak,
        raw_rate,
        stored,
        duplicates,
        sum(d.retries for d in devices),
        percentile(few_latencies, 99),
        percentile(few_latencies, 50),
        single,
        idle_rss,
    )
