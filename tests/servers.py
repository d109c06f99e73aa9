"""Real processes and databases for tests: a PostgreSQL database per session, the app server as a subprocess."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent


def off_loop(fn, *args):
    """Run fn(*args) in a thread of its own and return its result: asyncio.run() (also inside Alembic's env)
    refuses to start in a thread where an event loop runs, as Playwright's sync API keeps one running."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()


def fresh_postgres_database(admin_url: str) -> str:
    """CREATE DATABASE with a unique name; returns its asyncpg URL."""
    name = f"outage_test_{uuid.uuid4().hex[:10]}"
    _admin(admin_url, f'CREATE DATABASE "{name}"')
    return (
        make_url(admin_url)
        .set(drivername="postgresql+asyncpg", database=name)
        .render_as_string(hide_password=False)
    )


def drop_postgres_database(admin_url: str, url: str) -> None:
    name = make_url(url).database
    _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin(admin_url: str, sql: str) -> None:
    # asyncpg only: run one statement on the maintenance database outside a transaction.
    import asyncio

    import asyncpg

    url = make_url(admin_url)

    async def run() -> None:
        conn = await asyncpg.connect(
            host=url.host or "127.0.0.1",
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            database=url.database or "postgres",
        )
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    off_loop(asyncio.run, run())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`python -m backend serve` on loopback with its own var/ dir; can be stopped, killed and restarted."""

    PASSWORD = "live-pass-123"

    def __init__(
        self,
        var_dir: Path,
        database_url: str | None = None,
        port: int | None = None,
        args: tuple[str, ...] = (),
        **env: str,
    ):
        self.var_dir = Path(var_dir)
        self.port = port or free_port()
        scheme = (
            "https" if env.get("OUTAGE_TLS_CERT") else "http"
        )  # direct TLS (a self-signed test certificate)
        self.base = f"{scheme}://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "OUTAGE_VAR_DIR": str(self.var_dir),
            "OUTAGE_SECRET_KEY": "live-secret",
            "OUTAGE_PUBLIC_BASE_URL": self.base,
            **env,
        }
        if database_url:
            self.env["DATABASE_URL"] = database_url
        self.args = args  # more `serve` options, e.g. ("--workers", "2")
        self.proc: subprocess.Popen | None = None
        self.log = self.var_dir / "server.log"

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "backend", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"backend {' '.join(args)} failed: {result.stderr[-2000:]}")
        return result.stdout

    def add_users(self, site: str, roles=("agent", "lead", "manager", "admin")) -> dict[str, str]:
        """Users named SITE-ROLE with password PASSWORD; returns role -> username."""
        names = {}
        for role in roles:
            names[role] = f"{site}-{role}"
            self.cli(
                "users",
                "add",
                names[role],
                "--role",
                role,
                "--site",
                site,
                "--password",
                self.PASSWORD,
                "--display-name",
                f"{role} {site}",
            )
        return names

    def start(self, timeout: float = 60) -> None:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "backend",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                *self.args,
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.base}/api/health", timeout=1, verify=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def kill(self) -> None:
        """kill -9: no graceful shutdown, as in a power cut."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def login(self, username: str, password: str | None = None) -> str:
        response = httpx.post(
            f"{self.base}/api/auth/login",
            json={"username": username, "password": password or self.PASSWORD},
            timeout=10,
            verify=False,
        )
        response.raise_for_status()
        return response.json()["token"]


def service_worker_registration(page, timeout: float = 10) -> tuple[object, str]:
    """(CDP session, registration id) of the page's service worker, for deliverPushMessage /
    dispatchSyncEvent. The listener goes on before ServiceWorker.enable, or the event is missed."""
    cdp = page.context.new_cdp_session(page)
    registrations: list[dict] = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated", lambda event: registrations.extend(event["registrations"])
    )
    cdp.send("ServiceWorker.enable")
    deadline = time.monotonic() + timeout
    while not any(not r.get("isDeleted") for r in registrations) and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    registration = next(r for r in registrations if not r.get("isDeleted"))
    return cdp, registration["registrationId"]
