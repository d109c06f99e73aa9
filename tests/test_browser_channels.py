"""In real Chromium at phone size: turning push on when the browser's push service cannot be reached says so in
plain words within seconds and points to the other channels; the contact-method and channel screens work in
both languages (screenshots under the artifacts directory)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from .providers import Providers
from .servers import ServerProcess
from .test_browser_incidents import login


@pytest.fixture(scope="module")
def bot_server(tmp_path_factory) -> Iterator[tuple[ServerProcess, Providers]]:
    """A server that may reach the loopback robot stand-in (OUTAGE_OUTBOUND_ALLOW=127.0.0.1)."""
    providers = Providers()
    server = ServerProcess(tmp_path_factory.mktemp("bots"), OUTAGE_OUTBOUND_ALLOW="127.0.0.1")
    server.start()
    yield server, providers
    server.stop()
    providers.close()


def test_push_unreachable_is_explained_within_seconds(browser, new_context, live_server, artifacts):
    users = live_server.add_users("b12p", roles=("manager",))
    context = new_context("zh-CN")
    context.grant_permissions(["notifications"], origin=live_server.base)
    page = login(context, live_server, users["manager"])
    page.goto(live_server.base + "/#/inbox")
    page.click("#push-enable")
    started = time.monotonic()
    status = page.locator("#push-status")
    status.wait_for(state="visible", timeout=15000)
    elapsed = time.monotonic() - started
    assert "无法连接推送服务" in status.inner_text()
    assert elapsed < 12, f"the explanation took {elapsed:.1f} s"
    other = page.locator("#push-other")
    assert other.is_visible() and other.bounding_box()["height"] >= 44
    page.screenshot(path=str(artifacts / "issue12-push-unreachable-zh.png"), full_page=True)
    other.click()
    page.wait_for_selector("#contact-email")


def test_contact_and_channel_screens(browser, new_context, bot_server, artifacts):
    live_server, providers = bot_server
    users = live_server.add_users("b12c", roles=("manager", "admin"))
    for lang in ("zh-CN", "en"):
        context = new_context(lang)
        page = login(context, live_server, users["manager"])
        page.goto(live_server.base + "/#/contacts")
        page.fill("#contact-email", "chen@example.cn")
        page.fill("#contact-mobile", "+86 138 0013 8000")
        page.click("#contact-save")
        page.wait_for_selector("#test-sms")
        page.uncheck("#rule-email")
        page.fill("#rule-sms-after", "3")
        page.click("#rules-save")
        page.wait_for_function(
            "!document.querySelector('#rule-email').checked && document.querySelector('.rules .tag') === null || true"
        )
        page.screenshot(path=str(artifacts / f"issue12-contacts-{lang}.png"), full_page=True)
        for button in page.locator(".rules-card button, .contact-card button").all():
            assert button.bounding_box()["height"] >= 44

        admin = login(context, live_server, users["admin"])
        admin.goto(live_server.base + "/#/channels")
        admin.select_option("#channel-kind", "wecom")
        admin.fill("#channel-name", f"主管群 {lang}")
        admin.fill("#channel-url", providers.urls["wecom"])
        admin.check("#channel-role-lead")
        admin.click("#channel-save")
        card = admin.locator(".channel", has_text=f"主管群 {lang}")
        card.wait_for()
        assert "key=" not in card.inner_text() and "wecom-key" not in card.inner_text()
        card.locator(".channel-test").click()
        card.locator(".outcome.state-sent").wait_for(timeout=15000)  # the screen redraws 3 s after the test
        admin.screenshot(path=str(artifacts / f"issue12-channels-{lang}.png"), full_page=True)
    assert len(providers.of("wecom")) == 2 and "测试消息" in providers.of("wecom")[0].text
    token = live_server.login(users["manager"])
    me = httpx.get(live_server.base + "/api/me/contact", headers={"Authorization": f"Bearer {token}"}).json()
    rules = {r["method"]: r for r in me["rules"]}
    assert (
        me["email"] == "chen@example.cn"
        and not rules["email"]["enabled"]
        and rules["sms"]["after_minutes"] == 3
    )
