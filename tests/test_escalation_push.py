"""The escalation ladder and Web Push delivery end to end: API -> engine -> outbox -> a real HTTP push
receiver on 127.0.0.1 that decrypts every message. Time is a ManualClock the test advances."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select, update

from backend import escalation, outbox, push
from backend.clock import ManualClock
from backend.outbox import PushDelivery
from backend.push import PushSubscription

from .push_receiver import receiver_fixture  # noqa: F401 (the `receiver` fixture)


@pytest.fixture
async def engine(client, db):
    """The engine's state: the test's own session factory, and one clock shared with the API app."""
    clock = ManualClock()
    client.app.state.clock = clock
    state = SimpleNamespace(
        settings=client.app.state.settings, sessionmaker=db, clock=clock, worker_interval=0.02
    )
    await push.on_startup(SimpleNamespace(state=state))
    yield state
    client.app.state.clock = None
    await push.on_shutdown(SimpleNamespace(state=state))


async def drain(state) -> tuple[int, int]:
    """Run the engine and the push sender until neither has anything due right now."""
    fired = sent = 0
    for _ in range(100):
        f = await escalation.fire_due(state)
        s = await outbox.deliver_due(state)
        fired, sent = fired + f, sent + s
        if not f and not s:
            return fired, sent
    raise AssertionError("engine did not settle")


async def rungs(client, site, incident_id) -> list[str]:
    detail = (await client.get(f"/api/incidents/{incident_id}", headers=site.headers("lead"))).json()
    return [r["status"] for r in detail["ladder"]]


async def subscribe(client, site, role, receiver) -> dict:
    subscription = receiver.subscription()
    response = await client.post("/api/push/subscriptions", json=subscription, headers=site.headers(role))
    assert response.status_code == 200, response.text
    return subscription


async def declare(client, site, playbook="system-failure", **extra) -> dict:
    response = await client.post(
        "/api/incidents", json={"playbook": playbook, **extra}, headers=site.headers("lead")
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_ladder_fires_in_order_at_its_times_and_ack_stops_the_rest(client, site, engine, receiver):
    phone = await subscribe(client, site, "manager", receiver)
    start = engine.clock.at
    incident = await declare(client, site, note="CRM 登录不上")
    iid = incident["id"]
    assert [r["due_at"] for r in incident["ladder"]] == [
        (start + timedelta(minutes=m)).isoformat().replace("+00:00", "Z") for m in (5, 10, 60)
    ]
    await drain(engine)
    declared = receiver.wait_for(1, endpoint=phone["endpoint"])[0]
    assert declared.payload["kind"] == "declared" and declared.headers["urgency"] == "normal"

    engine.clock.advance(minutes=4, seconds=59)
    await drain(engine)
    assert await rungs(client, site, iid) == ["pending", "pending", "pending"]  # not yet
    engine.clock.advance(seconds=1)
    await drain(engine)
    assert await rungs(client, site, iid) == ["fired", "pending", "pending"]
    first = receiver.wait_for(2, endpoint=phone["endpoint"])[1]
    engine.clock.advance(minutes=5)
    await drain(engine)
    assert await rungs(client, site, iid) == ["fired", "fired", "pending"]
    second = receiver.wait_for(3, endpoint=phone["endpoint"])[2]
    for message, rung in ((first, 0), (second, 1)):
        assert message.headers["urgency"] == "high"
        assert message.headers["topic"] == f"incident-{iid}"
        assert message.headers["ttl"] == str(push.TTL["high"])
        assert message.vapid_valid and message.claims["aud"] == receiver.base
        assert message.claims["sub"] == engine.settings.vapid_subject
        key = (await client.get("/api/push/vapid-public-key")).json()["public_key"]
        assert message.vapid_key == key
        expected_message = incident["ladder"][rung]["message"]
        minutes = (5, 10)[rung]
        assert message.payload["title"] == {
            "zh-CN": f"升级：{incident['title']['zh-CN']}（{minutes}分钟）",
            "en": f"Escalation: {incident['title']['en']} ({minutes} min)",
        }
        assert message.payload["body"] == expected_message
        assert {k: message.payload[k] for k in ("v", "incident_id", "kind", "urgency", "drill")} == {
            "v": 1,
            "incident_id": iid,
            "kind": "escalation",
            "urgency": "high",
            "drill": False,
        }
        assert (
            len(message.headers.get("content-length", "0")) and int(message.headers["content-length"]) < 4096
        )

    # The whole decrypted payload: ids, the receipt secret, both languages, well under 4 KB.
    async with engine.sessionmaker() as session:
        deliveries = (
            (
                await session.execute(
                    select(PushDelivery).where(PushDelivery.incident_id == iid).order_by(PushDelivery.id)
                )
            )
            .scalars()
            .all()
        )
    ack_url = first.payload.pop("ack_url")  # the manager's personal, single-use acknowledge link
    assert ack_url.startswith(engine.settings.public_base_url + "/ack/")
    assert first.payload == {
        "v": 1,
        "id": deliveries[1].notification_id,
        "delivery": deliveries[1].id,
        "receipt": deliveries[1].receipt,
        "incident_id": iid,
        "kind": "escalation",
        "urgency": "high",
        "drill": False,
        "title": {
            "zh-CN": f"升级：{incident['title']['zh-CN']}（5分钟）",
            "en": f"Escalation: {incident['title']['en']} (5 min)",
        },
        "body": incident["ladder"][0]["message"],
    }
    assert [d.state for d in deliveries] == ["sent", "sent", "sent"]

    # The inbox holds the same notifications, whether or not push got through.
    inbox = (await client.get("/api/inbox", headers=site.headers("manager"))).json()
    assert [i["id"] for i in inbox["items"][:2]] == [second.payload["id"], first.payload["id"]]
    assert inbox["unread"] == 3

    acked = await client.post(f"/api/incidents/{iid}/ack", headers=site.headers("manager"))
    assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"
    engine.clock.advance(hours=2)
    await drain(engine)
    detail = (await client.get(f"/api/incidents/{iid}", headers=site.headers("lead"))).json()
    assert [r["status"] for r in detail["ladder"]] == ["fired", "fired", "stopped"]
    assert detail["ladder"][0]["fired_at"] == detail["ladder"][0]["due_at"]
    assert len(receiver.messages(endpoint=phone["endpoint"])) == 3

    events = (await client.get(f"/api/incidents/{iid}/timeline", headers=site.headers("lead"))).json()[
        "events"
    ]
    kinds = [e["kind"] for e in events]
    assert kinds == [
        "declared",
        "notification_sent",
        "escalation_fired",
        "notification_sent",
        "escalation_fired",
        "notification_sent",
        "acknowledged",
    ]
    fired = [e for e in events if e["kind"] == "escalation_fired"]
    assert [e["data"]["rung"] for e in fired] == [0, 1]
    assert fired[0]["data"]["recipients"] == 1 and fired[0]["data"]["deliveries"] == 1
    assert events[-1]["data"]["rungs_stopped"] == 1 and events[-1]["data"]["seconds_to_ack"] == 600


async def test_drill_runs_the_ladder_faster_and_says_so(client, site, engine, receiver):
    phone = await subscribe(client, site, "manager", receiver)
    incident = await declare(client, site, drill={"time_scale": 60})
    assert incident["drill"] is True and incident["time_scale"] == 60
    await drain(engine)
    engine.clock.advance(seconds=5)  # 5 minutes / 60
    await drain(engine)
    engine.clock.advance(seconds=5)
    await drain(engine)
    messages = receiver.wait_for(3, endpoint=phone["endpoint"])
    assert [m.payload["kind"] for m in messages] == ["declared", "escalation", "escalation"]
    for m in messages:
        assert m.payload["drill"] is True
        assert m.payload["title"]["zh-CN"].startswith("【演练】") and m.payload["title"]["en"].startswith(
            "[DRILL] "
        )
    inbox = (await client.get("/api/inbox", headers=site.headers("manager"))).json()["items"]
    assert all(i["drill"] and i["title"]["zh-CN"].startswith("【演练】") for i in inbox)
    detail = (await client.get(f"/api/incidents/{incident['id']}", headers=site.headers("lead"))).json()
    assert [r["status"] for r in detail["ladder"]] == ["fired", "fired", "pending"]


async def test_gone_subscription_is_removed_and_only_that_one(client, site, engine, receiver):
    phone = await subscribe(client, site, "manager", receiver)
    tablet = await subscribe(client, site, "manager", receiver)
    receiver.answer(tablet["endpoint"], 410)
    incident = await declare(client, site)
    await drain(engine)
    assert receiver.wait_for(1, endpoint=tablet["endpoint"])[0].answered == 410
    mine = (await client.get("/api/push/subscriptions", headers=site.headers("manager"))).json()
    assert [s["endpoint"] for s in mine] == [phone["endpoint"]]
    async with engine.sessionmaker() as session:
        states = (
            (
                await session.execute(
                    select(PushDelivery.state)
                    .where(PushDelivery.incident_id == incident["id"])
                    .order_by(PushDelivery.id)
                )
            )
            .scalars()
            .all()
        )
    assert states == ["sent", "gone"]
    engine.clock.advance(minutes=5)
    await drain(engine)
    assert len(receiver.messages(endpoint=tablet["endpoint"])) == 1  # never tried again
    assert len(receiver.messages(endpoint=phone["endpoint"], answered=201)) == 2
    events = (
        await client.get(f"/api/incidents/{incident['id']}/timeline", headers=site.headers("lead"))
    ).json()
    gone = [e for e in events["events"] if e["kind"] == "notification_gone"]
    assert len(gone) == 1 and gone[0]["data"]["status"] == 410


async def test_404_removes_the_subscription_too(client, site, engine, receiver):
    phone = await subscribe(client, site, "manager", receiver)
    receiver.answer(phone["endpoint"], 404)
    await declare(client, site)
    await drain(engine)
    assert (await client.get("/api/push/subscriptions", headers=site.headers("manager"))).json() == []


async def test_429_honours_retry_after_and_500_backs_off(client, site, engine, receiver):
    busy = await subscribe(client, site, "manager", receiver)
    declarer = await subscribe(client, site, "lead", receiver)  # nobody is notified of their own declaration
    receiver.answer(busy["endpoint"], 429, retry_after="120")
    incident = await declare(client, site)
    await drain(engine)
    async with engine.sessionmaker() as session:
        row = (
            await session.execute(select(PushDelivery).where(PushDelivery.incident_id == incident["id"]))
        ).scalar_one()
    assert row.state == "failed" and row.last_status == 429
    assert row.next_attempt_at == engine.clock.at + timedelta(seconds=120)
    engine.clock.advance(seconds=119)
    await drain(engine)
    assert len(receiver.messages(endpoint=busy["endpoint"])) == 1
    engine.clock.advance(seconds=1)
    await drain(engine)
    assert [m.answered for m in receiver.messages(endpoint=busy["endpoint"])] == [429, 201]
    first, second = receiver.messages(endpoint=busy["endpoint"])
    assert first.payload == second.payload  # the same message, decrypted both times

    # 500 twice, then accepted: retried with growing backoff.
    receiver.answer(busy["endpoint"], 500, 500)
    await client.post("/api/push/test", headers=site.headers("manager"))
    await drain(engine)
    async with engine.sessionmaker() as session:
        row = (
            await session.execute(
                select(PushDelivery).where(
                    PushDelivery.incident_id.is_(None), PushDelivery.user_id == site.users["manager"]
                )
            )
        ).scalar_one()
    assert row.state == "failed" and row.attempts == 1
    first_wait = (row.next_attempt_at - engine.clock.at).total_seconds()
    assert outbox.BACKOFF_BASE * 0.8 <= first_wait <= outbox.BACKOFF_BASE * 1.2
    engine.clock.advance(seconds=first_wait)
    await drain(engine)
    async with engine.sessionmaker() as session:
        row = await session.get(PushDelivery, row.id)
    assert row.state == "failed" and row.attempts == 2
    assert (row.next_attempt_at - engine.clock.at).total_seconds() >= outbox.BACKOFF_BASE * 2 * 0.8
    engine.clock.advance(seconds=outbox.BACKOFF_BASE * 3)
    await drain(engine)
    answers = [
        m.answered for m in receiver.messages(endpoint=busy["endpoint"]) if m.payload["kind"] == "test"
    ]
    assert answers == [500, 500, 201]
    assert receiver.messages(endpoint=declarer["endpoint"]) == []


async def test_ack_cancels_pending_deliveries_and_resolve_cancels_the_rest(client, site, engine, receiver):
    phone = await subscribe(client, site, "manager", receiver)
    incident = await declare(client, site)
    await drain(engine)
    engine.clock.advance(minutes=5)
    while await escalation.fire_due(engine):  # fired, but its push not sent yet
        pass
    assert await rungs(client, site, incident["id"]) == ["fired", "pending", "pending"]
    ack = await client.post(f"/api/incidents/{incident['id']}/ack", headers=site.headers("manager"))
    assert ack.status_code == 200
    await drain(engine)
    kinds = [m.payload["kind"] for m in receiver.messages(endpoint=phone["endpoint"])]
    assert kinds == ["declared"]  # the escalation push was cancelled by the ack
    events = (
        await client.get(f"/api/incidents/{incident['id']}/timeline", headers=site.headers("lead"))
    ).json()
    ack_event = [e for e in events["events"] if e["kind"] == "acknowledged"][0]
    assert ack_event["data"] == {
        "rungs_stopped": 2,
        "deliveries_cancelled": 1,
        "seconds_to_ack": 300.0,
        "channel": "app",
    }

    other = await declare(client, site, playbook="power-outage")
    resolved = await client.post(
        f"/api/incidents/{other['id']}/resolve", json={"note": "市电恢复"}, headers=site.headers("lead")
    )
    assert resolved.status_code == 200
    body = resolved.json()
    assert body["status"] == "resolved" and {r["status"] for r in body["ladder"]} == {"cancelled"}
    engine.clock.advance(hours=3)
    await drain(engine)
    assert all(
        m.payload["incident_id"] != other["id"] or m.payload["kind"] != "escalation"
        for m in receiver.messages(endpoint=phone["endpoint"])
    )


async def test_a_crashed_senders_claim_is_taken_again_after_its_deadline(client, site, engine, receiver):
    phone = await subscribe(client, site, "manager", receiver)
    await client.post("/api/push/test", headers=site.headers("manager"))
    async with engine.sessionmaker() as session:  # as if a sender claimed it and died before sending
        await session.execute(
            update(PushDelivery)
            .where(PushDelivery.user_id == site.users["manager"])
            .values(state="sending", attempts=1, deadline_at=engine.clock.at + outbox.SEND_LEASE)
        )
        await session.commit()
    await drain(engine)
    assert receiver.messages(endpoint=phone["endpoint"]) == []
    engine.clock.advance(seconds=outbox.SEND_LEASE.total_seconds())
    await drain(engine)
    assert [m.answered for m in receiver.wait_for(1, endpoint=phone["endpoint"])] == [201]


async def test_service_worker_receipt_marks_delivered(client, site, engine, receiver):
    phone = await subscribe(client, site, "manager", receiver)
    incident = await declare(client, site)
    await drain(engine)
    payload = receiver.wait_for(1, endpoint=phone["endpoint"])[0].payload
    wrong = await client.post("/api/push/receipts", json={"delivery": payload["delivery"], "receipt": "nope"})
    assert wrong.status_code == 404
    for _ in range(2):  # the second is a no-op
        ok = await client.post(
            "/api/push/receipts", json={"delivery": payload["delivery"], "receipt": payload["receipt"]}
        )
        assert ok.status_code == 204
    events = (
        await client.get(f"/api/incidents/{incident['id']}/timeline", headers=site.headers("lead"))
    ).json()
    delivered = [e for e in events["events"] if e["kind"] == "notification_delivered"]
    assert len(delivered) == 1 and delivered[0]["data"]["user_id"] == site.users["manager"]
    async with engine.sessionmaker() as session:
        assert (
            await session.get(
                PushSubscription,
                (
                    await session.execute(
                        select(PushSubscription.id).where(PushSubscription.endpoint == phone["endpoint"])
                    )
                ).scalar_one(),
            )
        ) is not None


async def test_leads_may_acknowledge_once_the_ladder_reaches_them(client, site, engine):
    incident = await declare(client, site, drill={"time_scale": 60})
    iid = incident["id"]
    engine.clock.advance(seconds=10)  # rungs 5 and 10 (manager only)
    await drain(engine)
    assert (await client.post(f"/api/incidents/{iid}/ack", headers=site.headers("lead"))).status_code == 403
    detail = (await client.get(f"/api/incidents/{iid}", headers=site.headers("lead"))).json()
    assert detail["can"]["ack"] is False
    engine.clock.advance(seconds=50)  # the 60-minute rung notifies managers and leads
    await drain(engine)
    detail = (await client.get(f"/api/incidents/{iid}", headers=site.headers("lead"))).json()
    assert detail["can"]["ack"] is True
    acked = await client.post(f"/api/incidents/{iid}/ack", headers=site.headers("lead"))
    assert acked.status_code == 200 and acked.json()["acknowledged_by"]["id"] == site.users["lead"]
    assert (await client.post(f"/api/incidents/{iid}/ack", headers=site.headers("agent"))).status_code == 403
    lead_inbox = (await client.get("/api/inbox", headers=site.headers("lead"))).json()["items"]
    assert [i["kind"] for i in lead_inbox] == ["escalation"]  # the 60-minute rung; not their own ack
