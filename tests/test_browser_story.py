"""The incident as one story in headless Chromium at phone size: calls recorded offline name the drill the
device knows, the callback list offline shows the promises still on the device (urgent first) and the home
screen counts them; a manager acknowledges from the inbox; the CSV the lead downloads, parsed back, keeps
phone numbers and the site's wall-clock times, and so does the device's own export."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from .browsing import api, new_team, page_for

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def team(live_server):
    return new_team(live_server, "story")


def record_call(page, name, phone, *, promised, urgent=False):
    page.fill("input[name=caller_name]", name)
    page.fill("input[name=phone]", phone)
    page.check(
        "input[name=category][value=complaint]" if urgent else "input[name=category][value=order_billing]"
    )
    page.check(f"input[name=urgency][value={'urgent' if urgent else 'normal'}]")
    page.fill("textarea[name=details]", f"{name}：停电后无法办理")
    page.locator("[data-field=callback_promised] label", has_text="是" if promised else "否").click()
    record_id = page.locator("form.rec-form").get_attribute("data-record")
    page.click("button.rec-save")
    expect(page.locator("form.rec-form")).not_to_have_attribute("data-record", record_id)
    return record_id


def test_offline_callbacks_show_the_promises_on_the_device_and_home_counts_them(
    live_server, team, new_context, artifacts
):
    drill = api(
        live_server,
        team,
        "lead",
        "POST",
        "/api/incidents",
        json={"playbook": "power-outage", "drill": {"time_scale": 10}},
    )
    context, page = page_for(live_server, new_context, team, "agent")
    page.goto(live_server.base + "/#/")
    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=30000)
    expect(page.locator(".home-incident .tag.drill")).to_be_visible()  # the running drill, marked
    page.goto(live_server.base + "/#/callbacks")
    expect(page.locator(".empty")).to_be_visible()  # nothing promised yet (and the empty list is saved)
    page.goto(live_server.base + "/#/forms/call-record")
    expect(page.locator(".chip-line")).to_contain_text(str(drill["id"]))  # the new record names the drill

    context.set_offline(True)
    page.evaluate("window.dispatchEvent(new Event('offline'))")
    expect(page.locator("#net")).to_have_text("离线")
    ids = [
        record_call(page, "钱女士", "13712345678", promised=True),
        record_call(page, "孙先生", "+86 139 0000 0002", promised=True, urgent=True),
        record_call(page, "李先生", "010-8888 6666", promised=True),
        record_call(page, "周女士", "021-5555 0101", promised=False),
    ]

    page.goto(live_server.base + "/#/callbacks")
    cards = page.locator(".cb-item")
    expect(cards).to_have_count(3)
    expect(cards.first).to_have_attribute("data-urgent", "1")  # urgent first
    expect(cards.first.locator(".cb-name")).to_have_text("孙先生")
    expect(cards.first.locator(".cb-matter")).to_contain_text("投诉")
    expect(page.locator(".cb-item[data-local='1']")).to_have_count(3)
    expect(page.locator(".cb-local-count")).to_contain_text("3")
    page.screenshot(path=artifacts / "story-callbacks-offline.png", full_page=True)
    # A try on a promise still on the device waits for its record; undo drops it again.
    cards.first.locator("button[data-outcome=no_answer]").click()
    expect(page.locator(".cb-item").first.locator(".cb-history")).to_contain_text("无人接听")
    page.locator(".cb-item").first.locator(".cb-undo").click()
    expect(page.locator(".cb-item").first.locator(".cb-history")).to_have_count(0)
    page.locator(".cb-item").first.locator("button[data-outcome=no_answer]").click()
    expect(page.locator(".cb-waiting")).to_be_visible()

    page.goto(live_server.base + "/#/")
    expect(page.locator("#home-unsent")).to_have_attribute("data-count", "4")
    expect(page.locator("#home-overdue")).to_have_attribute("data-count", "0")
    expect(page.locator(".home-incident .tag.drill")).to_be_visible()  # offline: what the device knew
    page.screenshot(path=artifacts / "story-home-offline.png", full_page=True)

    context.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    expect(page.locator("#home-unsent")).to_have_attribute("data-count", "0", timeout=60000)
    stored = api(live_server, team, "lead", "GET", "/api/records", params={"incident_id": drill["id"]})[
        "items"
    ]
    assert {r["id"] for r in stored} == set(ids)  # every call counted under the drill
    callbacks = api(live_server, team, "lead", "GET", "/api/callbacks", params={"incident_id": drill["id"]})
    assert len(callbacks["items"]) == 3
    tried = next(c for c in callbacks["items"] if c["caller_name"] == "孙先生")
    assert tried["urgent"] and [h["outcome"] for h in tried["history"]] == ["no_answer"]
    page.goto(live_server.base + "/#/callbacks")
    expect(page.locator(".cb-item[data-local='0']")).to_have_count(3)
    expect(page.locator(".cb-item").first.locator(".cb-history")).to_contain_text("无人接听")
    page.screenshot(path=artifacts / "story-callbacks-online.png", full_page=True)
    api(
        live_server,
        team,
        "lead",
        "POST",
        f"/api/incidents/{drill['id']}/resolve",
        json={"anyway": True, "reason": "演练结束"},
    )
    # The drill's review counts every call recorded offline.
    _, lead = page_for(live_server, new_context, team, "lead")
    lead.goto(f"{live_server.base}/#/incidents/{drill['id']}/review")
    expect(lead.locator("main")).to_contain_text("演练 DRILL")
    expect(lead.locator("main")).to_contain_text("4（本机 4 · 纸质 0）")
    lead.screenshot(path=artifacts / "story-review-drill.png", full_page=True)


def test_a_manager_acknowledges_from_the_inbox(live_server, team, new_context, artifacts):
    incident = api(live_server, team, "lead", "POST", "/api/incidents", json={"playbook": "system-failure"})
    _, page = page_for(live_server, new_context, team, "manager")
    page.goto(live_server.base + "/#/inbox")
    button = page.locator(f".inbox-ack[data-incident='{incident['id']}']").first
    expect(button).to_be_visible()
    page.screenshot(path=artifacts / "story-inbox-ack.png", full_page=True)
    button.click()
    expect(page.locator(".toast").last).to_contain_text("已确认")
    detail = api(live_server, team, "lead", "GET", f"/api/incidents/{incident['id']}")
    assert detail["status"] == "acknowledged" and detail["acknowledged_by"]["id"]
    expect(page.locator(f".inbox-ack[data-incident='{incident['id']}']")).to_have_count(0)

    # The lead resolves: the checklist says what is open, and "resolve anyway" needs the reason.
    _, lead = page_for(live_server, new_context, team, "lead")
    lead.goto(f"{live_server.base}/#/incidents/{incident['id']}")
    lead.click("button.resolve")
    expect(lead.locator(".resolve-check [data-left=steps]")).to_be_visible()
    expect(lead.locator("#inc-resolve-anyway")).to_be_disabled()
    lead.fill(".resolve-check textarea[name=reason]", "运维已恢复，剩余步骤复盘时补")
    lead.screenshot(path=artifacts / "story-resolve-check.png", full_page=True)
    lead.click("#inc-resolve-anyway")
    expect(lead.locator(".status-resolved").first).to_be_visible()
    events = api(live_server, team, "lead", "GET", f"/api/incidents/{incident['id']}/timeline")["events"]
    resolved = [e for e in events if e["kind"] == "resolved"][0]["data"]
    assert resolved["anyway"] and resolved["reason"] == "运维已恢复，剩余步骤复盘时补"
    lead.goto(f"{live_server.base}/#/incidents/{incident['id']}/review")
    expect(lead.locator("h1")).to_be_visible()
    lead.screenshot(path=artifacts / "story-review.png", full_page=True)


def test_the_exported_csv_parsed_back_keeps_phone_numbers_and_dates(live_server, team, new_context, tmp_path):
    called = datetime(2026, 11, 20, 2, 5, tzinfo=UTC)  # 10:05 in Shanghai
    recs = []
    for name, phone, promised in (
        ("手机", "13712345678", True),
        ("座机", "010-88886666", False),
        ("国际", "+86 137 1234 5678", False),
    ):
        data = {
            "called_at": called.isoformat(),
            "caller_name": name,
            "phone": phone,
            "category": "order_billing",
            "urgency": "normal",
            "details": "查询订单",
            "callback_promised": promised,
        }
        if promised:
            data["callback_due"] = (called + timedelta(hours=2)).isoformat()
        recs.append(
            {
                "id": str(uuid.uuid4()),
                "form": "call-record",
                "form_version": 1,
                "rev": 1,
                "captured_at": called.isoformat(),
                "data": data,
            }
        )
    api(live_server, team, "agent", "POST", "/api/sync", json={"device_id": "csv", "records": recs})
    _, page = page_for(live_server, new_context, team, "lead", accept_downloads=True)
    page.goto(live_server.base + "/#/recovery")
    expect(page.locator("#re-csv")).to_be_visible()
    with page.expect_download() as info:
        page.click("#re-csv")
    download = info.value
    assert download.suggested_filename.startswith(
        "call-record-records-20"
    ) and download.suggested_filename.endswith(".csv")
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    rows = list(csv.DictReader(io.StringIO(path.read_bytes().decode("utf-8-sig"))))
    by_name = {r["来电人姓名 Caller name"]: r for r in rows}
    # What a spreadsheet shows: the apostrophe says "text" and is not part of the value.
    shown = {name: r["联系电话 Phone number"].removeprefix("'") for name, r in by_name.items()}
    assert {k: shown[k] for k in ("手机", "座机", "国际")} == {
        "手机": "13712345678",
        "座机": "010-88886666",
        "国际": "+86 137 1234 5678",
    }
    assert all(by_name[k]["联系电话 Phone number"].startswith("'") for k in ("手机", "座机", "国际"))
    assert by_name["手机"]["来电时间 Time of call"] == "2026-11-20 10:05:00"
    assert by_name["手机"]["最晚回拨时间 Call back by"] == "2026-11-20 12:05:00"
    assert by_name["座机"]["最晚回拨时间 Call back by"] == ""
    # The device's own export of what it has not sent follows the same rules.
    device = page.evaluate("""async () => {
      const sync = await import("/static/sync.js");
      return sync.toCsv([{ id: "r1", status: "queued", form: "call-record", formVersion: 1, rev: 1,
        capturedAt: "2026-11-20T02:06:00.000Z", data: { phone: "13712345678", caller_name: "=cmd()",
        called_at: "2026-11-20T02:05:00.000Z", callback_promised: false,
        callback_due: "2026-11-20T04:05:00.000Z" } }]);
    }""")
    [row] = list(csv.DictReader(io.StringIO(device.removeprefix("\ufeff"))))
    assert row["phone"] == "'13712345678" and row["caller_name"] == "'=cmd()"
    assert row["called_at"] == "2026-11-20 10:05:00" and row["capturedAt"] == "2026-11-20 10:06:00"
    assert row["callback_due"] == ""
