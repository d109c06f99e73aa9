"""Escalation lateness: drill incidents on a real server process (workers on, SQLite); for every rung,
fired_at − due_at as the server recorded it. Baseline: the worker's idle poll interval, the lateness the
design allows for by itself (an idle worker looks for due rungs once per interval)."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx

from backend.workers import POLL_SECONDS
from tests.servers import ServerProcess

from .devices import percentile

PLAYBOOK = "fire-theft"  # four rungs: 30, 60, 90 and 120 minutes
RUNGS = 4


@dataclass
class LatenessResult:
    steps: int
    p50: float
    p99: float
    worst: float
    poll: float


def run_lateness(steps: int = 200, time_scale: int = 600) -> LatenessResult:
    incidents = -(-steps // RUNGS)
    with tempfile.TemporaryDirectory(prefix="bench-esc-") as tmp:
        server = ServerProcess(Path(tmp))
        users = server.add_users("drill", ("lead", "manager"))
        server.start()
        try:
            headers = {"Authorization": f"Bearer {server.login(users['lead'])}"}
            with httpx.Client(base_url=server.base, headers=headers, timeout=30) as client:
                ids = []
                for _ in range(incidents):  # spread over a few seconds, as real declarations would be
                    response = client.post(
                        "/api/incidents", json={"playbook": PLAYBOOK, "drill": {"time_scale": time_scale}}
                    )
                    assert response.status_code in (200, 201), response.text
                    ids.append(response.json()["id"])
                    time.sleep(0.03)
                ladder_span = 120 * 60 / time_scale
                deadline = time.monotonic() + ladder_span + 60
                late: list[float] = []
                for incident_id in ids:
                    while True:
                        ladder = client.get(f"/api/incidents/{incident_id}").json()["ladder"]
                        if all(r["status"] == "fired" for r in ladder):
                            break
                        assert time.monotonic() < deadline, (
                            f"incident {incident_id}: rungs never fired {ladder}"
                        )
                        time.sleep(0.5)
                    late += [
                        (
                            datetime.fromisoformat(r["fired_at"]) - datetime.fromisoformat(r["due_at"])
                        ).total_seconds()
                        for r in ladder
                    ]
        finally:
            server.stop()
    late = late[:steps]
    return LatenessResult(len(late), percentile(late, 50), percentile(late, 99), max(late), POLL_SECONDS)
