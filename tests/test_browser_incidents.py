"""Incidents in real Chromium against a real server (its own SQLite, escalation and push workers running):
a push delivered to the real service worker is shown as a notification, and a drill goes from declare to
acknowledge through the screens, with the manager's inbox in between. Offline, the last state stays visible."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from playwright.sync_api import expect

from .push_receiver import PushReceiver
from .servers import ServerProcess, service_worker_registration

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("incidents-live"), OUTAGE_OUTBOUND_ALLOW="127.0.0.1")
    server.add_users("drill")
    server.start()
    yield server
    server.stop()


def login(context, server, username):
    page = context.new_page()
    page.goto(server.base + "/#/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", server.PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/#/")
    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=20000)
    return page


def api(server, token, method, path, body=None):
    response = httpx.request(
        method, server.base + path, json=body, timeout=10, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def test_push_reaches_the_real_service_worker_and_is_shown(server, new_context, artifacts):
    receiver = PushReceiver()
    try:
        manager_token, lead_token = server.login("drill-manager"), server.login("drill-lead")
        subscription = receiver.subscription()
        api(server, manager_token, "POST", "/api/push/subscriptions", subscription)

        context = new_context(locale="zh-CN")
        context.grant_permissions(["notifications"], origin=server.base)
        page = login(context, server, "drill-manager")
        cdp, registration_id = service_worker_registration(page)

        # The server encrypts for the subscription; the loopback push service decrypts it, exactly as a
        # browser's push service would hand it to the phone; then the real service worker gets it.
        incident = api(
            server,
            lead_token,
            "POST",
            "/api/incidents",
            {"playbook": "system-failure", "note": "CRM 全部登录不上", "drill": {"time_scale": 600}},
        )
        pushes = receiver.wait_for(2, timeout=20, endpoint=subscription["endpoint"])
        escalation = next(p.payload for p in pushes if p.payload["kind"] == "escalation")
        assert escalation["incident_id"] == incident["id"] and escalation["drill"] is True
        cdp.send(
            "ServiceWorker.deliverPushMessage",
            {
                "origin": server.base,
                "registrationId": registration_id,
                "data": json.dumps(escalation, ensure_ascii=False),
            },
        )
        titles = []
        for _ in range(50):
            titles = page.evaluate(
                "navigator.serviceWorker.ready.then(r => r.getNotifications())"
                ".then(ns => ns.map(n => n.title + ' | ' + n.body))"
            )
            if titles:
                break
            page.wait_for_timeout(100)
        assert titles == [f"{escalation['title']['zh-CN']} | {escalation['body']['zh-CN']}"]
        assert titles[0].startswith("【演练】升级：")
        data = page.evaluate(
            "navigator.serviceWorker.ready.then(r => r.getNotifications()).then(ns => ns[0].data)"
        )
        assert data["url"] == f"/#/incidents/{incident['id']}"

        # The service worker reported receipt: the timeline says this phone got it.
        for _ in range(50):
            events = api(server, lead_token, "GET", f"/api/incidents/{incident['id']}/timeline")["events"]
            delivered = [e for e in events if e["kind"] == "notification_delivered"]
            if delivered:
                break
            time.sleep(0.1)
        assert delivered and delivered[0]["data"]["user"] == "manager drill"
        # The page heard about the push too: the inbox badge counts the unread notifications.
        expect(page.locator('#tabs a[href="#/inbox"] .inbox-badge')).to_be_visible()
        page.goto(server.base + "/#/inbox")
        expect(page.locator(".inbox-item").first).to_contain_text("【演练】")
        page.screenshot(path=artifacts / "incidents-inbox-push.png")
        api(server, lead_token, "POST", f"/api/incidents/{incident['id']}/resolve")
        httpx.delete(
            server.base + "/api/push/subscriptions",
            params={"endpoint": subscription["endpoint"]},
            headers={"Authorization": f"Bearer {manager_token}"},
            timeout=10,
        ).raise_for_status()
    finally:
        receiver.close()


def test_drill_from_declare_to_ack_through_the_screens(server, new_context, artifacts):
    lead = login(new_context(locale="zh-CN"), server, "drill-lead")
    lead.click("a.action[href='#/incidents']")
    expect(lead.locator("h1")).to_have_text("应急事件")
    lead.select_option("select[name=playbook]", "system-failure")
    lead.fill("textarea[name=note]", "09:05 起全部坐席无法登录 CRM")
    lead.check("input[name=drill]")
    lead.select_option("select[name=time_scale]", "300")
    expect(lead.locator(".declare-form button[type=submit]")).to_have_text("开始演练")
    lead.screenshot(path=artifacts / "incidents-declare.png", full_page=True)
    lead.click(".declare-form button[type=submit]")
    lead.wait_for_url("**/#/incidents/*")
    incident_id = int(lead.url.rsplit("/", 1)[-1])
    expect(lead.locator(".drill-banner")).to_contain_text("演练（300 倍速）")
    expect(lead.locator(".status")).to_have_text("处理中")
    # 5 and 10 minutes at 300x are 1 and 2 seconds (60 minutes: 12 s): the live view shows them fire.
    expect(lead.locator(".rung-fired")).to_have_count(2, timeout=15000)
    lead.screenshot(path=artifacts / "incidents-drill-lead.png", full_page=True)

    manager_context = new_context(locale="zh-CN")
    manager = login(manager_context, server, "drill-manager")
    expect(manager.locator('#tabs a[href="#/inbox"] .inbox-badge')).to_be_visible(timeout=15000)
    manager.click('#tabs a[href="#/inbox"]')
    escalations = manager.locator(".inbox-item.urgency-high", has_text="升级")
    expect(escalations.first).to_contain_text("【演练】")
    expect(manager.locator(".inbox-item .tag.drill").first).to_have_text("演练")
    manager.screenshot(path=artifacts / "incidents-inbox.png", full_page=True)
    escalations.first.locator("button.inbox-open").click()
    manager.wait_for_url(f"**/#/incidents/{incident_id}")
    expect(manager.locator(".drill-banner")).to_be_visible()
    manager.click("#inc-ack")
    expect(manager.locator(".status")).to_have_text("已确认")
    expect(manager.locator(".inc-head")).to_contain_text("manager drill")
    expect(manager.locator(".rung-pending")).to_have_count(0)  # whatever had not fired is stopped
    assert manager.locator(".rung-stopped").count() + manager.locator(".rung-fired").count() == 3
    expect(manager.locator(".timeline")).to_contain_text("确认接手")
    manager.screenshot(path=artifacts / "incidents-drill-acked.png", full_page=True)

    # The lead's open screen follows live (polling), and the lead can tick a step and add a note.
    expect(lead.locator(".status")).to_have_text("已确认", timeout=10000)
    lead.locator(".inc-step", has_text="通知运维").locator("input[type=checkbox]").check()
    expect(lead.locator(".inc-step.done", has_text="通知运维")).to_contain_text("lead drill")
    lead.fill("textarea[name=text]", "运维已远程处理")
    lead.click(".note-form button[type=submit]")
    expect(lead.locator(".timeline")).to_contain_text("运维已远程处理")

    # Offline the manager still sees the incident as last fetched, with a note saying so.
    manager.wait_for_timeout(500)
    manager_context.set_offline(True)
    manager.reload()
    expect(manager.locator(".offline-note")).to_be_visible(timeout=15000)
    expect(manager.locator(".status")).to_have_text("已确认")
    expect(manager.locator("#inc-ack")).to_have_count(0)
    manager.screenshot(path=artifacts / "incidents-offline.png", full_page=True)
    manager_context.set_offline(False)

    lead.click("#inc-recover")
    expect(lead.locator(".status")).to_have_text("已恢复")
    # Steps are still unticked: resolving lists them and needs a reason to go anyway.
    lead.click("button.resolve")
    expect(lead.locator(".resolve-check [data-left=steps]")).to_be_visible()
    lead.fill(".resolve-check textarea[name=reason]", "演练到此为止")
    lead.click("#inc-resolve-anyway")
    expect(lead.locator(".status")).to_have_text("已结束")
    lead.goto(server.base + "/#/incidents")
    expect(lead.locator(".incident-list").last).to_contain_text("已结束")
    lead.screenshot(path=artifacts / "incidents-list.png", full_page=True)


def test_english_screens_and_agent_view(server, new_context, artifacts):
    lead_token = server.login("drill-lead")
    incident = api(server, lead_token, "POST", "/api/incidents", {"playbook": "power-outage"})
    agent = login(new_context(locale="en-US"), server, "drill-agent")
    agent.goto(server.base + f"/#/incidents/{incident['id']}")
    expect(agent.locator("h1")).to_contain_text("Power")
    expect(agent.locator("#inc-ack")).to_have_count(0)  # agents don't acknowledge
    expect(agent.locator(".timeline")).to_have_count(0)  # nor read the timeline
    agent_step = agent.locator(".inc-step", has=agent.locator(".step-who", has_text="Agent")).first
    expect(agent_step.locator("input")).to_be_enabled()
    lead_step = agent.locator(".inc-step", has=agent.locator(".step-who", has_text="Lead")).first
    expect(lead_step.locator("input")).to_be_disabled()
    agent.screenshot(path=artifacts / "incidents-agent-en.png", full_page=True)
    api(server, lead_token, "POST", f"/api/incidents/{incident['id']}/resolve")


def test_push_switch_and_test_notification_from_the_inbox(server, new_context, artifacts):
    api(
        server, server.login("drill-agent"), "POST", "/api/inbox/read-all"
    )  # earlier tests notified agents too
    context = new_context(locale="zh-CN")
    context.grant_permissions(["notifications"], origin=server.base)
    page = login(context, server, "drill-agent")
    page.click('#tabs a[href="#/inbox"]')
    expect(page.locator(".push-card")).to_contain_text("开启后")
    # Headless Chromium has no push service: the tap must end in a clear message, not a dead button.
    page.click("#push-enable")
    expect(page.locator(".push-card .error")).to_contain_text("通知仍会出现在收件箱")
    expect(page.locator("#push-enable")).to_be_enabled()
    page.click("#push-test")
    expect(page.locator(".inbox-item").first).to_contain_text("测试通知")
    expect(page.locator('#tabs a[href="#/inbox"] .inbox-badge')).to_have_text("1")
    expect(page.locator(".push-card .error")).to_be_visible()  # still explained after the list redraws
    page.screenshot(path=artifacts / "incidents-inbox-push-switch.png")
    page.locator(".inbox-item button").first.click()
    expect(page.locator(".inbox-item.unread")).to_have_count(0)
    expect(page.locator('#tabs a[href="#/inbox"] .inbox-badge')).to_have_count(0)
    # Logging out still works with push's clean-up chained after the outbox's export.
    page.click('#tabs a[href="#/"]')
    page.click("button.secondary")
    page.wait_for_url("**/#/login")


def test_lead_reports_call_figures_and_the_alert_level_opens_a_surge(server, new_context, artifacts):
    lead = login(new_context(locale="zh-CN"), server, "drill-lead")
    lead.goto(server.base + "/#/incidents")
    expect(lead.locator(".declare-form select[name=time_scale]")).to_be_hidden()  # only for drills
    lead.click("details summary")
    lead.fill("input[name=answer_rate]", "78.5")
    lead.fill("input[name=queue_length]", "64")
    lead.click(".level-form button[type=submit]")
    expect(lead.locator(".level")).to_contain_text("红色预警")
    expect(lead.locator(".level")).to_contain_text("已启动 3 级后备")
    surge = lead.locator(".incident-list").first.locator(".incident-card", has_text="呼入量异常激增")
    expect(surge).to_be_visible()
    lead.screenshot(path=artifacts / "incidents-alert-red.png")
    surge.click()
    expect(lead.locator(".timeline")).to_contain_text("启动 3 级后备人员")
    expect(lead.locator(".timeline")).to_contain_text("正常 → 红色预警")
    lead.screenshot(path=artifacts / "incidents-surge-timeline.png")
    incident_id = int(lead.url.rsplit("/", 1)[-1])
    api(server, server.login("drill-lead"), "POST", f"/api/incidents/{incident_id}/resolve")
