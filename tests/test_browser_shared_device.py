"""A shared tablet: one person's offline copies never reach the next person, and their unsent work is kept.

User A reads callbacks, the inbox and an incident online, records a call and a callback try offline and logs
out; user B (another site) logs in on the same browser, goes offline and must find none of A's data, neither
on screen nor anywhere in Cache Storage or localStorage. A's unsent record and callback try stay queued
and upload when A logs back in."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import expect

from .servers import ServerProcess
from .test_browser_sync import log_in, record_call, server_records

pytestmark = pytest.mark.browser

CALLER = "甲客户" + uuid.uuid4().hex[:4]  # A's callback: must never be shown to B
NOTE = "甲站点的故障说明" + uuid.uuid4().hex[:4]  # A's incident


def call(base: str, token: str, method: str, path: str, **kwargs):
    response = httpx.request(
        method, base + path, headers={"Authorization": f"Bearer {token}"}, timeout=15, **kwargs
    )
    assert response.status_code < 400, response.text
    return response.json()


def callback_record() -> dict:
    now = datetime.now(UTC)
    return {
        "id": str(uuid.uuid4()),
        "form": "call-record",
        "form_version": 1,
        "rev": 1,
        "captured_at": now.isoformat(),
        "data": {
            "called_at": (now - timedelta(hours=1)).isoformat(),
            "caller_name": CALLER,
            "phone": "021-5555 0199",
            "category": "fault_report",
            "urgency": "urgent",
            "details": "停电后宽带一直断",
            "callback_promised": True,
            "callback_due": (now + timedelta(hours=1)).isoformat(),
        },
    }


def stored_text(page) -> str:
    """Everything this browser keeps in Cache Storage (every cache, every entry) and localStorage."""
    return page.evaluate("""async () => {
        const parts = [];
        for (const name of await caches.keys()) {
            if (name.startsWith("od-shell-")) continue; // the app's own files
            const cache = await caches.open(name);
            for (const request of await cache.keys()) {
                parts.push(name, request.url, await (await cache.match(request)).text());
            }
        }
        for (const key of Object.keys(localStorage)) parts.push(key, localStorage.getItem(key));
        return parts.join("\\n");
    }""")


def go_offline(context, page) -> None:
    context.set_offline(True)
    page.evaluate("window.dispatchEvent(new Event('offline'))")
    expect(page.locator("#net")).to_have_text("离线")


def log_out(page) -> None:
    page.goto(page.url.split("#")[0] + "#/")
    page.get_by_role("button", name="退出登录").click()
    page.wait_for_url("**/#/login")


def test_next_user_on_a_shared_device_sees_none_of_the_last_ones_data(live_server, new_context, artifacts):
    a = live_server.add_users(f"shareA{uuid.uuid4().hex[:4]}", roles=("agent", "lead"))
    b = live_server.add_users(f"shareB{uuid.uuid4().hex[:4]}", roles=("agent",))
    base = live_server.base
    a_token = live_server.login(a["agent"])
    callback = callback_record()
    assert (
        call(
            base,
            a_token,
            "POST",
            "/api/sync",
            json={"device_id": "seed", "cursor": None, "records": [callback]},
        )["results"][0]["status"]
        == "created"
    )
    call(base, a_token, "POST", "/api/push/test")  # one notification in A's inbox
    incident = call(
        base,
        live_server.login(a["lead"]),
        "POST",
        "/api/incidents",
        json={"playbook": "power-outage", "note": NOTE},
    )

    context = new_context(locale="zh-CN", accept_downloads=True)
    page = context.new_page()
    downloads = []
    page.on("download", lambda download: downloads.append(download))

    # A reads everything online: each screen keeps A's copy for offline use.
    log_in(page, base, a["agent"])
    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=30000)
    page.goto(base + "/#/callbacks")
    expect(page.locator(f"[data-callback='{callback['id']}']")).to_contain_text(CALLER)
    page.goto(base + "/#/inbox")
    expect(page.locator(".inbox-item").first).to_contain_text("测试通知")
    page.goto(base + "/#/incidents")
    expect(page.locator(f"a[href='#/incidents/{incident['id']}']")).to_be_visible()
    page.goto(base + f"/#/incidents/{incident['id']}")
    expect(page.locator(".inc-note")).to_have_text(NOTE)

    # Offline, A still sees the saved copies, records a call and a callback try, then logs out.
    go_offline(context, page)
    page.goto(base + "/#/callbacks")
    expect(page.locator("#view .banner")).to_contain_text("离线")  # "offline: the list as saved at …"
    page.locator(f"[data-callback='{callback['id']}'] button[data-outcome=no_answer]").click()
    expect(page.locator(".cb-waiting")).to_contain_text("1")
    page.goto(base + "/#/forms/call-record")
    expect(page.locator("form.rec-form")).to_be_visible()
    unsent = record_call(page, "甲的来电", "离线时记录，未上传")
    assert CALLER in stored_text(page)  # A's copies really were on the device
    log_out(page)
    deadline = time.monotonic() + 10
    while len(downloads) < 2 and time.monotonic() < deadline:  # the unsent record is exported first
        page.wait_for_timeout(100)
    assert sorted(d.suggested_filename.rsplit(".", 1)[1] for d in downloads) == ["csv", "json"]
    leftover = stored_text(page)
    assert CALLER not in leftover and NOTE not in leftover and "测试通知" not in leftover

    # B logs in on the same browser, then goes offline: none of A's data, on screen or in storage.
    context.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    log_in(page, base, b["agent"])
    page.goto(base + "/#/callbacks")
    expect(page.locator("h1")).to_have_text("回拨清单")  # B's own (empty) list, live
    go_offline(context, page)
    for hash_ in ("#/callbacks", "#/inbox", "#/incidents", f"#/incidents/{incident['id']}", "#/outbox"):
        page.goto(base + "/" + hash_)
        page.wait_for_timeout(800)
        text = page.locator("#view").inner_text()
        assert (
            CALLER not in text and NOTE not in text and "测试通知" not in text and "甲的来电" not in text
        ), hash_
    expect(page.locator(".outbox-counts [data-status=queued]")).to_have_attribute("data-count", "0")
    page.screenshot(path=artifacts / "shared-device-next-user-offline.png")
    leftover = stored_text(page)
    assert CALLER not in leftover and NOTE not in leftover and "测试通知" not in leftover
    # B's device never uploaded A's record under B's name.
    assert all(r["id"] != unsent for r in server_records(base, live_server.login(b["agent"])))

    # B leaves; A comes back: A's queued record and callback try go up by themselves.
    context.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    log_out(page)
    assert all(r["id"] != unsent for r in server_records(base, live_server.login(a["agent"])))
    log_in(page, base, a["agent"], ServerProcess.PASSWORD)
    page.goto(base + "/#/outbox")
    expect(page.locator(".outbox-counts [data-status=synced]")).to_have_attribute(
        "data-count", "1", timeout=30000
    )
    assert unsent in {r["id"] for r in server_records(base, live_server.login(a["agent"]))}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        listed = [
            c
            for c in call(base, live_server.login(a["lead"]), "GET", "/api/callbacks")["items"]
            if c["id"] == callback["id"] and c["attempts"] == 1 and c["last_outcome"] == "no_answer"
        ]
        if listed:
            break
        time.sleep(0.3)
    assert listed, "A's offline callback try was not sent after A logged back in"
