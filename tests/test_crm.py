"""Re-entry into the CRM by its API, against the CRM stand-in on 127.0.0.1 (tests/crm_standin.py): set-up and
preview, secrets at rest, pushing with retries through faults (exactly one CRM entry per record and revision),
changed records flagged and not re-sent, dry runs, and the CLI. The sender is driven directly with a ManualClock,
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from backend import crm, crmpush, outbound
from backend.audit import AuditEntry
from backend.auth import Site
from backend.clock import ManualClock
from backend.crmpush import CrmDelivery
from backend.export import export_site

from .conftest import SECRET
from .crm_standin import StandIn, crm_standin_fixture, serve  # noqa: F401 (the `crm_standin` fixture)
from .servers import off_loop

T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
MAPPING = {
    "call-record": {
        "time_zone": "Asia/Shanghai",
        "body": {
            "source": "outage-desk",
            "external_id": {"meta": "id"},
            "customer": {"name": {"field": "caller_name"}, "phone": {"field": "phone"}},
            "priority": {"field": "urgency", "map": {"urgent": "P1", "normal": "P3"}, "default": "P3"},
            "called_at": {"field": "called_at", "date": "%Y-%m-%d %H:%M"},
            "callback": {"field": "callback_promised", "map": {"true": "Y", "false": "N"}},
            "description": {"field": "details"},
            "previous_case": {"meta": "crm_ref"},
            "tags": ["offline", {"const": {"field": "literally"}}],
        },
    }
}


def call(name: str, i: int) -> dict:
    return {
        "called_at": (T0 + timedelta(minutes=i)).isoformat(),
        "caller_name": name,
        "phone": f"1380000{i:04d}",
        "category": "complaint",
        "urgency": "urgent" if i % 2 else "normal",
        "details": "宽带断了",
        "callback_promised": False,
    }


def record(data: dict, *, rid=None, rev=1, incident_id=None) -> dict:
    return {
        "id": str(rid or uuid.uuid4()),
        "form": "call-record",
        "form_version": 1,
        "rev": rev,
        "captured_at": T0.isoformat(),
        "data": data,
        "incident_id": incident_id,
    }


async def sync(client, site, records):
    response = await client.post(
        "/api/sync",
        json={"device_id": "dev-1", "cursor": None, "records": records},
        headers=site.headers("agent"),
    )
    assert response.status_code == 200, response.text
    return response.json()["results"]


async def declare(client, site) -> int:
    response = await client.post(
        "/api/incidents", json={"playbook": "system-failure"}, headers=site.headers("lead")
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def set_connector(client, site, standin: StandIn, **extra):
    body = {
        "url": standin.url,
        "auth": standin.auth,
        "header_name": standin.header_name if standin.auth in ("header", "hmac") else None,
        "secret": standin.secret,
        "mapping": MAPPING,
        "ref_path": "$.data.case_no",
        "enabled": True,
        **extra,
    }
    response = await client.put("/api/crm/connector", json=body, headers=site.headers("admin"))
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
async def sender(client, db):
    """The sender's state: the test's session factory, a manual clock shared with the app, an outbound client."""
    clock = ManualClock(T0 + timedelta(hours=3))
    client.app.state.clock = clock
    state = SimpleNamespace(
        settings=client.app.state.settings,
        sessionmaker=db,
        clock=clock,
        outbound=outbound.Client(client.app.state.settings.outbound_allow, 5),
    )
    yield state
    client.app.state.clock = None
    await state.outbound.close()


async def settle(state, rounds: int = 12) -> None:
    """Send what is due, then jump past every retry time, until nothing is left to retry. (Past the latest
    one: backoff has jitter, so failed rows come due at scattered times, and one round per earliest due time
    could need more rounds than there are.)"""
    for _ in range(rounds):
        await crmpush.drain(state)
        async with state.sessionmaker() as session:
            due = (
                await session.execute(
                    select(func.max(CrmDelivery.next_attempt_at)).where(
                        CrmDelivery.state == "failed",
                        crmpush._connected(),  # connectors switched on
                    )
                )
            ).scalar_one()
        if due is None:
            return
        state.clock.at = max(state.clock.at, due) + timedelta(seconds=1)
    raise AssertionError("CRM deliveries did not settle")


async def push(client, site, role="lead", **body):
    response = await client.post("/api/crm/push", json=body, headers=site.headers(role))
    assert response.status_code == 200, response.text
    return response.json()


async def test_100_records_pushed_twice_through_faults_make_exactly_100_entries(
    client, db, site, sender, crm_standin
):
    incident = await declare(client, site)
    records = [record(call(f"客户{i}", i), incident_id=incident) for i in range(100)]
    await sync(client, site, records)
    await set_connector(client, site, crm_standin)
    keys = [crm.idempotency_key(r["id"], 1) for r in records]
    crm_standin.faults = {
        **{keys[i]: ["429"] for i in range(0, 10)},
        **{keys[i]: ["500", "500"] for i in range(10, 20)},
        **{keys[i]: ["500-stored"] for i in range(20, 30)},  # stored, answer lost: the retry gets 409
        keys[30]: ["400"],
    }
    first = await push(client, site, incident_id=incident)
    assert first["count"] == 100 and first["skipped"] == []
    second = await push(client, site, incident_id=incident)  # a second push while the first is queued
    assert second["count"] == 0 and {s["reason"] for s in second["skipped"]} == {"already queued"}

    await crmpush.drain(sender)
    # 429 waits for its Retry-After (7 s), not for the backoff
    async with db() as session:
        waiting = (
            await session.execute(select(CrmDelivery).where(CrmDelivery.idempotency_key == keys[0]))
        ).scalar_one()
    assert waiting.state == "failed" and waiting.last_status == 429
    assert waiting.next_attempt_at == sender.clock.at + timedelta(seconds=7)
    await settle(sender)

    # the 400 is given up with the CRM's reason, shown to the lead
    listing = (
        await client.get(f"/api/crm/deliveries?incident_id={incident}", headers=site.headers("lead"))
    ).json()
    bad = [d for d in listing["items"] if d["state"] == "failed"]
    assert len(bad) == 1 and bad[0]["gave_up"] and bad[0]["record_id"] == records[30]["id"]
    assert bad[0]["last_error"] == "the CRM answered 400: phone: not a valid number"
    # pushed again (the CRM was fixed): the same key, so still one entry
    again = await push(client, site, incident_id=incident)
    assert again["count"] == 1
    await settle(sender)
    again = await push(client, site, incident_id=incident)
    assert again["count"] == 0

    assert len(crm_standin.entries) == 100 and not crm_standin.refused
    assert {e.headers["Idempotency-Key"] for e in crm_standin.entries.values()} == set(keys)
    for r in records:
        got = (await client.get(f"/api/records/{r['id']}", headers=site.headers("lead"))).json()
        entry = crm_standin.entries[crm.idempotency_key(r["id"], 1)]
        assert got["reentry_status"] == "reentered" and got["crm_ref"] == entry.ref, got
        assert got["crm_rev"] == 1 and got["crm_changed"] is False
    # what the CRM got is the mapping applied to the record
    body = crm_standin.entries[keys[1]].body
    assert body == {
        "source": "outage-desk",
        "external_id": records[1]["id"],
        "customer": {"name": "客户1", "phone": "13800000001"},
        "priority": "P1",
        "called_at": "2026-11-20 10:01",  # Asia/Shanghai
        "callback": "N",
        "description": "宽带断了",
        "previous_case": None,
        "tags": ["offline", {"field": "literally"}],
    }
    # timeline and review count them like marks by hand
    report = (await client.get(f"/api/incidents/{incident}/report", headers=site.headers("lead"))).json()
    assert report["reentry"]["reentered"] == 100 and report["reentry"]["via_crm"] == 100
    kinds = [e["kind"] for e in report["timeline"]]
    assert kinds.count("crm_reentered") == 100 and kinds.count("crm_pushed") == 2
    failed = [e["data"] for e in report["timeline"] if e["kind"] == "crm_failed"]
    assert len(failed) == 10 + 20 + 10 + 1
    assert [(f["status"], f["record"]) for f in failed if f["retry_at"] is None] == [(400, records[30]["id"])]

    # a record changed after the CRM got it is flagged, not re-sent
    changed = {**records[5], "rev": 2, "data": {**records[5]["data"], "details": "又打来了"}}
    assert (await sync(client, site, [changed]))[0]["status"] == "updated"
    assert (await push(client, site, incident_id=incident))["count"] == 0
    await settle(sender)
    assert len(crm_standin.entries) == 100
    got = (await client.get(f"/api/records/{changed['id']}", headers=site.headers("agent"))).json()
    assert got["reentry_status"] == "reentered" and got["crm_changed"] is True and got["crm_rev"] == 1
    listing = (await client.get("/api/crm/deliveries", headers=site.headers("lead"))).json()
    assert [c["record_id"] for c in listing["changed"]] == [changed["id"]]
    # the second push is a lead's explicit choice: a new key for the new revision, carrying the old case
    second = await push(client, site, records=[changed["id"]])
    assert second["count"] == 1
    await settle(sender)
    entry = crm_standin.entries[crm.idempotency_key(changed["id"], 2)]
    assert entry.body["previous_case"] == crm_standin.entries[keys[5]].ref
    got = (await client.get(f"/api/records/{changed['id']}", headers=site.headers("lead"))).json()
    assert got["crm_changed"] is False and got["crm_ref"] == entry.ref and got["crm_rev"] == 2


async def test_dry_run_sends_and_stores_nothing(client, db, site, sender, crm_standin):
    records = [record(call("王五", i)) for i in range(3)]
    await sync(client, site, records)
    await set_connector(client, site, crm_standin, enabled=False)
    # switched off: a push is refused, a dry run still shows what would go
    refused = await client.post("/api/crm/push", json={}, headers=site.headers("lead"))
    assert refused.status_code == 409
    dry = await push(client, site, dry_run=True)
    assert dry["count"] == 3 and len(dry["would_send"]) == 3
    one = dry["would_send"][0]
    assert one["url"] == crm_standin.url and one["body"]["customer"]["name"] == "王五"
    assert {w["headers"]["Idempotency-Key"] for w in dry["would_send"]} == {
        crm.idempotency_key(r["id"], 1) for r in records
    }
    assert crm_standin.secret not in json.dumps(dry)  # the secret is masked
    await crmpush.drain(sender)
    async with db() as session:
        site_id = (await session.execute(select(Site.id).where(Site.slug == site.slug))).scalar_one()
        queued = (
            await session.execute(
                select(func.count()).select_from(CrmDelivery).where(CrmDelivery.site_id == site_id)
            )
        ).scalar_one()
    assert queued == 0 and crm_standin.requests == []
    # agents may not push; only admins set up
    assert (
        await client.post("/api/crm/push", json={"dry_run": True}, headers=site.headers("agent"))
    ).status_code == 403
    assert (await client.get("/api/crm/connector", headers=site.headers("lead"))).status_code == 403


async def test_setup_checks_preview_and_secrets_at_rest(client, db, site, other_site, sender):
    url = "http://127.0.0.1:9/api/cases"
    bad = await client.put(
        "/api/crm/connector",
        json={
            "url": "http://10.1.2.3/api",
            "auth": "header",
            "mapping": {
                "call-record": {"body": {"p": {"field": "urgency", "date": "yesterday"}, "q": {"meta": "x"}}}
            },
            "ref_path": "data.id",
        },
        headers=site.headers("admin"),
    )
    assert bad.status_code == 422
    errors = bad.json()["errors"]
    assert set(errors) == {
        "url",
        "header_name",
        "secret",
        "mapping.call-record.body.p.date",
        "mapping.call-record.body.q.meta",
        "ref_path",
    }, errors
    assert "private address" in errors["url"] or "not https" in errors["url"]

    # a draft previewed before anything is saved: the exact request for a made-up sample record
    draft = {
        "url": url,
        "auth": "bearer",
        "secret": "tok-very-secret-42",
        "mapping": MAPPING,
        "ref_path": "$.id",
    }
    preview = await client.post("/api/crm/preview", json={"connector": draft}, headers=site.headers("admin"))
    assert preview.status_code == 200, preview.text
    shown = preview.json()
    assert shown["record"]["sample"] is True and shown["method"] == "POST" and shown["url"] == url
    assert shown["headers"]["Authorization"] == "Bearer ••••42"
    assert shown["body"]["source"] == "outage-desk" and shown["body"]["priority"] in ("P1", "P3")

    saved = (await client.put("/api/crm/connector", json=draft, headers=site.headers("admin"))).json()
    assert saved["has_secret"] is True and "secret" not in saved and saved["enabled"] is False
    # saved again without the secret: the stored one stays
    kept = await client.put(
        "/api/crm/connector", json={**draft, "secret": None}, headers=site.headers("admin")
    )
    assert kept.status_code == 200 and kept.json()["has_secret"] is True

    await sync(client, site, [record(call("赵六", 3))])
    real = (await client.post("/api/crm/preview", json={}, headers=site.headers("admin"))).json()
    assert real["record"]["sample"] is False and real["body"]["customer"]["name"] == "赵六"
    assert real["headers"]["Authorization"] == "Bearer ••••42"

    async with db() as session:
        site_id = (await session.execute(select(Site.id).where(Site.slug == site.slug))).scalar_one()
        row = await session.get(crm.CrmConnector, site_id)
        assert row is not None and "tok-very-secret" not in row.secret
        assert crm.unseal(SECRET, row.secret) == "tok-very-secret-42"
        exported = json.dumps(await export_site(session, site.slug), ensure_ascii=False)
        audit = (
            (await session.execute(select(AuditEntry).where(AuditEntry.site_id == site_id))).scalars().all()
        )
    assert "tok-very-secret" not in exported and row.secret not in exported
    assert [a.action for a in audit].count("crm.connector.set") == 2
    assert "tok-very-secret" not in json.dumps([a.before for a in audit] + [a.after for a in audit])
    # another site sees none of it
    assert (await client.get("/api/crm/connector", headers=other_site.headers("admin"))).json() == {
        "configured": False,
        "enabled": False,
    }
    assert (
        await client.post("/api/crm/preview", json={}, headers=other_site.headers("admin"))
    ).status_code == 404


async def test_hmac_signing_and_a_wrong_key_given_up_at_once(client, db, site, sender):
    standin_gen = serve(StandIn(auth="hmac", header_name="X-Signature", secret="hmac-key-123"))
    standin = next(standin_gen)
    try:
        await sync(client, site, [record(call("钱七", 1))])
        await set_connector(client, site, standin)
        await push(client, site)
        await settle(sender)
        assert len(standin.entries) == 1 and not standin.refused
        [entry] = standin.entries.values()
        assert entry.headers["X-Signature"].startswith("sha256=") and entry.headers["X-OD-Timestamp"]
        # the wrong key: 401 is given up at once, with the reason
        await set_connector(client, site, standin, secret="wrong-key")
        await sync(client, site, [record(call("孙八", 2))])
        await push(client, site)
        await settle(sender)
    finally:
        next(standin_gen, None)
    listing = (await client.get("/api/crm/deliveries?state=failed", headers=site.headers("lead"))).json()
    assert [(d["last_status"], d["attempts"], d["last_error"]) for d in listing["items"]] == [
        (401, 1, "the CRM answered 401: unauthorized")
    ]


async def test_cli_set_and_push(client, db, site, crm_standin, database_url, monkeypatch, tmp_path, capsys):
    """`crm set` and `crm push` as an operator runs them, on the same database (in a thread: they run their
    own event loop)."""
    from backend.cli import main

    incident = await declare(client, site)
    records = [record(call("周九", i), incident_id=incident) for i in range(3)]
    await sync(client, site, records)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("OUTAGE_SECRET_KEY", SECRET)
    monkeypatch.setenv("OUTAGE_OUTBOUND_ALLOW", "127.0.0.1")
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps(MAPPING), encoding="utf-8")
    args = [
        "crm",
        "set",
        "--site",
        site.slug,
        "--url",
        crm_standin.url,
        "--header",
        "X-Api-Key: s3cret-api-key",
    ]
    assert off_loop(main, [*args, "--mapping", str(mapping), "--ref-path", "$.data.case_no"]) == 0
    out = capsys.readouterr().out
    assert "on; reference at $.data.case_no" in out and '"X-Api-Key": "••••ey"' in out and "周九" in out
    assert "s3cret-api-key" not in out

    assert off_loop(main, ["crm", "push", "--site", site.slug, "--incident", str(incident), "--dry-run"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["count"] == 3 and crm_standin.requests == []
    crm_standin.faults = {crm.idempotency_key(records[0]["id"], 1): ["429"]}
    assert off_loop(main, ["crm", "push", "--site", site.slug, "--incident", str(incident)]) == 0
    out = capsys.readouterr().out
    assert "queued 3, skipped 0; deliveries: failed 1, sent 2" in out and "answered 429" in out
    assert len(crm_standin.entries) == 2 and not crm_standin.refused
    got = (await client.get(f"/api/records/{records[1]['id']}", headers=site.headers("lead"))).json()
    assert got["reentry_status"] == "reentered" and got["crm_ref"].startswith("CRM-")

    # what it is not told it keeps; bad input is a message and exit code 2, not a traceback
    assert off_loop(main, ["crm", "set", "--site", site.slug, "--url", crm_standin.url, "--off"]) == 0
    async with db() as session:
        site_id = (await session.execute(select(Site.id).where(Site.slug == site.slug))).scalar_one()
        row = await session.get(crm.CrmConnector, site_id)
        assert row is not None and row.mapping == MAPPING and row.auth == "header" and not row.enabled
    assert off_loop(main, ["crm", "set", "--site", "no-such-site", "--url", crm_standin.url]) == 2
    assert off_loop(main, ["crm", "set", "--site", site.slug, "--url", "https://10.0.0.1/x"]) == 2
    assert "private address" in capsys.readouterr().err


async def test_two_senders_at_once_a_switched_off_connector_and_a_record_changed_in_the_queue(
    client, db, site, sender, crm_standin
):
    records = [record(call(f"并发{i}", i)) for i in range(30)]
    await sync(client, site, records)
    await set_connector(client, site, crm_standin)
    await set_connector(client, site, crm_standin, enabled=False)
    assert (await client.post("/api/crm/push", json={}, headers=site.headers("lead"))).status_code == 409
    await set_connector(client, site, crm_standin)
    assert (await push(client, site))["count"] == 30
    # switched off while queued: the deliveries wait, nothing is sent
    await set_connector(client, site, crm_standin, enabled=False)
    assert await crmpush.drain(sender) == 0 and crm_standin.requests == []
    await set_connector(client, site, crm_standin)
    # a record changed after it was queued: its delivery is superseded, the new rev is pending again
    changed = {**records[0], "rev": 2, "data": {**records[0]["data"], "details": "改了"}}
    await sync(client, site, [changed])
    # two senders (two app processes) at once: each delivery is claimed by one of them
    other = SimpleNamespace(
        **{**vars(sender), "outbound": outbound.Client(sender.settings.outbound_allow, 5)}
    )
    try:
        tried = await asyncio.gather(crmpush.drain(sender), crmpush.drain(other))
    finally:
        await other.outbound.close()
    assert sum(tried) == 30
    keys = [r["key"] for r in crm_standin.requests]
    assert len(keys) == len(set(keys)) == 29 and len(crm_standin.entries) == 29
    got = (await client.get(f"/api/records/{changed['id']}", headers=site.headers("lead"))).json()
    assert got["reentry_status"] == "pending" and got["crm_ref"] is None
    assert (await push(client, site))["count"] == 1
    await settle(sender)
    assert crm.idempotency_key(changed["id"], 2) in crm_standin.entries and len(crm_standin.entries) == 30
    listing = (await client.get("/api/crm/deliveries?state=superseded", headers=site.headers("lead"))).json()
    assert [(d["record_id"], d["rev"]) for d in listing["items"]] == [(changed["id"], 1)]
