"""App updates: a changed frontend file makes a new cache version and an "update available" prompt; the page
only reloads when the user taps it, after unsent work is flushed, and saved content survives the update
even when it happens offline.

The server is started on a copy of frontend/ and service_worker/ (OUTAGE_FRONTEND_DIR /
OUTAGE_SERVICE_WORKER_DIR), so the test can change a shipped file without touching the repository."""

from __future__ import annotations

import shutil

import httpx
import pytest
from playwright.sync_api import expect

from .servers import ROOT, ServerProcess
from .test_browser_playbooks import (
    api_cache_name,
    cached_api_paths,
    go,
    log_in,
    wait_until_content_saved,
    wait_until_controlled,
)

pytestmark = pytest.mark.browser


@pytest.fixture
def copied_server(tmp_path):
    shipped = tmp_path / "shipped"
    shutil.copytree(ROOT / "frontend", shipped / "frontend")
    shutil.copytree(ROOT / "service_worker", shipped / "service_worker")
    server = ServerProcess(
        tmp_path / "var",
        OUTAGE_FRONTEND_DIR=str(shipped / "frontend"),
        OUTAGE_SERVICE_WORKER_DIR=str(shipped / "service_worker"),
    )
    server.add_users("upd", roles=("agent",))
    server.start()
    server.shipped = shipped
    yield server
    server.stop()


def build_version(server) -> str:
    return httpx.get(server.base + "/api/health", timeout=10).json()["version"]


def cache_names(page) -> list[str]:
    return page.evaluate("caches.keys()")


def test_changed_file_new_version_prompt_and_safe_reload(copied_server, new_context, artifacts):
    server = copied_server
    context = new_context(locale="zh-CN")
    page = context.new_page()
    log_in(page, server.base, "upd-agent", server.PASSWORD)
    wait_until_controlled(page)
    wait_until_content_saved(
        page, {"/api/playbooks", "/api/forms", "/api/playbooks/system-failure", "/api/forms/call-record"}
    )
    old = build_version(server)
    assert f"od-shell-{old}" in cache_names(page)
    assert page.evaluate("import('/static/pwa.js').then((m) => m.appVersion())") == old
    expect(page.locator("#update")).to_have_count(0)

    # A shipped file changes: the server's version follows, no manual bump.
    css = server.shipped / "frontend" / "css" / "playbooks.css"
    css.write_text(css.read_text(encoding="utf-8") + "\n/* a changed rule */\n", encoding="utf-8")
    new = build_version(server)
    assert new != old

    page.evaluate("window.sameDocument = true")
    page.evaluate("navigator.serviceWorker.getRegistration().then((r) => r.update())")
    banner = page.locator("#update")
    expect(banner).to_be_visible(timeout=30000)
    expect(banner).to_contain_text("应用有新版本")
    # The new build is installed in its own cache beside the running one; nothing reloaded by itself.
    assert {f"od-shell-{old}", f"od-shell-{new}", api_cache_name(page)} <= set(cache_names(page))
    assert page.evaluate("window.sameDocument") is True
    page.screenshot(path=artifacts / "update-prompt-zh.png")

    # The outbox may refuse (e.g. it could not save a draft): then nothing happens.
    page.evaluate("window.odBeforeReload = async () => false")
    page.click("#update button.primary")
    page.wait_for_timeout(1000)
    assert page.evaluate("window.sameDocument") is True
    expect(banner).to_be_visible()

    # Offline, with the flush hook agreeing: the tap reloads into the new build, content still there.
    context.set_offline(True)
    page.evaluate(
        "window.odBeforeReload = async () => { localStorage.setItem('flushed', 'yes'); return true; }"
    )
    with page.expect_navigation():
        page.click("#update button.primary")
    page.wait_for_function("navigator.serviceWorker.controller !== null")
    assert page.evaluate("localStorage.getItem('flushed')") == "yes"
    assert page.evaluate("window.sameDocument") is None
    assert page.evaluate("import('/static/pwa.js').then((m) => m.appVersion())") == new
    names = set(cache_names(page))
    assert f"od-shell-{new}" in names and f"od-shell-{old}" not in names and api_cache_name(page) in names
    assert "/api/playbooks/system-failure" in cached_api_paths(page)
    expect(page.locator("#update")).to_have_count(0)
    go(page, "#/playbooks/system-failure")
    expect(page.locator("h1")).to_have_text("应用程序/网络/系统故障")
    go(page, "#/forms/call-record")
    expect(page.locator("h1")).to_have_text("手工记录表")


def test_later_hides_the_prompt_without_reloading(copied_server, new_context):
    server = copied_server
    page = new_context(locale="en-US").new_page()
    log_in(page, server.base, "upd-agent", server.PASSWORD)
    wait_until_controlled(page)
    index = server.shipped / "frontend" / "ui.js"
    index.write_text(index.read_text(encoding="utf-8") + "\n// changed\n", encoding="utf-8")
    page.evaluate("window.sameDocument = true")
    # Coming back online is one of the moments the page asks for a new version.
    page.evaluate("import('/static/events.js').then((e) => e.emit('online'))")
    expect(page.locator("#update")).to_contain_text("A new version of the app is ready.", timeout=30000)
    page.click("#update >> text=Later")
    expect(page.locator("#update")).to_have_count(0)
    assert page.evaluate("window.sameDocument") is True
