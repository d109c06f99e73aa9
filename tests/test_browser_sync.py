"""Offline recording and exactly-once sync in real Chromium against a real server process."""

from __future__ import annotations

import time

import httpx
import pytest
from playwright.sync_api import expect

from .servers import ServerProcess, service_worker_registration

pytestmark = pytest.mark.browser


def log_in(page, base: str, username: str, password: str = ServerProcess.PASSWORD) -> None:
    page.goto(base + "/#/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/#/")


def logged_in_page(live_server, new_context, site: str, roles=("agent",), locale="zh-CN", **context_options):
    """A fresh site's users, and a phone-sized page logged in as its agent."""
    users = live_server.add_users(site, roles=roles)
    context = new_context(locale=locale, **context_options)
    page = context.new_page()
    log_in(page, live_server.base, users["agent"])
    return users, context, page


def outbox_count(page, status: str) -> int:
    return int(page.locator(f".outbox-counts [data-status={status}]").get_attribute("data-count"))


def server_records(base: str, token: str) -> list[dict]:
    response = httpx.get(
        f"{base}/api/records",
        params={"limit": 1000},
        headers={"Authorization": f"Bearer {token}"},
        timeout=20,
    )
    response.raise_for_status()
    body = response.json()
    assert body["next_after"] is None
    return body["items"]


def test_thirty_calls_offline_survive_a_reload_and_sync_once(live_server, new_context, artifacts):
    users, context, page = logged_in_page(live_server, new_context, "offline30")
    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=30000)
    page.goto(live_server.base + "/#/forms/call-record")
    expect(page.locator("h1")).to_have_text("手工记录表")
    expect(page.locator(".rec-outbox")).to_contain_text("待上传 0 条")

    context.set_offline(True)
    page.evaluate("window.dispatchEvent(new Event('offline'))")
    expect(page.locator("#net")).to_have_text("离线")
    ids = []
    for n in range(30):
        form = page.locator("form.rec-form")
        record_id = form.get_attribute("data-record")
        assert record_id not in ids  # a new id for every call
        ids.append(record_id)
        page.fill("input[name=caller_name]", f"王先生{n}")
        page.fill("input[name=phone]", f"139 0000 {n:04d}")
        page.check("input[name=category][value=order_billing]")
        page.fill("textarea[name=details]", f"第{n}通：订单查询，系统故障中，承诺回电")
        if n == 0:
            page.screenshot(path=artifacts / "sync-form-filled.png", full_page=True)
        page.click("button.rec-save")
        expect(page.locator("form.rec-form")).not_to_have_attribute("data-record", record_id)
        expect(page.locator(".rec-outbox")).to_contain_text(f"待上传 {n + 1} 条")
    page.screenshot(path=artifacts / "sync-form-fresh.png")

    # Close the page and come back while still offline: everything is still queued on the device.
    page.close()
    page = context.new_page()
    page.goto(live_server.base + "/#/outbox")
    expect(page.locator(".outbox-counts")).to_be_visible()
    expect(page.locator(".outbox-counts [data-status=queued]")).to_have_attribute("data-count", "30")
    expect(page.locator(".outbox-item.status-queued")).to_have_count(30)
    expect(page.locator(".outbox .warning").first).to_be_visible()  # offline notice
    page.screenshot(path=artifacts / "sync-outbox-offline.png", full_page=False)

    # Back online: the page finds out by probing the server and uploads by itself.
    context.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    expect(page.locator(".outbox-counts [data-status=synced]")).to_have_attribute(
        "data-count", "30", timeout=60000
    )
    assert outbox_count(page, "queued") == 0 and outbox_count(page, "failed") == 0
    receipts = page.locator(".outbox-item.status-synced .receipt").all_inner_texts()
    assert len(receipts) == 30 and all(r.startswith("回执 R-") for r in receipts)
    expect(page.locator(".outbox-sync")).to_contain_text("最后一次成功上传")
    page.screenshot(path=artifacts / "sync-outbox-synced.png")

    stored = server_records(live_server.base, live_server.login(users["agent"]))
    assert len(stored) == 30
    assert sorted(r["id"] for r in stored) == sorted(ids)
    assert {r["receipt"] for r in stored} == {r.removeprefix("回执 ") for r in receipts}
    assert {r["data"]["caller_name"] for r in stored} == {f"王先生{n}" for n in range(30)}


CREATE_QUEUE = """async ([count, version]) => {
  const store = await import("/static/store.js");
  const ids = [];
  const records = [];
  for (let n = 0; n < count; n++) {
    const r = store.newDraft({ form: "call-record", formVersion: version });
    r.data = { called_at: "2026-11-23T10:00:00+08:00", caller_name: "客户" + n, phone: "1380000" + String(n).padStart(4, "0"),
      category: "fault_report", urgency: "normal", details: "断电期间来电 " + n, callback_promised: false };
    r.status = "queued";
    records.push(r);
    ids.push(r.id);
  }
  await store.putAll(records);
  return ids;
}"""


def test_server_killed_while_500_records_upload(tmp_path, new_context, artifacts):
    server = ServerProcess(tmp_path / "server")
    users = server.add_users("kill500", roles=("agent", "lead"))
    server.start()
    try:
        context = new_context(locale="en-US")
        page = context.new_page()
        log_in(page, server.base, users["agent"])
        page.goto(server.base + "/#/outbox")
        expect(page.locator(".outbox-counts")).to_be_visible()
        context.set_offline(True)  # build the queue first, then let it go
        page.evaluate("window.dispatchEvent(new Event('offline'))")
        ids = page.evaluate(CREATE_QUEUE, [500, 1])
        assert len(set(ids)) == 500
        expect(page.locator(".outbox-counts [data-status=queued]")).to_have_attribute("data-count", "500")

        batches = []

        def on_sync(route):
            batches.append(len(route.request.post_data_json["records"]))
            if len(batches) == 3 and server.proc is not None:
                route.continue_()
                time.sleep(0.02)
                server.kill()  # power cut while the third batch is at the server
                return
            route.continue_()

        page.route("**/api/sync", on_sync)
        context.set_offline(False)
        page.evaluate("window.dispatchEvent(new Event('online'))")
        deadline = time.monotonic() + 30
        while server.proc is not None and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        assert server.proc is None, "the upload finished before the server could be killed"
        expect(page.locator(".outbox-counts [data-status=synced]")).not_to_have_attribute("data-count", "500")
        page.screenshot(path=artifacts / "sync-outbox-server-down.png")

        server.start()  # same port, same database
        expect(page.locator(".outbox-counts [data-status=synced]")).to_have_attribute(
            "data-count", "500", timeout=120000
        )
        page.screenshot(path=artifacts / "sync-outbox-500-synced.png")
        assert outbox_count(page, "failed") == 0 and outbox_count(page, "queued") == 0
        assert all(size <= 100 for size in batches) and len(batches) >= 6

        stored = server_records(server.base, server.login(users["lead"]))
        assert len(stored) == 500
        assert sorted(r["id"] for r in stored) == sorted(ids)  # none lost, none duplicated
    finally:
        server.stop()


def record_call(page, name: str, details: str) -> str:
    page.fill("input[name=caller_name]", name)
    page.fill("input[name=phone]", "021-5555 0101")
    page.check("input[name=category][value=complaint]")
    page.fill("textarea[name=details]", details)
    # The id of the form that holds what was typed, read just before saving (a screen that was still being
    # drawn when the test arrived may have been redrawn with a new draft since).
    record_id = page.locator("form.rec-form").get_attribute("data-record")
    page.click("button.rec-save")
    expect(page.locator("form.rec-form")).not_to_have_attribute("data-record", record_id)
    return record_id


def other_device_sends(base: str, token: str, record: dict) -> dict:
    response = httpx.post(
        f"{base}/api/sync",
        json={"device_id": "other-phone", "records": [record]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=20,
    )
    response.raise_for_status()
    return response.json()["results"][0]


def test_conflict_shows_both_versions_and_the_agent_chooses(live_server, new_context, artifacts):
    users, _, page = logged_in_page(live_server, new_context, "conflict")
    token = live_server.login(users["agent"])
    page.goto(live_server.base + "/#/forms/call-record")
    keep = record_call(page, "李女士", "投诉：账单多扣费")
    take = record_call(page, "赵先生", "报修：宽带断线")
    page.goto(live_server.base + "/#/outbox")
    expect(page.locator(".outbox-counts [data-status=synced]")).to_have_attribute(
        "data-count", "2", timeout=30000
    )
    held = {r["id"]: r for r in server_records(live_server.base, token)}

    # Another device of the same agent saves rev 2 of both records first.
    for rid, text in ((keep, "另一台设备：已电话安抚"), (take, "另一台设备：已派单")):
        server = held[rid]
        sent = {
            "id": rid,
            "form": "call-record",
            "form_version": 1,
            "rev": 2,
            "captured_at": server["captured_at"],
            "data": {**server["data"], "details": text},
        }
        assert other_device_sends(live_server.base, token, sent)["status"] == "updated"

    # This device edits its synced copies: they become rev 2 with other content -> conflicts.
    for rid, text in ((keep, "投诉：账单多扣费 200 元，要求退款"), (take, "报修：宽带断线，已重启光猫")):
        page.goto(f"{live_server.base}/#/records/{rid}")
        expect(page.locator(".rec-status")).to_contain_text("回执号 R-")
        page.fill("textarea[name=details]", text)
        page.click("button.rec-save")
        page.wait_for_url("**/#/outbox")
    expect(page.locator(".outbox-counts [data-status=conflict]")).to_have_attribute(
        "data-count", "2", timeout=30000
    )
    item = page.locator(f".outbox-item[data-id='{keep}']")
    expect(item.locator(".conflict-table")).to_contain_text("投诉：账单多扣费 200 元，要求退款")
    expect(item.locator(".conflict-table")).to_contain_text("另一台设备：已电话安抚")
    expect(item.locator(".conflict-table tr.differs")).to_have_count(1)  # only the details differ
    item.scroll_into_view_if_needed()
    page.screenshot(path=artifacts / "sync-outbox-conflict.png")

    item.locator("button.keep-mine").click()
    page.locator(f".outbox-item[data-id='{take}'] button.take-server").click()
    expect(page.locator(".outbox-counts [data-status=synced]")).to_have_attribute(
        "data-count", "2", timeout=30000
    )
    held = {r["id"]: r for r in server_records(live_server.base, token)}
    assert held[keep]["rev"] == 3 and held[keep]["data"]["details"] == "投诉：账单多扣费 200 元，要求退款"
    assert held[take]["rev"] == 2 and held[take]["data"]["details"] == "另一台设备：已派单"
    local = page.evaluate(f"import('/static/store.js').then((s) => s.get('{take}'))")
    assert local["data"]["details"] == "另一台设备：已派单" and local["receipt"] == held[take]["receipt"]
    assert len(held) == 2


def test_expired_login_never_blocks_recording_and_logout_exports_first(live_server, new_context, artifacts):
    users, context, page = logged_in_page(live_server, new_context, "expiry", accept_downloads=True)
    downloads = []
    page.on("download", lambda download: downloads.append(download))
    page.goto(live_server.base + "/#/forms/call-record")
    expect(page.locator("form.rec-form")).to_be_visible()
    # The token expires (here: revoked on the server) while the agent keeps taking calls.
    httpx.post(
        f"{live_server.base}/api/auth/logout",
        timeout=10,
        headers={"Authorization": f"Bearer {page.evaluate('localStorage.getItem(`od.token`)')}"},
    )
    first = record_call(page, "钱女士", "询问停电何时恢复")
    expect(page.locator("#banner")).to_be_visible(timeout=20000)
    expect(page.locator("#banner")).to_contain_text("重新登录")
    second = record_call(page, "孙先生", "订单查询，承诺回电")
    page.goto(live_server.base + "/#/outbox")
    expect(page.locator(".outbox-login")).to_be_visible()
    expect(page.locator(".outbox-counts [data-status=queued]")).to_have_attribute("data-count", "2")
    page.screenshot(path=artifacts / "sync-outbox-login-expired.png")

    # Export at any time: JSON and CSV (UTF-8 with BOM, so Excel shows the Chinese text).
    page.click("button.outbox-export")
    deadline = time.monotonic() + 10
    while len(downloads) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    names = sorted(d.suggested_filename for d in downloads)
    assert names[0].endswith(".csv") and names[1].endswith(".json")
    csv_bytes = open(downloads[[d.suggested_filename for d in downloads].index(names[0])].path(), "rb").read()
    assert csv_bytes.startswith(b"\xef\xbb\xbf") and "钱女士".encode() in csv_bytes
    assert first.encode() in csv_bytes and second.encode() in csv_bytes

    # Logging out with unsent records exports them first; the records stay queued on the device.
    page.goto(live_server.base + "/#/")
    page.get_by_role("button", name="退出登录").click()
    page.wait_for_url("**/#/login")
    deadline = time.monotonic() + 10
    while len(downloads) < 4 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert len(downloads) == 4

    # Log in again: the queue goes up by itself.
    page.fill("input[name=username]", users["agent"])
    page.fill("input[name=password]", ServerProcess.PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/#/")
    page.goto(live_server.base + "/#/outbox")
    expect(page.locator(".outbox-counts [data-status=synced]")).to_have_attribute(
        "data-count", "2", timeout=30000
    )
    expect(page.locator(".outbox-login")).to_be_hidden()
    stored = server_records(live_server.base, live_server.login(users["agent"]))
    assert sorted(r["id"] for r in stored) == sorted([first, second])


def test_rejected_record_shows_field_errors_and_can_be_fixed(live_server, new_context, artifacts):
    users, _, page = logged_in_page(live_server, new_context, "rejected", locale="en-US")
    page.goto(live_server.base + "/#/outbox")
    # A record that passed the device's checks but not the server's (e.g. an older app build):
    rid = page.evaluate("""async () => {
      const store = await import("/static/store.js");
      const r = store.newDraft({ form: "call-record", formVersion: 1 });
      await store.queue(r, { called_at: "2026-11-23T10:00:00+08:00", caller_name: "Ms Zhou", phone: "call me",
        category: "other", urgency: "normal", details: "Asked about the outage", callback_promised: false });
      return r.id;
    }""")
    page.click("button.outbox-syncnow")
    item = page.locator(f".outbox-item[data-id='{rid}']")
    expect(item).to_have_attribute("data-status", "rejected", timeout=20000)
    item.get_by_role("link", name="Fix and resend").click()
    expect(page.locator("[data-field=phone] .field-error")).to_be_visible()
    page.screenshot(path=artifacts / "sync-form-rejected.png")
    page.fill("input[name=phone]", "138 0000 1111")
    page.click("button.rec-save")
    page.wait_for_url("**/#/outbox")
    expect(item).to_have_attribute("data-status", "synced", timeout=20000)
    stored = server_records(live_server.base, live_server.login(users["agent"]))
    assert [(r["id"], r["data"]["phone"]) for r in stored] == [(rid, "138 0000 1111")]


def test_background_sync_event_wakes_the_page_to_upload(live_server, new_context):
    users, context, page = logged_in_page(live_server, new_context, "bgsync")
    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=30000)
    page.goto(live_server.base + "/#/outbox")
    cdp, registration_id = service_worker_registration(page)
    # Queue records without any page trigger, and note when the service worker asks the page to upload.
    page.evaluate("""() => navigator.serviceWorker.addEventListener("message", (e) => {
      if (e.data?.type === "od-sync") window.__woken = (window.__woken || 0) + 1; })""")
    page.evaluate(CREATE_QUEUE, [5, 1])
    expect(page.locator(".outbox-counts [data-status=queued]")).to_have_attribute("data-count", "5")
    cdp.send(
        "ServiceWorker.dispatchSyncEvent",
        {
            "origin": live_server.base,
            "tag": "od-sync",
            "lastChance": False,
            "registrationId": registration_id,
        },
    )
    page.wait_for_function("window.__woken >= 1", timeout=10000)
    expect(page.locator(".outbox-counts [data-status=synced]")).to_have_attribute(
        "data-count", "5", timeout=20000
    )
    assert len(server_records(live_server.base, live_server.login(users["agent"]))) == 5


def test_two_tabs_run_one_upload_at_a_time(live_server, new_context):
    users = live_server.add_users("twotabs", roles=("agent",))
    context = new_context(locale="zh-CN")
    first = context.new_page()
    log_in(first, live_server.base, users["agent"])
    first.goto(live_server.base + "/#/outbox")
    second = context.new_page()
    second.goto(live_server.base + "/#/outbox")
    expect(second.locator(".outbox-counts")).to_be_visible()
    sent: list[str] = []
    context.route(
        "**/api/sync",
        lambda route: (
            sent.extend(r["id"] for r in route.request.post_data_json["records"]),
            route.continue_(),
        ),
    )
    context.set_offline(True)
    first.evaluate(CREATE_QUEUE, [300, 1])
    context.set_offline(False)
    # Both tabs press "Sync now" at the same moment.
    for page in (first, second):
        page.evaluate("window.__run = import('/static/sync.js').then((s) => s.syncNow({ manual: true }))")
    outcomes = sorted(page.evaluate("window.__run") for page in (first, second))
    expect(second.locator(".outbox-counts [data-status=synced]")).to_have_attribute(
        "data-count", "300", timeout=60000
    )
    assert "busy" in outcomes or outcomes == ["done", "done"]
    assert len(sent) == 300 == len(set(sent))  # no record was sent twice by two tabs racing


def test_draft_autosaves_and_reopens_and_reentry_status_comes_back(live_server, new_context, artifacts):
    users, context, page = logged_in_page(live_server, new_context, "drafts", roles=("agent", "lead"))
    page.goto(live_server.base + "/#/forms/call-record")
    record_id = page.locator("form.rec-form").get_attribute("data-record")
    page.fill("input[name=caller_name]", "周女士")
    page.fill("input[name=phone]", "137 1234 5678")
    expect(page.locator(".rec-status")).to_contain_text("草稿已自动保存", timeout=15000)
    page.close()  # the tab dies mid-call

    page = context.new_page()
    page.goto(live_server.base + "/#/outbox")
    expect(page.locator(".outbox-counts [data-status=draft]")).to_have_attribute("data-count", "1")
    page.locator(f".outbox-item[data-id='{record_id}'] a.button").click()
    expect(page.locator("input[name=caller_name]")).to_have_value("周女士")
    expect(page.locator("input[name=phone]")).to_have_value("137 1234 5678")
    page.click("button.rec-save")  # details missing: the device says so before queueing
    expect(page.locator("[data-field=details] .field-error")).to_have_text("此项必填")
    page.check("input[name=category][value=account_change]")
    page.fill("textarea[name=details]", "要求更改账单地址")
    page.evaluate("location.hash = '#/outbox'")  # leave at once: the last keystrokes are saved on the way out
    page.locator(f".outbox-item[data-id='{record_id}'] a.button").click()
    expect(page.locator("textarea[name=details]")).to_have_value("要求更改账单地址")
    page.click("button.rec-save")
    page.wait_for_url("**/#/outbox")
    item = page.locator(f".outbox-item[data-id='{record_id}']")
    expect(item).to_have_attribute("data-status", "synced", timeout=20000)

    # After recovery the lead marks it re-entered into the CRM; the change feed brings that to the device.
    lead = live_server.login(users["lead"])
    response = httpx.post(
        f"{live_server.base}/api/recovery/reentry",
        timeout=10,
        json={"status": "reentered", "records": [{"id": record_id, "crm_ref": "CRM-88231"}]},
        headers={"Authorization": f"Bearer {lead}"},
    )
    assert response.status_code == 200, response.text
    page.click("button.outbox-syncnow")
    expect(item.locator(".reentry")).to_have_text("已录入系统（CRM-88231）", timeout=20000)
    page.screenshot(path=artifacts / "sync-outbox-reentered.png")


def test_backoff_full_jitter_is_capped_and_csv_is_excel_ready(live_server, new_context):
    page = new_context(locale="zh-CN").new_page()
    page.goto(live_server.base + "/#/login")
    checks = page.evaluate("""async () => {
      const sync = await import("/static/sync.js");
      const top = (n) => sync.backoffDelay(n, () => 0.999999);
      const csv = sync.toCsv([{ id: "a", status: "queued", form: "call-record", formVersion: 1, rev: 1,
        data: { caller_name: '张"三"', details: "第一行\\n第二行, 逗号" } }]);
      return { tops: [0, 1, 2, 5, 10, 30].map(top), zero: sync.backoffDelay(7, () => 0), csv };
    }""")
    tops = checks["tops"]
    assert tops == sorted(tops) and tops[0] < 2000 and tops[-1] < 300000 and tops[-2] > 290000  # 5 min cap
    assert checks["zero"] == 0  # full jitter: anywhere from 0 up
    csv = checks["csv"]
    assert csv.startswith("\ufeffid,status,form,formVersion,rev,")
    assert '"张""三"""' in csv and '"第一行\n第二行, 逗号"' in csv and csv.endswith("\r\n")


def test_upload_failures_are_told_in_the_agents_language(live_server, new_context):
    """A failed upload reads as a sentence in the interface language, by status and problem type; the server's
    own (English) detail is only a second line."""
    page = new_context(locale="zh-CN").new_page()
    page.goto(live_server.base + "/#/login")
    cases = page.evaluate("""async () => {
      const { ApiError } = await import("/static/api.js");
      const sync = await import("/static/sync.js");
      const i18n = await import("/static/i18n.js");
      const problem = (status, type, detail) => new ApiError(status, { type, status, detail });
      const errors = {
        database: problem(503, "urn:outage-desk:database-unavailable", "The database is unavailable right now"),
        busy: problem(503, "urn:outage-desk:busy", "The server is busy"),
        admission: problem(503, "urn:outage-desk:server-busy", "Many devices are syncing right now"),
        other503: problem(503, "about:blank", "Service Unavailable"),
        tooLarge: problem(413, "about:blank", "Request body is too large"),
        expired: problem(401, "about:blank", "Token expired"),
        crash: problem(500, "about:blank", "Something went wrong"),
        network: new TypeError("Failed to fetch"),
      };
      const out = {};
      for (const [lang, name] of [["zh-CN", "zh"], ["en", "en"]]) {
        i18n.setLang(lang);
        for (const [key, error] of Object.entries(errors)) {
          const why = sync.failure(error);
          out[`${name}.${key}`] = [why.code, sync.failureText(why), sync.failureDetail(why)];
        }
      }
      i18n.setLang("zh-CN");
      return out;
    }""")
    assert cases["zh.database"] == [
        "database",
        "服务器的数据库暂时不可用（503）",
        "服务器说明：The database is unavailable right now",
    ]
    assert (
        cases["zh.busy"][:2] == cases["zh.admission"][:2] == ["busy", "服务器正忙，很多设备在同时上传（503）"]
    )
    assert cases["zh.other503"][:2] == ["unavailable", "服务器暂时不可用（503）"]
    assert cases["zh.tooLarge"][:2] == ["tooLarge", "记录太大，服务器无法接收（413）"]
    assert cases["zh.expired"][:2] == ["login", "登录已过期，需要重新登录后才能上传"]
    assert cases["zh.crash"][:2] == ["server", "服务器出错（500）"]
    assert cases["zh.network"] == [
        "network",
        "无法连接服务器",
        "",
    ]  # no answer: nothing from the server to show
    assert cases["en.database"] == [
        "database",
        "The server's database is unavailable (503)",
        "Server says: The database is unavailable right now",
    ]
    assert cases["en.network"] == ["network", "Cannot reach the server", ""]
