"""Retention of callers' personal data: the per-site rule run by the worker (with a manual clock), erasure of
one caller's data on request, what stays for the counts, and the audit entries (which never hold the data)."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

from sqlalchemy import select

from backend import retention
from backend.audit import AuditEntry
from backend.auth import Site
from backend.clock import ManualClock
from backend.export import export_site


def call(name: str, phone: str, details: str = "停电，冰箱坏了") -> dict:
    return {
        "id": str(uuid.uuid4()),
        "form": "call-record",
        "form_version": 1,
        "rev": 1,
        "captured_at": "2026-11-23T10:00:05+08:00",
        "data": {
            "called_at": "2026-11-23T10:00:00+08:00",
            "caller_name": name,
            "phone": phone,
            "category": "complaint",
            "urgency": "urgent",
            "details": details,
            "callback_promised": True,
            "callback_due": "2026-11-23T12:00:00+08:00",
        },
    }


async def store(client, site, records) -> None:
    response = await client.post(
        "/api/sync", json={"device_id": "d1", "records": records}, headers=site.headers("agent")
    )
    assert response.status_code == 200, response.text
    assert all(r["status"] == "created" for r in response.json()["results"]), response.text


async def site_dump(db, slug: str) -> str:
    async with db() as session:
        return json.dumps(await export_site(session, slug), ensure_ascii=False)


async def audit_entries(db, slug: str) -> list[AuditEntry]:
    async with db() as session:
        site_id = (await session.execute(select(Site.id).where(Site.slug == slug))).scalar_one()
        query = select(AuditEntry).where(
            AuditEntry.site_id == site_id, AuditEntry.action == "retention.erase"
        )
        return list((await session.execute(query.order_by(AuditEntry.id))).scalars())


async def test_rule_erases_reentered_and_closed_records_after_n_days(client, db, site):
    clock = ManualClock()
    client.app.state.clock = clock
    try:
        done, closed, pending = (
            call("张三丰", "13811112222", "订单 A-778899 要退款"),
            call("李四光", "13933334444", "账户 556677 改地址"),
            call("王五", "13755556666", "还没录入"),
        )
        await store(client, site, [done, closed, pending])
        for rec, status in ((done, "reentered"), (closed, "closed")):
            body = {"status": status, "records": [{"id": rec["id"]}], "crm_ref": "CRM-1"}
            answer = await client.post("/api/recovery/reentry", json=body, headers=site.headers("lead"))
            assert answer.status_code == 200, answer.text
        counts = (await client.get("/api/recovery/counts", headers=site.headers("lead"))).json()

        assert (
            await client.put("/api/retention", json={"erase_after_days": 30}, headers=site.headers("manager"))
        ).status_code == 403
        bad = await client.put("/api/retention", json={"erase_after_days": 0}, headers=site.headers("admin"))
        assert bad.status_code == 400 and bad.headers["content-type"].startswith("application/problem+json")
        rule = await client.put(
            "/api/retention", json={"erase_after_days": 30}, headers=site.headers("admin")
        )
        assert rule.status_code == 200 and rule.json()["erase_after_days"] == 30, rule.text

        worker = SimpleNamespace(sessionmaker=db, clock=clock)
        clock.advance(days=29, hours=23)
        await retention.erase_due(worker)
        assert "13811112222" in await site_dump(db, site.slug)  # not yet: 30 days have not passed

        clock.advance(hours=2)
        assert await retention.erase_due(worker) >= 2
        dump = await site_dump(db, site.slug)
        for secret in ("张三丰", "13811112222", "A-778899", "李四光", "13933334444", "556677"):
            assert secret not in dump, secret
        assert "13755556666" in dump and "王五" in dump  # pending re-entry: kept whole

        shown = (await client.get(f"/api/records/{done['id']}", headers=site.headers("lead"))).json()
        assert shown["data"]["phone"] == "" and shown["data"]["caller_name"] == ""
        assert shown["data"]["category"] == "complaint" and shown["reentry_status"] == "reentered"
        assert (await client.get("/api/recovery/counts", headers=site.headers("lead"))).json() == counts
        callbacks = (await client.get("/api/callbacks", headers=site.headers("lead"))).json()["items"]
        assert sorted(c["phone"] for c in callbacks) == ["", "", "13755556666"]

        entries = await audit_entries(db, site.slug)
        assert len(entries) == 1 and entries[0].actor == "system"
        assert sorted(entries[0].after["record_ids"]) == sorted([done["id"], closed["id"]])
        assert "1381111" not in json.dumps(entries[0].after) and entries[0].before is None
        clock.advance(days=1)
        await retention.erase_due(worker)
        assert len(await audit_entries(db, site.slug)) == 1  # nothing left to erase: no new entry
        summary = (await client.get("/api/retention", headers=site.headers("admin"))).json()
        assert summary["erased_records"] == 2
    finally:
        client.app.state.clock = None


async def test_admin_erases_one_callers_data_on_request(client, db, site, other_site):
    mine = [
        call("赵六", "138 0000 1111"),
        call("赵六", "+86 13800001111".replace("+86 ", "")),
        call("钱七", "13922223333"),
    ]
    theirs = call("赵六", "13800001111")
    await store(client, site, mine)
    await store(client, other_site, [theirs])

    denied = await client.post(
        "/api/retention/erase", json={"phone": "13800001111"}, headers=site.headers("manager")
    )
    assert denied.status_code == 403
    answer = await client.post(
        "/api/retention/erase", json={"phone": "13800001111"}, headers=site.headers("admin")
    )
    assert answer.status_code == 200, answer.text
    assert sorted(answer.json()["record_ids"]) == sorted([mine[0]["id"], mine[1]["id"]])

    dump = await site_dump(db, site.slug)
    assert "赵六" not in dump and "13800001111" not in dump and "138 0000 1111" not in dump
    assert "钱七" in dump and "13922223333" in dump
    assert "13800001111" in await site_dump(db, other_site.slug)  # another site's caller is not touched
    entries = await audit_entries(db, site.slug)
    assert len(entries) == 1 and entries[0].after["reason"] == "request"
    assert entries[0].actor == site.usernames["admin"]
    # (the phone in every spelling; not "1111" alone, which a random record id in the entry may hold)
    audit_text = json.dumps([entries[0].before, entries[0].after], ensure_ascii=False)
    assert not any(p in audit_text for p in ("13800001111", "138 0000 1111", "赵六"))
    again = await client.post(
        "/api/retention/erase", json={"phone": "13800001111"}, headers=site.headers("admin")
    )
    assert again.json()["erased"] == 0
