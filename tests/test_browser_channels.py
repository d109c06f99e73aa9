"""In real Chromium at phone size: turning push on when the browser's push service cannot be reached says so in
plain words within seconds and points to the other channels; the contact-method and channel screens work in
both languages (screenshots under the artifacts directory)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from .providers import Mailbox, Providers
from .servers import ServerProcess
from .test_browser_a11y import ZOOM_200, _axe_available, machine_text, overflow, run_axe, visible_text
from .test_browser_incidents import login


@pytest.fixture(scope="module")
def bot_server(tmp_path_factory) -> Iterator[tuple[ServerProcess, Providers]]:
    """A server that may reach the loopback robot stand-in (OUTAGE_OUTBOUND_ALLOW=127.0.0.1)."""
    providers, mailbox = Providers(), Mailbox()
    server = ServerProcess(
        tmp_path_factory.mktemp("bots"), OUTAGE_OUTBOUND_ALLOW="127.0.0.1", OUTAGE_SMTP_URL=mailbox.url
    )
    server.start()
    server.mailbox = mailbox  # type: ignore[attr-defined]
    yield server, providers
    server.stop()
    providers.close()
    mailbox.close()


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
        page.locator(".toast").first.wait_for()
        page.reload()  # what the server kept, drawn afresh
        page.wait_for_selector("#rules-save")
        assert page.locator(".rules .tag").count() == 0  # the user's own rules now, no "role default"
        assert not page.is_checked("#rule-email") and page.input_value("#rule-sms-after") == "3"
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


def test_the_acknowledge_page_from_an_email_link(browser, new_context, bot_server, artifacts):
    server, _providers = bot_server
    users = server.add_users("b12a", roles=("lead", "manager"))
    token = server.login(users["manager"])
    auth = {"Authorization": f"Bearer {token}"}
    httpx.put(
        server.base + "/api/me/contact", json={"email": "ack@example.cn"}, headers=auth
    ).raise_for_status()
    lead = {"Authorization": f"Bearer {server.login(users['lead'])}"}
    incident = httpx.post(
        server.base + "/api/incidents",
        json={"playbook": "system-failure", "drill": {"time_scale": 600}},
        headers=lead,
    ).json()
    deadline = time.monotonic() + 30
    mails: list = []
    while time.monotonic() < deadline and not mails:  # the first rung, 5 minutes / 600, then the email
        mails = [m for to, m in server.mailbox.messages if to == ["ack@example.cn"]]  # type: ignore[attr-defined]
        time.sleep(0.5)
    assert mails, "no escalation email arrived"
    link = next(line for line in mails[0].get_content().splitlines() if "/ack/" in line)
    context = new_context("zh-CN", bypass_csp=False)  # the page works under the app's CSP
    page = context.new_page()
    page.goto(link)
    button = page.locator("#ack")
    assert button.is_visible() and button.bounding_box()["height"] >= 44
    assert httpx.get(f"{server.base}/api/incidents/{incident['id']}", headers=lead).json()["status"] == "open"
    page.screenshot(path=str(artifacts / "issue12-ack-page.png"), full_page=True)
    _axe_available()
    check = new_context("zh-CN").new_page()  # a GET changes nothing; this context lets axe in past the CSP
    check.goto(link)
    assert_swept(check)
    button.click()
    page.wait_for_selector("text=已确认")
    check.goto(link)  # the used link's page
    assert_swept(check)
    detail = httpx.get(f"{server.base}/api/incidents/{incident['id']}", headers=lead).json()
    assert detail["status"] == "acknowledged"
    page.screenshot(path=str(artifacts / "issue12-ack-done.png"), full_page=True)


def assert_swept(page) -> None:
    """The sweep's checks (tests/test_browser_a11y.py) on a page outside the app's router: the ack page."""
    problems = [f"axe {v['id']}: {v['nodes']}" for v in run_axe(page)]
    problems += [
        f"not from the language files: {w!r}" for w in machine_text(visible_text(page), "zh-CN", set())
    ]
    size = page.viewport_size
    page.set_viewport_size(ZOOM_200)
    problems += [f"scrolls sideways at 200 % zoom: {wide}" for wide in [overflow(page)] if wide]
    page.set_viewport_size(size)
    assert not problems, "\n".join(problems)
