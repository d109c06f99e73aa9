"""After recovery in headless Chromium: transcribing a paper sheet (the same row twice → one record),
callbacks recorded offline and synced, CRM re-entry with the CSV download, the review and its print view."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from backend.printing import make_sheet_id, paper_record_id

from .browsing import api, new_team, page_for

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def team(live_server):
    return new_team(live_server, "recov")


def wait_until(check, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError("condition not met in time")


def call_record(name, due, promised=True, **extra):
    now = datetime.now(UTC)
    data = {
        "called_at": (now - timedelta(hours=3)).isoformat(),
        "caller_name": name,
        "phone": "021-5555 0101",
        "category": "fault_report",
        "urgency": "urgent",
        "details": "停电后宽带一直断",
        "callback_promised": promised,
    }
    if promised:
        data["callback_due"] = due.isoformat()
    return {
        "id": str(uuid.uuid4()),
        "form": "call-record",
        "form_version": 1,
        "rev": 1,
        "captured_at": now.isoformat(),
        "data": {**data, **extra},
    }


def test_transcribe_a_paper_sheet_row_twice_makes_one_record(live_server, team, new_context, artifacts):
    [sheet] = api(live_server, team, "agent", "POST", "/api/print/sheets", json={"form": "call-record"})
    sheet_id = sheet["sheet_id"]
    incident = api(live_server, team, "lead", "POST", "/api/incidents", json={"playbook": "power-outage"})
    _, page = page_for(live_server, new_context, team, "agent")
    page.goto(f"{live_server.base}/#/transcribe")
    expect(page.locator("#tr-incident")).to_have_value(
        str(incident["id"])
    )  # the open incident is preselected
    # typed the way tired people type it: lower case, spaces
    page.fill("#sheet-id", sheet_id.lower().replace("-", " "))
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"#/transcribe/call-record/" + sheet_id + "/1$"))
    expect(page.locator(".tr-row")).to_have_text("第 1 行")

    def fill_row(name):
        page.fill("input[name=called_at]", "2026-11-23T10:05")
        page.fill("input[name=caller_name]", name)
        page.fill("input[name=phone]", "13912345678")
        page.locator(".field-choice[data-field=category] label", has_text="故障报修").click()
        page.locator("[data-field=urgency] label", has_text="一般").click()
        page.fill("textarea[name=details]", "电表箱跳闸，要求上门")
        page.locator("[data-field=callback_promised] label", has_text="否").click()

    fill_row("孙七")
    page.screenshot(path=artifacts / "transcribe-row.png", full_page=True)
    page.click("#save-row")
    expect(page.locator(".tr-row")).to_have_text("第 2 行")
    # the date and time of the previous row carry over to the next
    assert page.input_value("input[name=called_at]") == "2026-11-23T10:05"
    # back to row 1 and save it again unchanged: no second record
    page.click(".tr-done a:text-is('1')")
    expect(page.locator(".tr-row")).to_have_text("第 1 行")
    expect(page.locator("input[name=caller_name]")).to_have_value("孙七")
    page.click("#save-row")
    expect(page.locator(".toast").last).to_contain_text("内容相同")
    # a different row 1 asks which to keep
    page.click(".tr-done a:text-is('1')")
    expect(page.locator(".tr-row")).to_have_text("第 1 行")
    expect(page.locator("input[name=caller_name]")).to_have_value("孙七")
    page.fill("input[name=caller_name]", "孙八")
    page.click("#save-row")
    expect(page.locator(".tr-conflict .error")).to_contain_text("不同")
    page.screenshot(path=artifacts / "transcribe-conflict.png", full_page=True)
    page.click(".tr-conflict button:text('保留原来的')")

    rid = str(paper_record_id(team["site"], sheet_id, 1))
    records = wait_until(
        lambda: api(live_server, team, "lead", "GET", f"/api/records?sheet_id={sheet_id}")["items"]
    )
    assert [
        (r["id"], r["sheet_row"], r["source"], r["data"]["caller_name"], r["incident_id"]) for r in records
    ] == [(rid, 1, "paper", "孙七", incident["id"])]


def test_transcribe_offline_a_sheet_printed_offline(live_server, team, new_context, artifacts):
    sheet_id = make_sheet_id(datetime.now(UTC).strftime("%y%m%d"), origin="device")  # printed with no server
    context, page = page_for(live_server, new_context, team, "agent")
    page.goto(f"{live_server.base}/#/transcribe")
    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=30000)
    page.wait_for_function("localStorage.getItem('od.content') !== null", timeout=30000)
    context.set_offline(True)
    page.reload()
    page.fill("#sheet-id", sheet_id)
    page.locator(".tr-forms label", has_text="手工记录表").click()
    page.click("button[type=submit]")
    expect(page.locator(".tr-row")).to_have_text("第 1 行")
    page.fill("input[name=called_at]", "2026-11-23T11:40")
    page.fill("input[name=caller_name]", "离线客户")
    page.fill("input[name=phone]", "13700000000")
    page.locator("[data-field=category] label", has_text="其他").click()
    page.locator("[data-field=urgency] label", has_text="一般").click()
    page.fill("textarea[name=details]", "停电时记在纸上")
    page.locator("[data-field=callback_promised] label", has_text="否").click()
    page.click("#save-row")
    expect(page.locator(".tr-row")).to_have_text("第 2 行")
    page.screenshot(path=artifacts / "transcribe-offline.png")
    assert api(live_server, team, "lead", "GET", f"/api/records?sheet_id={sheet_id}")["items"] == []
    context.set_offline(False)
    page.evaluate("import('/static/events.js').then((e) => e.emit('online'))")
    records = wait_until(
        lambda: api(live_server, team, "lead", "GET", f"/api/records?sheet_id={sheet_id}")["items"]
    )
    assert [(r["id"], r["source"]) for r in records] == [
        (str(paper_record_id(team["site"], sheet_id, 1)), "paper")
    ]
    known = api(live_server, team, "agent", "GET", f"/api/print/sheets/{sheet_id}")
    assert known["known"] is True and known["origin"] == "device" and known["form"] == "call-record"


def test_callbacks_offline_then_synced_and_assigned(live_server, team, new_context, artifacts):
    now = datetime.now(UTC)
    late, soon = (
        call_record("周先生", now - timedelta(minutes=30)),
        call_record("吴女士", now + timedelta(hours=1)),
    )
    results = api(
        live_server,
        team,
        "agent",
        "POST",
        "/api/sync",
        json={"device_id": "seed", "cursor": None, "records": [late, soon]},
    )["results"]
    assert {r["status"] for r in results} == {"created"}
    context, page = page_for(live_server, new_context, team, "agent")
    page.goto(f"{live_server.base}/#/callbacks")
    item = page.locator(f"[data-callback='{late['id']}']")
    expect(item).to_contain_text("周先生")
    expect(item).to_have_class(re.compile("cb-overdue"))
    assert item.locator("a.cb-phone").get_attribute("href") == "tel:02155550101"
    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=30000)
    page.screenshot(path=artifacts / "callbacks-agent.png", full_page=True)

    context.set_offline(True)
    page.reload()
    expect(page.locator(f"[data-callback='{late['id']}']")).to_contain_text("周先生")  # the saved list
    page.locator(f"[data-callback='{late['id']}'] button[data-outcome=no_answer]").click()
    expect(page.locator(".cb-waiting")).to_contain_text("1")
    page.screenshot(path=artifacts / "callbacks-offline.png", full_page=True)
    context.set_offline(False)
    page.evaluate("import('/static/events.js').then((e) => e.emit('online'))")
    listed = wait_until(
        lambda: [
            c
            for c in api(live_server, team, "lead", "GET", "/api/callbacks")["items"]
            if c["id"] == late["id"] and c["attempts"] == 1
        ]
    )
    assert listed[0]["status"] == "trying" and listed[0]["last_outcome"] == "no_answer"

    # the lead sees everyone's and gives one to the manager
    _, lead = page_for(live_server, new_context, team, "lead")
    lead.goto(f"{live_server.base}/#/callbacks")
    row = lead.locator(f"[data-callback='{soon['id']}']")
    expect(row).to_contain_text("吴女士")
    manager_id = api(live_server, team, "lead", "GET", "/api/users?role=manager")[0]["id"]
    row.locator(".cb-assign select").select_option(str(manager_id))
    expect(lead.locator(".toast").last).to_contain_text("已改派")
    lead.screenshot(path=artifacts / "callbacks-lead.png", full_page=True)
    mine = api(live_server, team, "manager", "GET", "/api/callbacks?mine=true")["items"]
    assert [c["id"] for c in mine] == [soon["id"]]

    # the printed callback list
    lead.goto(f"{live_server.base}/#/print/callbacks/all")
    lead.wait_for_selector(".print-pages[data-ready]")
    lead.emulate_media(media="print")
    lead.pdf(
        path=str(artifacts / "print-callbacks.pdf"),
        format="A4",
        print_background=True,
        prefer_css_page_size=True,
    )
    text = subprocess.run(
        ["pdftotext", str(artifacts / "print-callbacks.pdf"), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "回拨清单" in text and "Callback list" in text and "周先生" in text and "吴女士" in text


def test_reentry_marks_and_csv_download(live_server, team, new_context, artifacts, tmp_path):
    rec = call_record("郑先生", datetime.now(UTC), promised=False)
    api(
        live_server,
        team,
        "agent",
        "POST",
        "/api/sync",
        json={"device_id": "seed2", "cursor": None, "records": [rec]},
    )
    _, page = page_for(live_server, new_context, team, "lead")
    page.goto(f"{live_server.base}/#/recovery")
    item = page.locator(f"[data-record='{rec['id']}']")
    expect(item).to_contain_text("郑先生")
    before = int(page.locator(".re-count[data-status=reentered] b").inner_text())
    page.screenshot(path=artifacts / "reentry.png", full_page=True)
    item.locator(".re-pick").check()
    page.click("#re-mark")  # no CRM reference yet: refused, nothing changes
    expect(page.locator(".toast").last).to_contain_text("系统单号")
    item.locator(".re-ref").fill("CRM-2026-0042")
    item.locator(".re-pick").check()
    page.click("#re-mark")
    expect(page.locator(".re-count[data-status=reentered] b")).to_have_text(str(before + 1))
    stored = api(live_server, team, "lead", "GET", f"/api/records/{rec['id']}")
    assert stored["reentry_status"] == "reentered" and stored["crm_ref"] == "CRM-2026-0042"
    with page.expect_download() as download:
        page.click("#re-csv")
    path = tmp_path / "export.csv"
    download.value.save_as(path)
    raw = path.read_bytes()
    assert (
        raw.startswith(b"\xef\xbb\xbf")
        and "郑先生" in raw.decode("utf-8-sig")
        and "CRM-2026-0042" in raw.decode("utf-8-sig")
    )


def test_review_page_and_printed_report(live_server, team, new_context, artifacts):
    incident = api(
        live_server,
        team,
        "lead",
        "POST",
        "/api/incidents",
        json={"playbook": "system-failure", "note": "CRM 登录不上"},
    )
    api(
        live_server, team, "lead", "POST", f"/api/incidents/{incident['id']}/resolve", json={"note": "已恢复"}
    )
    _, page = page_for(live_server, new_context, team, "lead")
    page.goto(f"{live_server.base}/#/incidents/{incident['id']}")
    page.click(f".inc-review a[href='#/incidents/{incident['id']}/review']")  # from the incident screen
    expect(page.locator("h1")).to_contain_text("事件复盘")
    expect(page.locator(".rv-figures")).to_contain_text("5分钟规则")
    page.fill("#rv-cause", "机房交换机掉电")
    page.fill("#rv-actions", "交换机接入UPS；每季度演练一次")
    page.click("button[type=submit]")
    expect(page.locator(".toast").last).to_contain_text("复盘已保存")
    page.screenshot(path=artifacts / "review.png", full_page=True)
    report = api(live_server, team, "lead", "GET", f"/api/incidents/{incident['id']}/report")
    assert report["review"]["cause"] == "机房交换机掉电"

    page.goto(f"{live_server.base}/#/print/incident/{incident['id']}/report")
    page.wait_for_selector(".print-pages[data-ready]")
    page.emulate_media(media="print")
    pdf = artifacts / "print-review.pdf"
    page.pdf(path=str(pdf), format="A4", print_background=True, prefer_css_page_size=True)
    text = re.sub(
        r"\s+",
        "",
        subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout,
    )
    for expected in (
        "事件复盘报告",
        "Post-incidentreview",
        "机房交换机掉电",
        "5分钟规则",
        "5-minuterule",
        "Timeline",
    ):
        assert expected in text, expected
    subprocess.run(
        [
            "pdftoppm",
            "-png",
            "-r",
            "60",
            "-f",
            "1",
            "-l",
            "1",
            "-singlefile",
            str(pdf),
            str(artifacts / "print-review-page1"),
        ],
        check=True,
    )
