"""The CRM connector in headless Chromium against the CRM stand-in: an admin sets it up and previews the exact
request for a record, switches it on; a lead dry-runs and then pushes an incident's records, and watches them
reach the CRM (one refused with its reason). The real server runs its own sender (worker) here."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import expect

from backend import crm

from .crm_standin import StandIn, serve
from .servers import ServerProcess

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server of its own: the CRM stand-in listens on 127.0.0.1, which only OUTAGE_OUTBOUND_ALLOW admits."""
    proc = ServerProcess(tmp_path_factory.mktemp("crm-live"), OUTAGE_OUTBOUND_ALLOW="127.0.0.1")
    proc.cli("demo", "--site", "crmsite", "--password", proc.PASSWORD)  # one process for all four users
    names = {role: f"crmsite-{role}" for role in ("agent", "lead", "manager", "admin")}
    proc.start()
    proc.names = names  # type: ignore[attr-defined]
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def standin():
    yield from serve(StandIn())


def login(server, role):
    body = httpx.post(
        f"{server.base}/api/auth/login",
        json={"username": server.names[role], "password": server.PASSWORD},
        timeout=10,
    ).json()
    return body


def api(server, role, method, path, **kwargs):
    token = login(server, role)["token"]
    response = httpx.request(
        method, server.base + path, headers={"Authorization": f"Bearer {token}"}, timeout=15, **kwargs
    )
    assert response.status_code < 400, response.text
    return response.json()


def page_for(server, new_context, role, locale="zh-CN"):
    body = login(server, role)
    context = new_context(locale=locale)
    context.add_init_script(
        f"localStorage.setItem('od.token', {json.dumps(body['token'])});"
        f"localStorage.setItem('od.user', {json.dumps(json.dumps(body['user']))});"
        f"localStorage.setItem('od.lang', {json.dumps(locale)});"
    )
    return context.new_page()


def test_setup_with_preview_then_push_an_incidents_records(server, standin, new_context, artifacts):
    incident = api(server, "lead", "POST", "/api/incidents", json={"playbook": "system-failure"})
    now = datetime.now(UTC)
    records = []
    for i, name in enumerate(["陈一", "林二", "黄三"]):
        records.append(
            {
                "id": str(uuid.uuid4()),
                "form": "call-record",
                "form_version": 1,
                "rev": 1,
                "captured_at": now.isoformat(),
                "incident_id": incident["id"],
                "data": {
                    "called_at": (now - timedelta(minutes=30 - i)).isoformat(),
                    "caller_name": name,
                    "phone": f"1390000000{i}",
                    "category": "complaint",
                    "urgency": "urgent",
                    "details": "停电期间无法下单",
                    "callback_promised": False,
                },
            }
        )
    api(server, "agent", "POST", "/api/sync", json={"device_id": "d1", "cursor": None, "records": records})
    standin.faults = {crm.idempotency_key(records[2]["id"], 1): ["400"]}

    # the admin sets it up and previews the request for the newest call record
    page = page_for(server, new_context, "admin")
    page.goto(f"{server.base}/#/crm")
    page.fill("#crm-url", standin.url)
    page.select_option("#crm-auth", "header")
    page.fill("#crm-header-name", "X-Api-Key")
    page.fill("#crm-secret", standin.secret)
    page.click("#crm-example")
    page.fill("#crm-ref-path", "$.data.case_no")
    page.click("#crm-preview")
    shown = page.locator("#crm-request")
    expect(shown).to_contain_text(f"POST {standin.url}")
    expect(shown).to_contain_text("X-Api-Key: ••••ey")
    expect(shown).to_contain_text(re.compile(r'"name": "(陈一|林二|黄三)"'))  # one of the site's records
    expect(shown).to_contain_text('"priority": "P1"')
    assert standin.secret not in shown.inner_text()
    page.screenshot(path=artifacts / "crm-setup-preview.png", full_page=True)
    expect(page.locator(".crm-dry, .crm-preview")).to_have_count(1)
    page.check("#crm-enabled")
    page.click("#crm-save")
    expect(page.locator(".toast")).to_contain_text("已保存并启用")
    stored = api(server, "admin", "GET", "/api/crm/connector")
    assert stored["enabled"] and stored["has_secret"] and "secret" not in stored
    assert standin.requests == []  # a preview sends nothing

    # the lead: dry run, then push the incident's pending records
    page = page_for(server, new_context, "lead")
    page.goto(f"{server.base}/#/crm/push")
    expect(page.locator("#cp-incident")).to_have_value(str(incident["id"]))
    page.click("#cp-dry")
    expect(page.locator(".crm-dry h2")).to_have_text("将发送 3 条记录")
    expect(page.locator(".crm-dry summary")).to_have_count(3)
    expect(page.locator(".crm-dry summary").first).to_contain_text("1390000000")
    assert standin.requests == []
    page.screenshot(path=artifacts / "crm-push-dry-run.png", full_page=True)
    page.click("#cp-push")
    expect(page.locator("#cp-result")).to_contain_text("已排队 3 条记录待推送")
    expect(page.locator(".crm-delivery[data-state=sent]")).to_have_count(2, timeout=20000)
    refused = page.locator(".crm-delivery[data-state=gaveUp]")
    expect(refused).to_have_count(1)
    expect(refused.locator(".crm-reason")).to_have_text("CRM 返回 400：phone: not a valid number")
    expect(page.locator(".toast")).to_have_count(0, timeout=8000)
    page.screenshot(path=artifacts / "crm-push-done.png", full_page=True)
    assert len(standin.entries) == 2 and not standin.refused
    for r in records[:2]:
        got = api(server, "lead", "GET", f"/api/records/{r['id']}")
        assert got["reentry_status"] == "reentered"
        assert got["crm_ref"] == standin.entries[crm.idempotency_key(r["id"], 1)].ref

    # the same screen in English, for the lead on a phone
    page = page_for(server, new_context, "lead", locale="en")
    page.goto(f"{server.base}/#/crm/push")
    expect(page.locator("#cp-counts")).to_contain_text("In the CRM 2")
    expect(page.locator("#cp-counts")).to_contain_text("Gave up 1")
    expect(page.locator(".crm-reason")).to_have_text("The CRM answered 400: phone: not a valid number")
    page.screenshot(path=artifacts / "crm-push-en.png", full_page=True)
