"""Incidents API: declare, permissions, notes, step ticks, status changes, frozen playbooks, alert levels,
inbox and push subscriptions. SQLite and PostgreSQL."""

from __future__ import annotations

import copy

import pytest

from backend.alerts import level_for

from .push_receiver import PushReceiver


async def declare(client, site, playbook="system-failure", role="lead", **extra):
    return await client.post(
        "/api/incidents", json={"playbook": playbook, **extra}, headers=site.headers(role)
    )


async def timeline_kinds(client, site, iid) -> list[str]:
    body = (await client.get(f"/api/incidents/{iid}/timeline", headers=site.headers("lead"))).json()
    return [e["kind"] for e in body["events"]]


async def test_declare_freezes_the_playbook_and_schedules_the_ladder(client, site):
    response = await declare(client, site, note="全部坐席登录不上")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "open" and body["drill"] is False and body["time_scale"] == 1
    assert body["playbook"] == "system-failure" and body["playbook_version"] == 1
    assert body["note"] == "全部坐席登录不上" and body["declared_by"]["id"] == site.users["lead"]
    assert [(r["after_minutes"], r["status"], r["notify"]) for r in body["ladder"]] == [
        (5, "pending", ["manager"]),
        (10, "pending", ["manager"]),
        (60, "pending", ["manager", "lead"]),
    ]
    assert body["escalation"] == {"fired": 0, "total": 3, "next_due_at": body["ladder"][0]["due_at"]}
    assert [s["id"] for s in body["steps"]][:2] == ["tell-lead", "notify-ops"]
    assert body["steps"][4]["id"] == "report-supervisor" and body["steps"][4]["due_at"] is not None
    assert body["can"] == {
        "ack": False,
        "recover": True,
        "resolve": True,
        "note": True,
        "timeline": True,
        "tick": True,
    }

    # An admin edits the playbook's ladder: the running incident keeps the ladder it was declared with.
    playbook = (await client.get("/api/playbooks/system-failure", headers=site.headers("admin"))).json()
    edited = copy.deepcopy(playbook)
    edited["escalation"][0]["after_minutes"] = 1
    assert (
        await client.put("/api/playbooks/system-failure", json=edited, headers=site.headers("admin"))
    ).status_code == 200
    again = (await client.get(f"/api/incidents/{body['id']}", headers=site.headers("lead"))).json()
    assert again["ladder"] == body["ladder"] and again["playbook_version"] == 1
    newer = (await declare(client, site)).json()
    assert newer["playbook_version"] == 2 and newer["ladder"][0]["after_minutes"] == 1

    # Managers hear of it at once (in-app); the declarer is not notified of their own declaration.
    inbox = (await client.get("/api/inbox", headers=site.headers("manager"))).json()
    assert inbox["items"][-1]["kind"] == "declared" and inbox["items"][-1]["incident_id"] == body["id"]
    assert "全部坐席登录不上" in inbox["items"][-1]["body"]["zh-CN"]
    assert (await client.get("/api/inbox", headers=site.headers("lead"))).json()["items"] == []


async def test_declare_validation_and_roles(client, site):
    assert (await declare(client, site, role="agent")).status_code == 403
    unknown = await declare(client, site, playbook="nope")
    assert unknown.status_code == 422 and unknown.json()["errors"] == {"playbook": "unknown playbook"}
    assert (await declare(client, site, drill={"time_scale": 0})).status_code == 400
    assert (await declare(client, site, drill={"time_scale": 60, "x": 1})).status_code == 400
    assert (await declare(client, site, colour="red")).status_code == 400
    assert (
        await client.post("/api/incidents", content=b"{not json", headers=site.headers("lead"))
    ).status_code == 400


async def test_drill_is_labelled(client, site):
    body = (await declare(client, site, drill={"time_scale": 120})).json()
    assert body["drill"] is True and body["time_scale"] == 120
    due = [r["due_at"] for r in body["ladder"]]
    declared = body["declared_at"]
    from datetime import datetime

    seconds = [(datetime.fromisoformat(d) - datetime.fromisoformat(declared)).total_seconds() for d in due]
    assert seconds == [2.5, 5.0, 30.0]
    note = (await client.get("/api/inbox", headers=site.headers("manager"))).json()["items"][0]
    assert (
        note["drill"]
        and note["title"]["zh-CN"].startswith("【演练】")
        and note["title"]["en"].startswith("[DRILL]")
    )
    listed = (await client.get("/api/incidents?status=active", headers=site.headers("agent"))).json()
    assert listed[0]["id"] == body["id"] and listed[0]["drill"] is True


async def test_sites_do_not_see_each_other(client, site, other_site):
    iid = (await declare(client, site)).json()["id"]
    for path in (f"/api/incidents/{iid}", f"/api/incidents/{iid}/timeline"):
        assert (await client.get(path, headers=other_site.headers("manager"))).status_code == 404
    assert (
        await client.post(f"/api/incidents/{iid}/ack", headers=other_site.headers("manager"))
    ).status_code == 404
    assert all(
        i["id"] != iid
        for i in (await client.get("/api/incidents", headers=other_site.headers("lead"))).json()
    )
    assert (await client.get("/api/inbox", headers=other_site.headers("manager"))).json()["items"] == []


async def test_who_may_acknowledge(client, site):
    iid = (await declare(client, site)).json()["id"]
    lead_try = await client.post(f"/api/incidents/{iid}/ack", headers=site.headers("lead"))
    assert lead_try.status_code == 403  # the ladder has not reached leads
    assert (await client.post(f"/api/incidents/{iid}/ack", headers=site.headers("agent"))).status_code == 403
    first = await client.post(f"/api/incidents/{iid}/ack", headers=site.headers("manager"))
    assert first.status_code == 200 and first.json()["acknowledged_by"]["id"] == site.users["manager"]
    again = await client.post(f"/api/incidents/{iid}/ack", headers=site.headers("admin"))
    assert again.status_code == 200 and again.json()["acknowledged_by"]["id"] == site.users["manager"]
    assert (await timeline_kinds(client, site, iid)).count("acknowledged") == 1
    assert first.json()["can"]["ack"] is False
    # The lead who declared hears that a manager has it.
    inbox = (await client.get("/api/inbox", headers=site.headers("lead"))).json()["items"]
    assert inbox[0]["kind"] == "acknowledged"


async def test_notes_ticks_recover_resolve(client, site):
    iid = (await declare(client, site)).json()["id"]
    note = await client.post(
        f"/api/incidents/{iid}/notes", json={"text": "运维已到场"}, headers=site.headers("lead")
    )
    assert note.status_code == 201 and note.json()["data"] == {"text": "运维已到场"}
    assert note.json()["actor"]["id"] == site.users["lead"]
    assert (
        await client.post(f"/api/incidents/{iid}/notes", json={"text": ""}, headers=site.headers("lead"))
    ).status_code == 400
    assert (
        await client.post(f"/api/incidents/{iid}/notes", json={"text": "x"}, headers=site.headers("agent"))
    ).status_code == 403

    # Agents tick agent steps; lead steps need a lead.
    ticked = await client.post(
        f"/api/incidents/{iid}/steps/tell-lead", json={"done": True}, headers=site.headers("agent")
    )
    assert ticked.status_code == 200
    step = ticked.json()["steps"][0]
    assert step["done"] and step["ticked_by"]["id"] == site.users["agent"] and step["ticked_at"]
    assert (
        await client.post(f"/api/incidents/{iid}/steps/notify-ops", headers=site.headers("agent"))
    ).status_code == 403
    assert (
        await client.post(f"/api/incidents/{iid}/steps/notify-ops", headers=site.headers("lead"))
    ).status_code == 200
    assert (
        await client.post(f"/api/incidents/{iid}/steps/nope", headers=site.headers("lead"))
    ).status_code == 404
    again = await client.post(f"/api/incidents/{iid}/steps/notify-ops", headers=site.headers("lead"))
    assert again.status_code == 200  # ticking twice is one tick
    untick = await client.post(
        f"/api/incidents/{iid}/steps/notify-ops", json={"done": False}, headers=site.headers("lead")
    )
    assert [s["done"] for s in untick.json()["steps"][:2]] == [True, False]

    assert (
        await client.get(f"/api/incidents/{iid}/timeline", headers=site.headers("agent"))
    ).status_code == 403
    recovered = await client.post(
        f"/api/incidents/{iid}/recover", json={"note": "CRM 已恢复"}, headers=site.headers("lead")
    )
    assert recovered.status_code == 200 and recovered.json()["status"] == "recovered"
    assert {r["status"] for r in recovered.json()["ladder"]} == {"stopped"}
    agent_inbox = (await client.get("/api/inbox", headers=site.headers("agent"))).json()["items"]
    assert agent_inbox[0]["kind"] == "recovered"  # agents learn to start entering manual records
    resolved = await client.post(f"/api/incidents/{iid}/resolve", headers=site.headers("lead"))
    body = resolved.json()
    assert body["status"] == "resolved" and body["recovered_at"] == recovered.json()["recovered_at"]
    assert body["can"] == {
        "ack": False,
        "recover": False,
        "resolve": False,
        "note": False,
        "timeline": True,
        "tick": False,
    }
    assert (
        await client.post(f"/api/incidents/{iid}/ack", headers=site.headers("manager"))
    ).status_code == 409
    assert (
        await client.post(f"/api/incidents/{iid}/notes", json={"text": "x"}, headers=site.headers("lead"))
    ).status_code == 409
    kinds = await timeline_kinds(client, site, iid)
    assert kinds == ["declared", "note", "step_ticked", "step_ticked", "step_ticked", "recovered", "resolved"]
    events = (await client.get(f"/api/incidents/{iid}/timeline?after=2", headers=site.headers("lead"))).json()
    assert all(e["id"] > 2 for e in events["events"])
    assert (await client.get("/api/incidents?status=resolved", headers=site.headers("lead"))).json()[0][
        "id"
    ] == iid
    assert (await client.get("/api/incidents?status=bogus", headers=site.headers("lead"))).status_code == 400


@pytest.mark.parametrize(
    ("rate", "failure", "level"),
    [
        (95, False, "normal"),
        (90, False, "normal"),
        (89.9, False, "yellow"),
        (85, False, "yellow"),
        (84.9, False, "orange"),
        (80, False, "orange"),
        (79.9, False, "red"),
        (99, True, "red"),
    ],
)
def test_alert_level_bands(rate, failure, level):
    assert level_for(rate, failure) == level


async def test_metrics_raise_and_lower_the_level_and_call_reserves(client, site):
    assert (await client.get("/api/metrics/level", headers=site.headers("agent"))).json()["level"] == "normal"
    assert (
        await client.post(
            "/api/metrics", json={"answer_rate": 80, "queue_length": 5}, headers=site.headers("agent")
        )
    ).status_code == 403
    assert (
        await client.post(
            "/api/metrics", json={"answer_rate": 101, "queue_length": 5}, headers=site.headers("lead")
        )
    ).status_code == 400
    calm = (
        await client.post(
            "/api/metrics", json={"answer_rate": 93, "queue_length": 2}, headers=site.headers("lead")
        )
    ).json()
    assert calm["level"] == "normal" and not calm["changed"] and calm["incident_id"] is None

    yellow = (
        await client.post(
            "/api/metrics", json={"answer_rate": 87.5, "queue_length": 30}, headers=site.headers("lead")
        )
    ).json()
    assert yellow["level"] == "yellow" and yellow["tiers_called"] == [1] and yellow["incident_id"]
    surge = yellow["incident_id"]
    detail = (await client.get(f"/api/incidents/{surge}", headers=site.headers("lead"))).json()
    assert detail["playbook"] == "call-surge" and detail["source"] == "metrics"

    red = (
        await client.post(
            "/api/metrics", json={"answer_rate": 75, "queue_length": 120}, headers=site.headers("lead")
        )
    ).json()
    assert red["level"] == "red" and red["tiers_called"] == [2, 3] and red["incident_id"] == surge
    manager_inbox = (await client.get("/api/inbox", headers=site.headers("manager"))).json()["items"]
    assert manager_inbox[0]["kind"] == "alert_level" and manager_inbox[0]["urgency"] == "high"
    assert "红色" in manager_inbox[0]["title"]["zh-CN"] and "三级" in manager_inbox[0]["body"]["zh-CN"]

    lower = (
        await client.post(
            "/api/metrics", json={"answer_rate": 91, "queue_length": 3}, headers=site.headers("lead")
        )
    ).json()
    assert lower["level"] == "normal" and lower["previous"] == "red" and lower["tiers_called"] == []
    events = (await client.get(f"/api/incidents/{surge}/timeline", headers=site.headers("lead"))).json()[
        "events"
    ]
    changes = [(e["data"]["from"], e["data"]["to"]) for e in events if e["kind"] == "level_changed"]
    assert changes == [("normal", "yellow"), ("yellow", "red"), ("red", "normal")]
    assert [e["data"]["tier"] for e in events if e["kind"] == "reserve_called"] == [1, 2, 3]

    # Back to normal: the surge incident the figures opened closes itself, its pending rungs cancelled.
    assert lower["closed_incident_id"] == surge and lower["incident_id"] is None
    closed = (await client.get(f"/api/incidents/{surge}", headers=site.headers("lead"))).json()
    assert closed["status"] == "resolved" and "pending" not in {r["status"] for r in closed["ladder"]}

    # A system failure is red whatever the rate: a new surge incident, reused by the next report, not duplicated.
    failure = (
        await client.post(
            "/api/metrics",
            json={"answer_rate": 95, "queue_length": 0, "system_failure": True},
            headers=site.headers("lead"),
        )
    ).json()
    assert failure["level"] == "red" and failure["incident_id"] not in (None, surge)
    again = (
        await client.post(
            "/api/metrics",
            json={"answer_rate": 70, "queue_length": 9, "system_failure": True},
            headers=site.headers("lead"),
        )
    ).json()
    assert again["incident_id"] == failure["incident_id"]
    surges = [
        i
        for i in (await client.get("/api/incidents?status=active", headers=site.headers("lead"))).json()
        if i["playbook"] == "call-surge"
    ]
    assert len(surges) == 1


async def test_push_subscriptions(client, site):
    receiver = PushReceiver()
    try:
        sub = receiver.subscription()
        assert (await client.post("/api/push/subscriptions", json=sub)).status_code == 401
        created = await client.post("/api/push/subscriptions", json=sub, headers=site.headers("manager"))
        assert created.status_code == 200 and created.json()["created"] is True
        same = await client.post("/api/push/subscriptions", json=sub, headers=site.headers("manager"))
        assert same.json() == {**created.json(), "created": False}
        # The phone changes hands within the site: the same browser subscription (same keys) moves along.
        await client.post("/api/push/subscriptions", json=sub, headers=site.headers("lead"))
        assert (await client.get("/api/push/subscriptions", headers=site.headers("manager"))).json() == []
        assert len((await client.get("/api/push/subscriptions", headers=site.headers("lead"))).json()) == 1

        bad = await client.post(
            "/api/push/subscriptions",
            json={**sub, "keys": {"p256dh": "AAAA", "auth": "AAAA"}},
            headers=site.headers("lead"),
        )
        assert bad.status_code == 422 and set(bad.json()["errors"]) == {"keys.p256dh", "keys.auth"}
        assert (
            await client.post(
                "/api/push/subscriptions", json={**sub, "endpoint": "ftp://x"}, headers=site.headers("lead")
            )
        ).status_code == 400

        gone = await client.delete(
            "/api/push/subscriptions", params={"endpoint": sub["endpoint"]}, headers=site.headers("manager")
        )
        assert gone.status_code == 404  # not the manager's any more
        assert (
            await client.delete(
                "/api/push/subscriptions", params={"endpoint": sub["endpoint"]}, headers=site.headers("lead")
            )
        ).status_code == 204
        assert (await client.get("/api/push/subscriptions", headers=site.headers("lead"))).json() == []
        key = await client.get("/api/push/vapid-public-key")
        assert key.status_code == 200 and len(key.json()["public_key"]) == 87
    finally:
        receiver.close()


async def test_inbox_read_state(client, site):
    await client.post("/api/push/test", headers=site.headers("agent"))
    await client.post("/api/push/test", headers=site.headers("agent"))
    inbox = (await client.get("/api/inbox", headers=site.headers("agent"))).json()
    assert inbox["unread"] == 2 and inbox["items"][0]["title"] == {
        "zh-CN": "测试通知",
        "en": "Test notification",
    }
    first = inbox["items"][0]["id"]
    assert (await client.post(f"/api/inbox/{first}/read", headers=site.headers("manager"))).status_code == 404
    read = await client.post(f"/api/inbox/{first}/read", headers=site.headers("agent"))
    assert read.status_code == 200 and read.json()["read_at"]
    assert (await client.get("/api/inbox?unread=true", headers=site.headers("agent"))).json()["unread"] == 1
    assert (await client.post("/api/inbox/read-all", headers=site.headers("agent"))).json() == {"marked": 1}
    assert (await client.get("/api/inbox?unread=true", headers=site.headers("agent"))).json()["items"] == []
