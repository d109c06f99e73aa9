"""The incident as one story, through the API on SQLite and PostgreSQL with a manual clock: records synced
without an incident are attached to the one running when the call happened (two running: unattached and
listed for the lead, who attaches them); the review figures of a scripted outage against hand-computed values;
drill figures never open or escalate a real incident; resolving shows what is left and needs a reason to go
anyway; callback cards carry the call and its attempts, with undo; the CSV opens right in a spreadsheet."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from backend import escalation
from backend.clock import ManualClock
from backend.printing import make_sheet_id, paper_record_id

T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
async def clock(client, db):
    """One manual clock for the API and the escalation engine (run by hand, not by the workers)."""
    manual = ManualClock(at(0))
    client.app.state.clock = manual
    yield SimpleNamespace(
        clock=manual,
        state=SimpleNamespace(settings=client.app.state.settings, sessionmaker=db, clock=manual),
        to=lambda minutes: setattr(manual, "at", at(minutes)),
    )
    client.app.state.clock = None


def call(
    name, *, called, promised=False, due=None, urgency="normal", phone="13800000001", category="order_billing"
):
    data = {
        "called_at": called.isoformat(),
        "caller_name": name,
        "phone": phone,
        "category": category,
        "urgency": urgency,
        "details": f"{name} 的来电",
        "callback_promised": promised,
    }
    if promised:
        data["callback_due"] = due.isoformat()
    return data


def record(data, *, captured, incident_id=None, **extra):
    return {
        "id": str(uuid.uuid4()),
        "form": "call-record",
        "form_version": 1,
        "rev": 1,
        "captured_at": captured.isoformat(),
        "data": data,
        "incident_id": incident_id,
        **extra,
    }


async def sync(client, site, records, role="agent", device=None):
    body = {"device_id": f"dev-{role}", "cursor": None, "records": records}
    if device is not None:
        body["device"] = device
    response = await client.post("/api/sync", json=body, headers=site.headers(role))
    assert response.status_code == 200, response.text
    return response.json()["results"]


async def declare(client, site, playbook, drill=None):
    body = {"playbook": playbook, **({"drill": {"time_scale": drill}} if drill else {})}
    response = await client.post("/api/incidents", json=body, headers=site.headers("lead"))
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def get(client, site, path, role="lead", **params):
    response = await client.get(path, params=params, headers=site.headers(role))
    assert response.status_code == 200, response.text
    return response.json()


async def attempt(client, site, callback_id, outcome, when, role="agent"):
    item = {
        "id": str(uuid.uuid4()),
        "callback_id": callback_id,
        "outcome": outcome,
        "attempted_at": when.isoformat(),
    }
    response = await client.post(
        "/api/callbacks/attempts", json={"attempts": [item]}, headers=site.headers(role)
    )
    assert [r["status"] for r in response.json()["results"]] == ["created"], response.text
    return item["id"]


# ---------------------------------------------------------------- records belong to their incident


async def test_the_review_of_a_scripted_outage_counts_every_call(client, site, clock):
    clock.to(3)
    incident = await declare(client, site, "system-failure")
    for minute in (8, 13):  # rungs after 5 and 10 minutes
        clock.to(minute)
        assert await escalation.fire_due(clock.state) == 1
    clock.to(20)
    assert (
        await client.post(f"/api/incidents/{incident}/ack", headers=site.headers("manager"))
    ).status_code == 200
    clock.to(90)
    assert (
        await client.post(f"/api/incidents/{incident}/recover", headers=site.headers("lead"))
    ).status_code == 200

    # Four calls taken offline (the device knew of no incident), synced after recovery; two promise callbacks.
    clock.to(91)
    a = record(
        call("甲", called=at(5), promised=True, due=at(125), urgency="urgent", category="complaint"),
        captured=at(5),
    )
    b = record(call("乙", called=at(10), promised=True, due=at(130)), captured=at(10))
    c = record(call("丙", called=at(15)), captured=at(15))
    d = record(call("丁", called=at(25)), captured=at(25))
    before = record(call("早", called=at(-30)), captured=at(-30))  # before the incident: not its call
    assert {r["status"] for r in await sync(client, site, [a, b, c, d, before])} == {"created"}
    # A paper row typed in after recovery: the call was at 02:30, the typing at 03:40.
    clock.to(100)
    sheet_id = make_sheet_id("261120")
    e = record(call("戊", called=at(30), promised=True, due=at(140)), captured=at(100), source="paper")
    e.update(id=str(paper_record_id(site.slug, sheet_id, 1)), sheet_id=sheet_id, sheet_row=1)
    assert (await sync(client, site, [e]))[0]["status"] == "created"

    attached = await get(client, site, "/api/records", incident_id=incident)
    assert {r["data"]["caller_name"] for r in attached["items"]} == {"甲", "乙", "丙", "丁", "戊"}
    callbacks = await get(client, site, "/api/callbacks", status="all", incident_id=incident)
    assert {cb["caller_name"] for cb in callbacks["items"]} == {"甲", "乙", "戊"}

    await attempt(client, site, a["id"], "reached", at(95))  # on time (due 125)
    await attempt(client, site, b["id"], "no_answer", at(100))
    await attempt(client, site, b["id"], "resolved", at(160))  # late (due 130)
    await attempt(client, site, e["id"], "no_answer", at(110))  # still open; overdue after 140
    for status, ids in (("reentered", [a, b]), ("closed", [c])):
        body = {"status": status, "crm_ref": "CRM-9", "records": [{"id": r["id"]} for r in ids]}
        assert (
            await client.post("/api/recovery/reentry", json=body, headers=site.headers("lead"))
        ).status_code == 200

    clock.to(120)
    left = await get(client, site, f"/api/incidents/{incident}/open")
    assert left["callbacks"] == 1 and left["anything"] and left["steps"]  # 戊 still open; steps unticked
    refused = await client.post(
        f"/api/incidents/{incident}/resolve", json={"anyway": True}, headers=site.headers("lead")
    )
    assert refused.status_code == 422 and refused.json()["errors"] == {"reason": "required"}
    done = await client.post(
        f"/api/incidents/{incident}/resolve",
        json={"anyway": True, "reason": "回拨交给晚班"},
        headers=site.headers("lead"),
    )
    assert done.status_code == 200 and done.json()["status"] == "resolved"

    clock.to(170)
    report = await get(client, site, f"/api/incidents/{incident}/report")
    resolved = [e for e in report["timeline"] if e["kind"] == "resolved"][0]["data"]
    assert resolved["anyway"] is True and resolved["reason"] == "回拨交给晚班"
    assert resolved["left_open"]["callbacks"] == 1
    # by hand: five calls (4 offline + 1 paper), three promises
    assert report["records"] == {
        "total": 5,
        "by_form": {"call-record": 5},
        "by_source": {"device": 4, "paper": 1},
        "promised": 3,
    }
    # 甲 on time (95 ≤ 125), 乙 late (160 > 130), 戊 open and overdue (170 > 140)
    assert report["callbacks"] == {
        "promised": 3,
        "on_time": 1,
        "late": 1,
        "open": 1,
        "overdue": 1,
        "failed": 0,
    }
    assert {k: report["reentry"][k] for k in ("pending", "reentered", "closed", "total")} == {
        "pending": 2,
        "reentered": 2,
        "closed": 1,
        "total": 5,
    }
    # declared 02:03, recovered 03:30: 87 minutes; rungs fired 02:08 and 02:13, acknowledged 02:20
    assert (
        report["outage"]["seconds"] == 87 * 60 and report["outage"]["seconds_declared_to_recovery"] == 87 * 60
    )
    assert [(r["rung"], r["status"], r["seconds_fire_to_ack"]) for r in report["escalations"]] == [
        (0, "fired", 720.0),
        (1, "fired", 420.0),
        (2, "stopped", None),
    ]
    assert report["acknowledgement"]["seconds_from_declared"] == 17 * 60
    assert report["first_report"]["seconds"] == 0.0


async def test_two_running_incidents_leave_records_for_the_lead_to_attach(client, site, clock):
    clock.to(0)
    first = await declare(client, site, "system-failure")
    clock.to(2)
    second = await declare(client, site, "power-outage")
    clock.to(10)
    loose = record(call("两可", called=at(5), promised=True, due=at(125)), captured=at(5))
    named = record(call("设备知道", called=at(6)), captured=at(6), incident_id=first)
    early = record(call("只有一个", called=at(1)), captured=at(1))  # only the first was running at 02:01
    await sync(client, site, [loose, named, early])
    by_name = {r["data"]["caller_name"]: r for r in (await get(client, site, "/api/records"))["items"]}
    assert by_name["两可"]["incident_id"] is None
    assert by_name["设备知道"]["incident_id"] == first and by_name["只有一个"]["incident_id"] == first

    assert (await client.get("/api/records/unattached", headers=site.headers("agent"))).status_code == 403
    [item] = (await get(client, site, "/api/records/unattached"))["items"]
    assert item["record"]["id"] == loose["id"] and {c["id"] for c in item["candidates"]} == {first, second}

    body = {"attach": [loose["id"], str(uuid.uuid4())]}
    answer = await get_post(client, site, f"/api/incidents/{second}/records", body)
    assert answer["attached"] == [loose["id"]] and list(answer["errors"].values()) == [
        "no such record at your site"
    ]
    assert (await get(client, site, f"/api/records/{loose['id']}"))["incident_id"] == second
    [callback] = (await get(client, site, "/api/callbacks", incident_id=second))["items"]
    assert callback["id"] == loose["id"]
    assert (await get(client, site, "/api/records/unattached"))["items"] == []
    events = (await get(client, site, f"/api/incidents/{second}/timeline"))["events"]
    assert [e["data"]["records"] for e in events if e["kind"] == "records_attached"] == [[loose["id"]]]

    answer = await get_post(client, site, f"/api/incidents/{second}/records", {"detach": [loose["id"]]})
    assert answer["detached"] == [loose["id"]]
    assert (await get(client, site, f"/api/records/{loose['id']}"))["incident_id"] is None
    audit = await get(client, site, "/api/audit", role="admin")
    assert [e["action"] for e in audit["entries"] if e["action"] == "incident.records"] == [
        "incident.records"
    ] * 2


async def get_post(client, site, path, body, role="lead"):
    response = await client.post(path, json=body, headers=site.headers(role))
    assert response.status_code in (200, 201), response.text
    return response.json()


# ---------------------------------------------------------------- drills never touch reality


async def test_drill_figures_never_open_or_escalate_a_real_incident(client, site, clock):
    clock.to(0)
    assert (
        await client.post(
            "/api/metrics",
            json={"answer_rate": 62, "queue_length": 45, "drill": True},
            headers=site.headers("lead"),
        )
    ).status_code == 422
    drill = await declare(client, site, "system-failure", drill=60)
    raised = await get_post(client, site, "/api/metrics", {"answer_rate": 62, "queue_length": 45})
    assert raised["drill_id"] == drill and raised["level"] == "red" and raised["tiers_called"] == [1, 2, 3]
    surge = raised["incident_id"]
    opened = await get(client, site, f"/api/incidents/{surge}")
    assert opened["drill"] is True and opened["time_scale"] == 60 and opened["source"] == "metrics"
    assert opened["declared_by"] is None  # opened by the figures, not credited to the lead
    level = await get(client, site, "/api/metrics/level")
    assert level["level"] == "normal" and level["incident_id"] is None
    assert level["drill"]["level"] == "red" and level["drill"]["drill_id"] == drill

    # Every alert about it is drill-marked; the rungs that fire are the drill's only.
    inbox = (await get(client, site, "/api/inbox", role="manager"))["items"]
    alerts = [n for n in inbox if n["kind"] == "alert_level"]
    assert alerts and all(n["drill"] and n["title"]["zh-CN"].startswith("【演练】") for n in alerts)
    clock.to(2)  # a 60x drill: the surge ladder's 30- and 60-minute rungs are due after 30 s and 60 s
    assert await escalation.fire_due(clock.state) >= 1
    incidents = await get(client, site, "/api/incidents", status="all")
    assert all(i["drill"] for i in incidents), incidents

    # Back to normal: the surge incident the drill's figures opened closes, its pending rungs cancelled.
    lowered = await get_post(client, site, "/api/metrics", {"answer_rate": 95, "queue_length": 1})
    assert lowered["closed_incident_id"] == surge, str(lowered)
    assert (await get(client, site, f"/api/incidents/{surge}"))["status"] == "resolved"
    again = await get_post(client, site, "/api/metrics", {"answer_rate": 82, "queue_length": 20})
    second = again["incident_id"]
    assert second != surge and (await get(client, site, f"/api/incidents/{second}"))["drill"] is True

    # A real incident next to the drill: figures must say whose they are; real ones feed the real level.
    real = await declare(client, site, "power-outage")
    ambiguous = await client.post(
        "/api/metrics", json={"answer_rate": 70, "queue_length": 9}, headers=site.headers("lead")
    )
    assert ambiguous.status_code == 422 and ambiguous.json()["errors"] == {"drill": "required"}
    honest = await get_post(
        client, site, "/api/metrics", {"answer_rate": 96, "queue_length": 1, "drill": False}
    )
    assert honest["drill_id"] is None and honest["level"] == "normal" and honest["incident_id"] is None

    # The drill ends: what its level opened closes with it, and its level is gone.
    clock.to(5)
    await get_post(client, site, f"/api/incidents/{drill}/resolve", {"anyway": True, "reason": "演练结束"})
    closed = await get(client, site, f"/api/incidents/{second}")
    assert closed["status"] == "resolved" and "pending" not in {r["status"] for r in closed["ladder"]}
    assert (await get(client, site, "/api/metrics/level"))["drill"] is None
    assert (await get(client, site, f"/api/incidents/{real}"))["status"] == "open"


# ---------------------------------------------------------------- callbacks a tired agent can work


async def test_callback_cards_urgent_first_with_history_and_undo(client, site, clock):
    clock.to(0)
    normal = record(call("普通", called=at(1), promised=True, due=at(30)), captured=at(1))
    urgent = record(
        call("急", called=at(2), promised=True, due=at(90), urgency="urgent", category="complaint"),
        captured=at(2),
    )
    await sync(client, site, [normal, urgent])
    clock.to(45)
    cards = (await get(client, site, "/api/callbacks", role="agent"))["items"]
    assert [c["caller_name"] for c in cards] == ["急", "普通"]  # urgent first, though due later
    first, second = cards
    assert first["urgent"] and first["urgency_label"]["zh-CN"].startswith("紧急")
    assert first["category"] == "complaint" and first["category_label"]["zh-CN"] == "投诉"
    assert first["details"] == "急 的来电" and not first["overdue"]
    assert second["overdue"] and second["late_minutes"] == 15

    tried = await attempt(client, site, normal["id"], "no_answer", at(45))
    clock.to(45.5)
    card = next(
        c
        for c in (await get(client, site, "/api/callbacks", role="agent"))["items"]
        if c["id"] == normal["id"]
    )
    assert card["status"] == "trying" and [h["outcome"] for h in card["history"]] == ["no_answer"]
    assert card["history"][0]["by"]["id"] == site.users["agent"] and card["history"][0]["undo_until"]
    lead_view = next(
        c for c in (await get(client, site, "/api/callbacks"))["items"] if c["id"] == normal["id"]
    )
    assert lead_view["history"][0]["undo_until"] is None  # only its author may undo it
    assert (
        await client.delete(f"/api/callbacks/attempts/{tried}", headers=site.headers("lead"))
    ).status_code == 404
    undone = await client.delete(f"/api/callbacks/attempts/{tried}", headers=site.headers("agent"))
    assert undone.status_code == 200 and undone.json()["callback"]["status"] == "open"
    assert undone.json()["callback"]["attempts"] == 0

    late = await attempt(client, site, normal["id"], "reached", at(46))
    clock.to(47.5)  # more than a minute after the server got it
    too_late = await client.delete(f"/api/callbacks/attempts/{late}", headers=site.headers("agent"))
    assert too_late.status_code == 409 and too_late.headers["content-type"].startswith(
        "application/problem+json"
    )
    assert (await get(client, site, f"/api/records/{normal['id']}", role="agent"))["id"] == normal["id"]
    done = (await get(client, site, "/api/callbacks", role="agent", status="all"))["items"]
    assert next(c for c in done if c["id"] == normal["id"])["status"] == "done"


# ---------------------------------------------------------------- exports that open right in a spreadsheet


async def test_csv_keeps_phone_numbers_as_text_and_times_in_the_site_zone(client, site, clock):
    clock.to(0)
    recs = [
        record(call("手机", called=at(5), promised=True, due=at(125), phone="13712345678"), captured=at(6)),
        record(call("国际", called=at(7), phone="+86 137 1234 5678"), captured=at(8)),
        record(call('=HYPERLINK("x")', called=at(9), phone="010-88886666"), captured=at(10)),
    ]
    incident_log = {
        "id": str(uuid.uuid4()),
        "form": "incident-log",
        "form_version": 1,
        "rev": 1,
        "captured_at": at(3).isoformat(),
        "data": {
            "fault_type": "system-failure",
            "symptom": "CRM 无法登录",
            "started_at": at(0).isoformat(),
            "notified": "10:03 主管",
            "recovered_at": at(90).isoformat(),
            "actions": "重启应用服务器",
        },
    }
    assert {r["status"] for r in await sync(client, site, [*recs, incident_log])} == {"created"}
    counts = await get(client, site, "/api/recovery/counts", form="call-record")
    assert counts["total"] == 3 and counts["pending"] == 3  # the form filter, as the list shows
    assert (await get(client, site, "/api/recovery/counts"))["total"] == 4

    response = await client.get(
        "/api/recovery/export.csv", params={"form": "call-record"}, headers=site.headers("lead")
    )
    assert response.status_code == 200
    name = re.search(r'filename="([^"]+)"', response.headers["content-disposition"]).group(1)
    assert name == "call-record-records-20261120-1000.csv"
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    by_phone = {row["联系电话 Phone number"]: row for row in rows}
    # Excel and WPS take a leading apostrophe as "this is text": 137… stays digits, +86 is no formula.
    assert set(by_phone) == {"'13712345678", "'+86 137 1234 5678", "'010-88886666"}
    mobile = by_phone["'13712345678"]
    assert mobile["来电时间 Time of call"] == "2026-11-20 10:05:00"  # Asia/Shanghai wall clock, no offset
    assert mobile["最晚回拨时间 Call back by"] == "2026-11-20 12:05:00"
    assert mobile["记录时间 Captured at"] == "2026-11-20 10:06:00"
    assert by_phone["'+86 137 1234 5678"]["最晚回拨时间 Call back by"] == ""  # no callback promised
    assert by_phone["'010-88886666"]["来电人姓名 Caller name"] == '\'=HYPERLINK("x")'
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@")), value
