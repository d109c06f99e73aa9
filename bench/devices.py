"""Simulated phones for the benchmarks and the fault tests: each has a queue of call records and uploads
it the way the PWA does (batches of at most 100, a record leaves the queue only once the server answered
created/duplicate/updated, connection errors and 503s are retried with backoff).

A real server process (`tests.servers.ServerProcess`) is the target; everything stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx

BATCH = 100  # what frontend/sync.js sends per request
STORED = ("created", "duplicate", "updated")


def call_record(n: int, device: str) -> dict[str, Any]:
    """A valid call-record (form version 1) as a device makes it."""
    return {
        "id": str(uuid.uuid4()),
        "form": "call-record",
        "form_version": 1,
        "rev": 1,
        "captured_at": datetime.now(UTC).isoformat(),
        "data": {
            "called_at": "2026-11-23T10:00:00+08:00",
            "caller_name": f"客户{n}",
            "phone": f"1380000{n % 10000:04d}",
            "category": "fault_report",
            "urgency": "normal",
            "details": f"{device} 断电期间来电 {n}：查询订单，承诺回电",
            "callback_promised": False,
        },
    }


@dataclass
class Device:
    device_id: str
    token: str
    queue: list[dict[str, Any]]
    acknowledged: dict[str, str] = field(default_factory=dict)  # id -> receipt
    latencies: list[float] = field(default_factory=list)  # seconds per successful batch
    retries: int = 0
    statuses: list[int] = field(default_factory=list)  # every non-200 answer seen


async def upload(
    http: aiohttp.ClientSession, base: str, device: Device, *, deadline: float, batch: int = BATCH
) -> None:
    """Send the queue until it is empty or the deadline passes (then the rest simply stays queued)."""
    attempt = 0
    while device.queue and time.monotonic() < deadline:
        chunk = device.queue[:batch]
        started = time.perf_counter()
        try:
            async with http.post(
                f"{base}/api/sync",
                json={"device_id": device.device_id, "records": chunk},
                headers={"Authorization": f"Bearer {device.token}"},
            ) as response:
                status = response.status
                body = await response.json(content_type=None) if status == 200 else await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError):
            status, body = None, None
        if status == 200:
            device.latencies.append(time.perf_counter() - started)
            results = body["results"]
            done = {r["id"]: r.get("receipt") for r in results if r["status"] in STORED}
            bad = [r for r in results if r["status"] not in STORED]
            if bad:
                raise AssertionError(f"{device.device_id}: unexpected outcomes {bad[:3]}")
            device.acknowledged.update(done)
            device.queue = [r for r in device.queue if r["id"] not in done]
            attempt = 0
            continue
        if status is not None:
            device.statuses.append(status)
            if status not in (502, 503, 504, 429):
                raise AssertionError(f"{device.device_id}: HTTP {status}: {body!r:.300}")
        # Not acknowledged: keep it queued and retry later, with jitter so phones don't retry in lockstep.
        device.retries += 1
        attempt += 1
        await asyncio.sleep(min(0.2 * 2 ** min(attempt, 5), 3) * random.uniform(0.5, 1.0))


async def upload_all(
    base: str,
    devices: list[Device],
    *,
    timeout: float = 600,
    batch: int = BATCH,
    connections: int | None = None,
) -> float:
    """Every device uploads at once; returns the wall time in seconds."""
    connector = aiohttp.TCPConnector(limit=connections or len(devices), force_close=False)
    deadline = time.monotonic() + timeout
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as http:
        await asyncio.gather(*(upload(http, base, d, deadline=deadline, batch=batch) for d in devices))
    return time.perf_counter() - started


def make_agents(base: str, admin_token: str, prefix: str, count: int, password: str) -> list[str]:
    """Agent users made through the API (admin), logged in; returns their tokens."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    tokens = []
    with httpx.Client(base_url=base, timeout=60) as client:
        for n in range(count):
            username = f"{prefix}-a{n}"
            response = client.post(
                "/api/users",
                headers=headers,
                json={
                    "username": username,
                    "password": password,
                    "role": "agent",
                    "display_name": f"坐席 {n}",
                },
            )
            assert response.status_code in (200, 201), response.text
            login = client.post("/api/auth/login", json={"username": username, "password": password})
            login.raise_for_status()
            tokens.append(login.json()["token"])
    return tokens


def make_devices(tokens: list[str], prefix: str, devices: int, records: int) -> list[Device]:
    return [
        Device(
            f"{prefix}-d{d}",
            tokens[d % len(tokens)],
            [call_record(d * records + n, f"{prefix}-d{d}") for n in range(records)],
        )
        for d in range(devices)
    ]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]
