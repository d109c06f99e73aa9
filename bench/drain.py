"""The realistic recovery drain: every device is one user's phone (agents, and a few leads), every record promises
a callback, and every device sends its cursor and drains its change feed the way frontend/sync.js does (batches
of 100, then empty syncs until no more changes). Then open-loop latency: 100-record batches arriving at a fixed
rate (half and 0.8× the capacity just measured), latency counted from when each batch was due to be sent.

Checks, not only timings: every record stored exactly once, and every device received exactly the feed entries
addressed to it (an agent: its own callbacks; a lead: everyone's), none skipped, none twice, in cursor order.
Users and their tokens are written straight into the database (token hash with the server's secret), because
500 logins would only measure Argon2.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from backend.auth import token_hash
from tests.servers import ServerProcess, drop_postgres_database, fresh_postgres_database

from .devices import BATCH, STORED, call_record, percentile
from .recovery import Database, check_exactly_once

SECRET = "live-secret"  # ServerProcess's OUTAGE_SECRET_KEY


@dataclass
class Phone:
    device_id: str
    token: str
    user_id: int
    queue: list[dict[str, Any]]
    cursor: str | None = None
    sent: set[str] = field(default_factory=set)
    entries: list[tuple[int, str, str]] = field(default_factory=list)  # (cursor, kind, ref)
    retries: int = 0


@dataclass
class DrainResult:
    backend: str
    workers: int
    devices: int
    leads: int
    records: int
    seconds: float
    rate: float
    raw_rate: float
    entries: int
    idle_rss: int
    peak_rss: int
    p99_half: float = float("nan")
    p99_08: float = float("nan")
    load: float = 0.0
    errors: list[str] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # cores used through the drain, by whom


def promising_record(n: int, device: str) -> dict[str, Any]:
    record = call_record(n, device)
    record["data"]["callback_promised"] = True
    record["data"]["callback_due"] = "2026-11-23T12:00:00+08:00"
    return record


class CpuSplit:
    """Cores each party used between start() and stop(): the server (all its processes), this load generator,
    and the rest of the machine (PostgreSQL's connection processes come and go with the pool's overflow, so they
    are counted as the machine's busy time minus the other two). On a small machine they share the cores, which
    bounds scale-out."""

    def __init__(self, server_pid: int):
        self.server = psutil.Process(server_pid)

    def _times(self) -> dict[str, float]:
        def used(p: psutil.Process) -> float:
            try:
                t = p.cpu_times()
                return t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                return 0.0

        machine = psutil.cpu_times()
        busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        server = used(self.server) + sum(used(p) for p in self.server.children(recursive=True))
        me = used(psutil.Process())
        return {"server": server, "load generator": me, "postgresql": busy - server - me}

    def start(self) -> None:
        self.began, self.at = self._times(), time.perf_counter()

    def stop(self) -> dict[str, float]:
        seconds, now = time.perf_counter() - self.at, self._times()
        return {who: (now[who] - self.began[who]) / seconds for who in now}


class TreeRSS:
    """Peak resident memory of the server and its worker processes, sampled every 50 ms."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = False

    def now(self) -> int:
        total = 0
        for p in [self.root, *self.root.children(recursive=True)]:
            try:
                if "resource_tracker" not in " ".join(p.cmdline()):
                    total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    async def run(self) -> None:
        while not self._stop:
            self.peak = max(self.peak, await asyncio.to_thread(self.now))
            await asyncio.sleep(0.05)


async def _sync(http: aiohttp.ClientSession, base: str, phone: Phone, records: list[dict]) -> dict | None:
    try:
        async with http.post(
            f"{base}/api/sync",
            json={"device_id": phone.device_id, "cursor": phone.cursor, "records": records},
            headers={"Authorization": f"Bearer {phone.token}"},
        ) as response:
            if response.status == 200:
                return await response.json()
            if response.status not in (502, 503, 504, 429):
                raise AssertionError(
                    f"{phone.device_id}: HTTP {response.status}: {await response.text():.300}"
                )
    except (aiohttp.ClientError, TimeoutError, OSError):
        pass
    return None


async def drain(http: aiohttp.ClientSession, base: str, phone: Phone) -> None:
    """As frontend/sync.js: send what is queued with the cursor, apply the changes, until nothing is left."""
    attempt = 0
    while True:
        batch = phone.queue[:BATCH]
        answer = await _sync(http, base, phone, batch)
        if answer is None:
            phone.retries += 1
            attempt += 1
            await asyncio.sleep(min(0.2 * 2 ** min(attempt, 5), 3) * random.uniform(0.5, 1.0))
            continue
        attempt = 0
        done = {r["id"] for r in answer["results"] if r["status"] in STORED}
        phone.queue = [r for r in phone.queue if r["id"] not in done]
        phone.cursor = answer["cursor"]
        phone.entries += [(c["cursor"], c["kind"], c["ref"]) for c in answer["changes"] if c["ref"]]
        if not batch and not answer["more_changes"]:
            return


async def open_loop(base: str, phones: list[Phone], rate: float, seconds: float) -> list[float]:
    """Batches of 100 fresh records due at a fixed rate (batches/s), whatever the answers; latency from due."""
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def one(phone: Phone, due: float, n: int) -> None:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            records = [promising_record(n * BATCH + k, phone.device_id) for k in range(BATCH)]
            while records:
                answer = await _sync(http, base, phone, records)
                if answer is None:
                    await asyncio.sleep(0.2)
                    continue
                done = {r["id"] for r in answer["results"] if r["status"] in STORED}
                records = [r for r in records if r["id"] not in done]
            latencies.append(time.perf_counter() - due)

        start = time.perf_counter() + 0.2
        count = max(1, int(rate * seconds))
        await asyncio.gather(
            *(one(phones[n % len(phones)], start + n / rate, 10_000_000 + n) for n in range(count))
        )
    return latencies


async def _make_phones(db: Database, site_id: int, prefix: str, agents: int, leads: int) -> list[Phone]:
    now = datetime.now(UTC)
    users = [(f"{prefix}-a{n}", "agent") for n in range(agents)] + [
        (f"{prefix}-l{n}", "lead") for n in range(leads)
    ]
    await db.insert_many(
        "users",
        ["site_id", "username", "display_name", "role", "password_hash", "active", "created_at"],
        [(site_id, name, name, role, "!", True, now) for name, role in users],
    )
    ids = dict(await db.fetch("SELECT username, id FROM users WHERE username LIKE $1", prefix + "-%"))
    tokens = {name: secrets.token_urlsafe(32) for name, _ in users}
    await db.insert_many(
        "auth_tokens",
        ["token_hash", "user_id", "created_at", "expires_at"],
        [(token_hash(SECRET, tokens[name]), ids[name], now, now + timedelta(days=1)) for name, _ in users],
    )
    return [Phone(f"{name}-phone", tokens[name], ids[name], []) for name, _ in users]


def run_drain(
    backend: str,
    devices: int,
    records: int,
    *,
    leads: int,
    workers: int,
    postgres_admin: str | None,
    log=print,
    open_loop_seconds: float = 5.0,
) -> DrainResult:
    with tempfile.TemporaryDirectory(prefix=f"bench-drain-{backend}-") as tmp:
        url = fresh_postgres_database(postgres_admin) if backend == "postgresql" else None
        args = ("--workers", str(workers)) if workers > 1 else ()
        server = ServerProcess(Path(tmp), database_url=url, args=args, OUTAGE_SYNC_WAIT_SECONDS="30")
        try:
            return asyncio.run(
                _drain(server, backend, devices, records, leads, workers, log, open_loop_seconds)
            )
        except Exception:
            if server.log.exists():
                log(f"server log ({backend}), last lines:\n" + server.log.read_text(errors="replace")[-4000:])
            raise
        finally:
            server.stop()
            if url:
                drop_postgres_database(postgres_admin, url)


async def _drain(
    server: ServerProcess,
    backend: str,
    n_devices: int,
    n_records: int,
    leads: int,
    workers: int,
    log,
    open_loop_seconds: float,
) -> DrainResult:
    await asyncio.to_thread(server.add_users, "bench", ("admin",))
    await asyncio.to_thread(server.start)
    db = Database(server.env.get("DATABASE_URL") or f"sqlite:///{server.var_dir / 'outage_desk.db'}")
    site_id = (await db.fetch("SELECT id FROM sites WHERE slug = $1", "bench"))[0][0]
    phones = await _make_phones(db, site_id, "drain", n_devices, leads)
    agents, lead_phones = phones[:n_devices], phones[n_devices:]
    for n, phone in enumerate(agents):
        phone.queue = [promising_record(n * n_records + k, phone.device_id) for k in range(n_records)]
        phone.sent = {r["id"] for r in phone.queue}
    raw_rate = await db.raw_insert_rate(site_id, agents[0].user_id, agents)  # type: ignore[arg-type]

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        for phone in phones:  # before the outage: every phone has synced once and holds a cursor
            await drain(http, server.base, Phone(phone.device_id, phone.token, phone.user_id, []))
            phone.cursor = (await _sync(http, server.base, phone, []))["cursor"]  # type: ignore[index]
        rss = TreeRSS(server.proc.pid)  # type: ignore[union-attr]
        idle = await asyncio.to_thread(rss.now)
        sampler = asyncio.create_task(rss.run())
        load = __import__("os").getloadavg()[0]
        log(f"  {backend} × {workers} process(es): {n_devices} phones × {n_records} records, {leads} leads…")
        cpu = CpuSplit(server.proc.pid)  # type: ignore[union-attr]
        cpu.start()
        started = time.perf_counter()
        uploaded = asyncio.Event()

        async def lead(phone: Phone) -> None:
            # A lead's phone has nothing to upload: it syncs every second, as the app does in the foreground,
            # until the agents are done, then once more to drain what they stored last.
            while not uploaded.is_set():
                await drain(http, server.base, phone)
                await asyncio.sleep(1)
            await drain(http, server.base, phone)

        leading = [asyncio.create_task(lead(p)) for p in lead_phones]
        await asyncio.gather(*(drain(http, server.base, p) for p in agents))
        uploaded.set()
        await asyncio.gather(*leading)
        seconds = time.perf_counter() - started
        cores = cpu.stop()
    sent = {rid for p in agents for rid in p.sent}
    check_exactly_once(sent, await db.stored_ids("drain-"))
    errors = _check_feeds(agents, lead_phones, sent)
    rate = len(sent) / seconds
    result = DrainResult(
        backend, workers, n_devices, leads, n_records, seconds, rate, raw_rate,
        sum(len(p.entries) for p in phones), idle, 0, load=load, errors=errors, cpu=cores,
    )  # fmt: skip
    capacity = rate / BATCH  # batches per second
    for share in (0.5, 0.8):
        log(f"  open loop at {share:.1f}× capacity ({share * capacity:.1f} batches/s)…")
        lat = await open_loop(server.base, agents, share * capacity, open_loop_seconds)
        if share == 0.5:
            result.p99_half = percentile(lat, 99)
        else:
            result.p99_08 = percentile(lat, 99)
    rss._stop = True
    await sampler
    result.peak_rss = rss.peak
    return result


def _check_feeds(agents: list[Phone], leads: list[Phone], everyone: set[str]) -> list[str]:
    """Each agent got exactly its own callbacks' entries, each lead everyone's, in cursor order, no repeats."""
    errors = []
    for phone in agents + leads:
        cursors = [c for c, _, _ in phone.entries]
        if cursors != sorted(cursors) or len(set(cursors)) != len(cursors):
            errors.append(f"{phone.device_id}: feed out of order or repeated")
        created = [ref for _, kind, ref in phone.entries if kind == "callback.created"]
        want = phone.sent if phone in agents else everyone
        if len(created) != len(want) or set(created) != want:
            errors.append(f"{phone.device_id}: {len(created)} callback entries, expected {len(want)}")
    return errors[:5]
