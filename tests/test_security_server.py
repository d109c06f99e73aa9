"""A real server against a slow client and a failing disk (security issue, items 9 and 11): stalled uploads
cannot hold every sync turn, and a SQLite file that was read-only when the server started is written again
once the disk is writable, without a restart."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid

import httpx

from bench.devices import call_record

from .servers import ServerProcess


def _stalled_upload(port: int, token: str) -> socket.socket:
    """Headers of a big sync, then a trickle of its body that never ends."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        (
            f"POST /api/sync HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 500000\r\n\r\n"
        ).encode()
        + b'{"device_id":'
    )
    return sock


def _sync(server: ServerProcess, token: str, timeout: float = 20) -> httpx.Response:
    return httpx.post(
        f"{server.base}/api/sync",
        json={"device_id": f"d-{uuid.uuid4().hex[:6]}", "records": [call_record(1, "d")]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=timeout,
    )


def test_stalled_uploads_from_one_agent_do_not_block_other_sites(tmp_path):
    server = ServerProcess(
        tmp_path,
        OUTAGE_SYNC_CONCURRENCY="8",
        OUTAGE_SYNC_WAIT_SECONDS="2",
        OUTAGE_SYNC_BODY_SECONDS="2",
        OUTAGE_RUN_WORKERS="0",
    )
    slow = server.add_users("slow", roles=("agent",))["agent"]
    other = server.add_users("fast", roles=("agent",))["agent"]
    server.start()
    sockets: list[socket.socket] = []
    try:
        slow_token, other_token = server.login(slow), server.login(other)
        sockets = [_stalled_upload(server.port, slow_token) for _ in range(8)]
        time.sleep(0.5)  # every stalled upload has asked for its turn
        started = time.monotonic()
        answer = _sync(server, other_token)
        assert answer.status_code == 200, answer.text  # another site's agent is served
        assert answer.json()["results"][0]["status"] == "created"
        assert time.monotonic() - started < 10
        # the stalled ones get a clear answer (408 or 503 problem) instead of holding a turn for ever
        for sock in sockets:
            sock.settimeout(10)
            head = sock.recv(200).decode(errors="replace")
            assert head.startswith(("HTTP/1.1 408", "HTTP/1.1 503")), head
        # and the slow agent's own next, normal upload goes through
        assert _sync(server, slow_token).status_code == 200
    finally:
        for sock in sockets:
            sock.close()
        server.stop()


def test_sqlite_read_only_at_start_is_written_once_the_disk_is_writable(tmp_path):
    server = ServerProcess(tmp_path, OUTAGE_RUN_WORKERS="0")
    agent = server.add_users("ro", roles=("agent",))["agent"]
    server.start()
    token = server.login(agent)
    server.stop()
    database = tmp_path / "outage_desk.db"
    # Immutable: read-only even for root (chmod would not stop root), as a remounted or failing disk is.
    subprocess.run(["chattr", "+i", str(database)], check=True)
    try:
        server.start()
        refused = _sync(server, token)
        assert refused.status_code == 503 and refused.headers["content-type"] == "application/problem+json"
    finally:
        subprocess.run(["chattr", "-i", str(database)], check=True)
    try:
        answers = [_sync(server, token) for _ in range(3)]  # whichever pooled connection each one gets
        assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
        assert all(a.json()["results"][0]["status"] == "created" for a in answers)
    finally:
        server.stop()
