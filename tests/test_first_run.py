"""The first run on a fresh clone, as a new user meets it: the tracked files copied to an empty folder (no
var/, no database, no keys), `python -m backend serve` prints a one-time setup link, the empty install's
login page says what to do, the link's page creates the first admin and site, and that admin logs in. Then
`demo` (prints the address really served; a second run keeps the passwords) and every `users` command of the
CLI, with the password rules of the app and each change in the audit log."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import httpx
import pytest
from playwright.sync_api import expect

from .servers import ROOT, free_port

pytestmark = pytest.mark.browser


class Clone:
    def __init__(self, folder):
        self.root = folder
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        # Nothing from the test run's settings: the clone uses its own var/ as a new user's would.
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith("OUTAGE_") and k != "DATABASE_URL"
        }
        self.log = folder / "serve.log"
        self.proc: subprocess.Popen | None = None

    def cli(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "backend", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if ok:
            assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
        return result

    def serve(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend", "serve", "--port", str(self.port), "--log-level", "warning"],
            cwd=self.root,
            env=self.env,
            stdout=open(self.log, "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(self.base + "/api/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(self.log.read_text())

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)

    def login(self, username: str, password: str) -> httpx.Response:
        return httpx.post(
            self.base + "/api/auth/login", json={"username": username, "password": password}, timeout=10
        )


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clone")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in tracked.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name)
    assert not (folder / "var").exists()
    clone = Clone(folder)
    clone.serve()
    yield clone
    clone.stop()


def test_fresh_clone_setup_link_first_admin_and_login(clone, new_context, artifacts):
    output = clone.log.read_text()
    assert f"Outage Desk on {clone.base}" in output
    links = re.findall(r"http://\S+/#/setup/[0-9a-f]{32}", output)
    assert len(links) == 1 and links[0].startswith(clone.base), output

    page = new_context(locale="zh-CN").new_page()
    page.goto(clone.base + "/#/login")
    expect(page.locator(".first-run")).to_be_visible()
    expect(page.locator(".first-run")).to_contain_text("设置链接")
    page.screenshot(path=str(artifacts / "first-run-login.png"))

    page.goto(links[0])
    expect(page.locator("h1")).to_have_text("设置应急工作台")

    def fill(password: str) -> None:
        page.fill("input[name=site_name]", "北京呼叫中心")
        page.fill("input[name=site_slug]", "bj-01")
        page.fill("input[name=username]", "wang.admin")
        page.fill("input[name=display_name]", "王经理")
        page.fill("input[name=password]", password)
        page.fill("input[name=password_again]", password)

    fill("wang.admin")  # the username as password: refused by the same rule as everywhere
    page.get_by_role("button", name="创建并登录").click()
    expect(page.locator(".error")).to_contain_text("用户名")
    page.reload()
    expect(page.locator("h1")).to_have_text("设置应急工作台")
    fill("first-admin-pass")
    page.screenshot(path=str(artifacts / "first-run-setup.png"))
    with page.expect_response(
        lambda r: r.url.endswith("/api/setup") and r.request.method == "POST"
    ) as answer:
        page.get_by_role("button", name="创建并登录").click()
    assert answer.value.status == 201, answer.value.text()
    page.wait_for_url("**/#/admin", timeout=30000)
    expect(page.locator("h1")).to_have_text("管理")

    # The link is spent; the login page of an install with an admin shows no first-run note.
    status = httpx.get(clone.base + "/api/setup", timeout=10).json()
    assert status == {"needed": False, "users": True}
    page.goto(links[0])
    expect(page.locator("h1")).to_have_text("已经设置过了")
    login = clone.login("wang.admin", "first-admin-pass")
    assert login.status_code == 200 and login.json()["user"]["site"] == "bj-01"
    fresh = new_context(locale="en").new_page()
    fresh.goto(clone.base + "/#/login")
    fresh.fill("input[name=username]", "wang.admin")
    fresh.fill("input[name=password]", "first-admin-pass")
    fresh.click("button[type=submit]")
    fresh.wait_for_url("**/#/")
    expect(fresh.locator(".first-run")).to_have_count(0)

    # Restarted with an admin: no setup link any more.
    clone.stop()
    clone.serve()
    assert len(re.findall(r"/#/setup/", clone.log.read_text())) == 0


def test_demo_prints_the_served_address_and_keeps_passwords(clone):
    first = clone.cli("demo").stdout
    assert f"log in at {clone.base} with" in first  # what `serve --port` really answers on, not 8000
    passwords = dict(re.findall(r"^\s+agent\s+(demo-agent)\s+(\S+)$", first, re.M))
    assert clone.login("demo-agent", passwords["demo-agent"]).status_code == 200
    second = clone.cli("demo").stdout
    assert "unchanged" in second and passwords["demo-agent"] not in second
    assert clone.login("demo-agent", passwords["demo-agent"]).status_code == 200  # still works
    third = clone.cli("demo", "--reset-passwords", "--password", "demo-pass-123").stdout
    assert "demo-pass-123" in third
    assert clone.login("demo-agent", passwords["demo-agent"]).status_code == 401
    assert clone.login("demo-agent", "demo-pass-123").status_code == 200


def test_every_users_command(clone):
    short = clone.cli(
        "users", "add", "li", "--role", "agent", "--site", "bj-01", "--password", "12345", ok=False
    )
    assert short.returncode == 2 and "8 characters" in short.stderr
    same = clone.cli("users", "add", "li", "--role", "agent", "--site", "bj-01", "--password", "li", ok=False)
    assert same.returncode == 2
    added = clone.cli(
        "users", "add", "li", "--role", "agent", "--site", "bj-01", "--password", "li-pass-123"
    ).stdout
    assert "created a new site" not in added and "added agent li at site bj-01" in added
    typo = clone.cli(
        "users", "add", "zhao", "--role", "agent", "--site", "bj-1", "--password", "zhao-pass-1"
    ).stdout
    assert "created a new site 'bj-1'" in typo  # a mistyped --site is said plainly
    bad_role = clone.cli(
        "users", "add", "x", "--role", "boss", "--site", "bj-01", "--password", "x-pass-123", ok=False
    )
    assert bad_role.returncode == 2

    listing = clone.cli("users", "list").stdout
    rows = {line.split()[0]: line.split() for line in listing.splitlines()[1:]}
    assert rows["li"][1:4] == ["bj-01", "agent", "active"] and rows["zhao"][1] == "bj-1"
    only = clone.cli("users", "list", "--site", "bj-1").stdout.split()
    assert "zhao" in only and "li" not in only

    token = clone.login("li", "li-pass-123").json()["token"]
    me = lambda: httpx.get(clone.base + "/api/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)  # noqa: E731
    assert me().status_code == 200
    assert "li is now lead" in clone.cli("users", "set-role", "li", "lead").stdout
    assert me().status_code == 401  # a role change ends the logins
    assert clone.cli("users", "set-role", "li", "boss", ok=False).returncode == 2

    token = clone.login("li", "li-pass-123").json()["token"]
    weak = clone.cli("users", "reset-password", "li", "--password", "short", ok=False)
    assert weak.returncode == 2 and me().status_code == 200
    assert (
        "password of li reset; 1 login(s) ended"
        in clone.cli("users", "reset-password", "li", "--password", "li-pass-456").stdout
    )
    assert me().status_code == 401 and clone.login("li", "li-pass-123").status_code == 401

    token = clone.login("li", "li-pass-456").json()["token"]
    assert "1 login(s) of li ended" in clone.cli("users", "revoke", "li").stdout
    assert me().status_code == 401
    assert "disabled li" in clone.cli("users", "disable", "li").stdout
    assert clone.login("li", "li-pass-456").status_code == 401
    assert "disabled" in clone.cli("users", "list", "--site", "bj-01").stdout
    assert "enabled li" in clone.cli("users", "enable", "li").stdout
    assert clone.login("li", "li-pass-456").status_code == 200
    assert clone.cli("users", "disable", "nobody", ok=False).returncode == 2

    # Every change above is in the site's audit log, as made from the command line, without passwords.
    admin = clone.login("wang.admin", "first-admin-pass").json()["token"]
    log = httpx.get(
        clone.base + "/api/audit?limit=100", headers={"Authorization": f"Bearer {admin}"}, timeout=10
    ).json()
    mine = [e["action"] for e in log["entries"] if e["target"] == "user:li" and e["actor"] == "cli"]
    assert mine == ["user.enable", "user.disable", "user.revoke", "user.password", "user.role", "user.create"]
    assert "li-pass" not in str(log)
