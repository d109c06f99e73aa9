"""POST /api/sync and GET /api/records on SQLite and PostgreSQL: exactly-once storage, conflicts, rejections."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from backend.app import RECORD_HOOKS
from backend.auth import CurrentUser, Site, User
from backend.changes import Change, add_change
from backend.printing import make_sheet_id, paper_record_id
from backend.records import Record
from backend.sync import store_batch


def call(n: int = 0, **data) -> dict:
    """A valid call-record (form version 1)."""
    values = {
        "called_at": "2026-11-23T10:00:00+08:00",
        "caller_name": f"张{n}",
        "phone": f"1380000{n:04d}",
        "category": "order_billing",
        "urgency": "normal",
        "details": f"查询订单 {n}",
        "callback_promised": True,
        "callback_due": "2026-11-23T12:00:00+08:00",
    }
    values.update(data)
    return values


def record(n: int = 0, *, rid: str | None = None, rev: int = 1, **data) -> dict:
    return {
        "id": rid or str(uuid.uuid4()),
        "form": "call-record",
        "form_version": 1,
        "rev": rev,
        "captured_at": "2026-11-23T10:00:05+08:00",
        "data": call(n, **data),
    }


async def sync(client, site, records, role="agent", device="dev-1", cursor=None):
    response = await client.post(
        "/api/sync",
        json={"device_id": device, "cursor": cursor, "records": records},
        headers=site.headers(role),
    )
    assert response.status_code == 200, response.text
    return response.json()


async def count(db, site, rid=None) -> int:
    async with db() as session:
        q = (
            select(func.count())
            .select_from(Record)
            .join(Site, Site.id == Record.site_id)
            .where(Site.slug == site.slug)
        )
        if rid:
            q = q.where(Record.id == uuid.UUID(rid))
        return (await session.execute(q)).scalar_one()


async def test_created_then_replayed_20_times_is_one_copy_each(client, db, site):
    batch = [record(n) for n in range(5)]
    first = await sync(client, site, batch)
    assert [r["status"] for r in first["results"]] == ["created"] * 5
    receipts = [r["receipt"] for r in first["results"]]
    assert all(r.startswith("R-") for r in receipts) and len(set(receipts)) == 5
    for _ in range(20):
        again = await sync(client, site, batch)
        assert [r["status"] for r in again["results"]] == ["duplicate"] * 5
        assert [r["receipt"] for r in again["results"]] == receipts  # the original receipt, every time
    assert await count(db, site) == 5


async def test_stamps_device_agent_site_and_both_clocks(client, db, site):
    before = datetime.now(UTC)
    item = record(1)
    await sync(client, site, [item], device="phone-42")
    async with db() as session:
        stored = (
            await session.execute(select(Record).where(Record.id == uuid.UUID(item["id"])))
        ).scalar_one()
    assert stored.device_id == "phone-42" and stored.agent_id == site.users["agent"]
    assert stored.captured_at == datetime(2026, 11, 23, 2, 0, 5, tzinfo=UTC)  # device clock, kept
    assert before - timedelta(seconds=5) <= stored.received_at <= datetime.now(UTC) + timedelta(seconds=5)
    assert stored.source == "device" and stored.reentry_status == "pending" and stored.seq > 0


async def test_racing_identical_batches_store_one_copy(client, db, site):
    batch = [record(n) for n in range(30)]
    answers = await asyncio.gather(*[sync(client, site, batch) for _ in range(4)])
    for n in range(30):
        statuses = sorted(a["results"][n]["status"] for a in answers)
        assert statuses == ["created", "duplicate", "duplicate", "duplicate"], statuses
        assert len({a["results"][n]["receipt"] for a in answers}) == 1
    assert await count(db, site) == 30


async def test_truly_concurrent_sessions_store_one_copy(db, site, database_url):
    """Two database sessions storing the same batch at the same moment (real parallel transactions on
    PostgreSQL): the primary key and ON CONFLICT make exactly one of them the creator of each record."""
    async with db() as session:
        agent = (await session.execute(select(User).where(User.id == site.users["agent"]))).scalar_one()
        site_row = await session.get(Site, agent.site_id)
    user = CurrentUser(
        agent.id, agent.username, agent.display_name, "agent", site_row.id, site_row.slug, site_row.name
    )

    async def one(records: list[dict]) -> dict[str, str]:
        async with db() as session:
            results = await store_batch(
                session, user, "dev-race", records, hooks=RECORD_HOOKS, now=datetime.now(UTC)
            )
            await asyncio.sleep(0.05)  # hold the transaction open so the other one meets the same rows
            await session.commit()
            return {r.id: r.status for r in results}

    # Then the same new records in opposite orders: rows are locked in id order, so no deadlock.
    for reorder in (list, lambda records: records[::-1]):
        batch = [record(n) for n in range(40)]
        a, b = await asyncio.gather(one(batch), one(reorder(batch)))
        assert a.keys() == b.keys()
        for rid in a:
            assert sorted([a[rid], b[rid]]) == ["created", "duplicate"]
    assert await count(db, site) == 80


async def test_mixed_batch_keeps_the_good_records(client, db, site):
    good1, good2 = record(1), record(2)
    bad_field = record(3, phone="not a phone!")
    missing = record(4)
    del missing["data"]["caller_name"]
    unknown_form = {**record(5), "form": "no-such-form"}
    old_version = {**record(6), "form_version": 99}
    malformed = {"id": "not-a-uuid", "rev": "one"}
    naive_time = {**record(7), "captured_at": "2026-11-23T10:00:00"}
    answer = await sync(
        client,
        site,
        [good1, bad_field, "garbage", missing, unknown_form, malformed, good2, old_version, naive_time, 42],
    )
    statuses = [r["status"] for r in answer["results"]]
    assert statuses == [
        "created",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "created",
        "rejected",
        "rejected",
        "rejected",
    ]
    results = answer["results"]
    assert results[1]["errors"]["phone"]["code"] == "pattern"
    assert results[3]["errors"]["caller_name"]["code"] == "required"
    assert "no-such-form" in results[4]["message"] and results[4]["errors"]["form"]["code"] == "unknown_form"
    assert results[5]["id"] == "not-a-uuid" and results[5]["errors"]
    assert "99" in results[7]["message"]
    assert results[8]["errors"]["captured_at"]["code"] == "malformed"
    assert [r["index"] for r in results] == list(range(10))
    assert await count(db, site) == 2
    assert await count(db, site, good1["id"]) == 1 and await count(db, site, good2["id"]) == 1


async def test_newer_rev_updates_and_stale_rev_conflicts_with_server_copy(client, db, site):
    item = record(1)
    created = (await sync(client, site, [item]))["results"][0]
    edited = {**item, "rev": 2, "data": call(1, details="改：客户要求退款")}
    updated = (await sync(client, site, [edited]))["results"][0]
    assert updated["status"] == "updated" and updated["rev"] == 2 and updated["receipt"] != created["receipt"]
    # Another device still has rev 1 with other content, and rev 2 with yet other content.
    stale = {**item, "data": call(1, details="旧内容")}
    for attempt in (stale, item, {**item, "rev": 2, "data": call(1, details="另一台设备的改动")}):
        result = (await sync(client, site, [attempt], device="dev-2"))["results"][0]
        assert result["status"] == "conflict", result
        assert result["server"]["rev"] == 2 and result["server"]["data"]["details"] == "改：客户要求退款"
        assert result["server"]["receipt"] == updated["receipt"]
    # Keep mine = send it again as a newer rev.
    mine = {**item, "rev": 3, "data": call(1, details="旧内容")}
    assert (await sync(client, site, [mine], device="dev-2"))["results"][0]["status"] == "updated"
    assert (await sync(client, site, [mine], device="dev-2"))["results"][0]["status"] == "duplicate"
    assert await count(db, site) == 1


async def test_same_id_twice_in_one_batch(client, db, site):
    item = record(1)
    answer = await sync(client, site, [item, item, {**item, "rev": 2, "data": call(1, details="第二版")}])
    assert [r["status"] for r in answer["results"]] == ["created", "duplicate", "updated"]
    assert await count(db, site) == 1


async def test_paper_rows_are_idempotent_by_their_deterministic_id(client, db, site):
    sheet = make_sheet_id("261123")
    rid = str(paper_record_id(site.slug, sheet, 3))
    paper = {**record(3, rid=rid), "source": "paper", "sheet_id": sheet.lower(), "sheet_row": 3}
    assert (await sync(client, site, [paper], role="lead"))["results"][0]["status"] == "created"
    assert (await sync(client, site, [paper], role="lead"))["results"][0]["status"] == "duplicate"
    typo = {**paper, "data": call(3, caller_name="张三丰")}
    assert (await sync(client, site, [typo], role="lead"))["results"][0]["status"] == "conflict"
    half = {**record(4), "source": "paper"}  # paper without its sheet reference
    assert (await sync(client, site, [half], role="lead"))["results"][0]["status"] == "rejected"
    made_up = {**paper, "id": str(uuid.uuid4())}  # an id not derived from the sheet and row
    answer = (await sync(client, site, [made_up], role="lead"))["results"][0]
    assert answer["status"] == "rejected" and answer["errors"]["id"]["code"] == "paper_id"
    bad_sheet = {**paper, "sheet_id": "261123-XXXXXX-X"}
    assert (await sync(client, site, [bad_sheet], role="lead"))["results"][0]["errors"]["sheet_id"][
        "code"
    ] == "sheet_id"
    listed = (
        await client.get(
            "/api/records", params={"source": "paper", "sheet_id": sheet}, headers=site.headers("lead")
        )
    ).json()
    assert listed["total"] == 1 and listed["items"][0]["sheet_row"] == 3


async def test_limits_give_clear_413(client, site, settings_for):
    too_many = [record(n) for n in range(501)]
    response = await client.post(
        "/api/sync", json={"device_id": "d", "records": too_many}, headers=site.headers()
    )
    assert response.status_code == 413
    body = response.json()
    assert "at most 500" in body["detail"] and body["max_records"] == 500
    huge = [record(1, details="x" * 1000) for _ in range(1)] * 1
    huge[0]["data"]["details"] = "x" * (5 * 1024 * 1024)
    response = await client.post(
        "/api/sync", json={"device_id": "d", "records": huge}, headers=site.headers()
    )
    assert response.status_code == 413 and "fewer records" in response.json()["detail"]


async def test_envelope_errors_and_auth(client, site):
    response = await client.post("/api/sync", json={"records": []}, headers=site.headers())
    assert response.status_code == 400 and "device_id" in response.text
    response = await client.post(
        "/api/sync", json={"device_id": "d", "records": [], "cursor": "x.y"}, headers=site.headers()
    )
    assert response.status_code == 400 and "cursor" in response.json()["detail"]
    response = await client.post("/api/sync", json={"device_id": "d", "records": []})
    assert response.status_code == 401


async def test_record_ids_are_scoped_to_the_site(client, db, site, other_site):
    item = record(1)
    await sync(client, site, [item])
    answer = await sync(client, other_site, [item])
    result = answer["results"][0]
    assert (
        result["status"] == "rejected"
        and "server" not in result
        and result["errors"]["id"]["code"] == "taken"
    )
    listed = (await client.get("/api/records", headers=other_site.headers("lead"))).json()
    assert listed["total"] == 0
    response = await client.get(f"/api/records/{item['id']}", headers=other_site.headers("admin"))
    assert response.status_code == 404


async def test_list_records_filters_roles_and_paging(client, site):
    mine = [record(n) for n in range(5)]
    mine[0]["incident_id"] = 77
    await sync(client, site, mine, role="agent")
    await sync(client, site, [record(9)], role="lead")
    own = (await client.get("/api/records", headers=site.headers("agent"))).json()
    assert own["total"] == 5 and {i["agent_id"] for i in own["items"]} == {site.users["agent"]}
    everyone = (await client.get("/api/records", headers=site.headers("lead"))).json()
    assert everyone["total"] == 6
    by_agent = (
        await client.get(
            "/api/records", params={"agent": site.users["lead"]}, headers=site.headers("manager")
        )
    ).json()
    assert by_agent["total"] == 1
    incident = (
        await client.get("/api/records", params={"incident_id": 77}, headers=site.headers("lead"))
    ).json()
    assert [i["id"] for i in incident["items"]] == [mine[0]["id"]]
    pending = (
        await client.get(
            "/api/records", params={"status": "pending", "form": "call-record"}, headers=site.headers("lead")
        )
    ).json()
    assert pending["total"] == 6
    seen, after = [], 0
    while True:
        page = (
            await client.get(
                "/api/records", params={"limit": 2, "after": after}, headers=site.headers("lead")
            )
        ).json()
        seen += [i["id"] for i in page["items"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert len(seen) == 6 == len(set(seen))
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await client.get("/api/records", params={"since": future}, headers=site.headers("lead"))).json()[
        "total"
    ] == 0
    bad = await client.get("/api/records", params={"status": "lost"}, headers=site.headers("lead"))
    assert bad.status_code == 400
    one = await client.get(f"/api/records/{mine[1]['id']}", headers=site.headers("agent"))
    assert one.status_code == 200 and one.json()["data"]["caller_name"] == "张1"
    assert (
        await client.get(f"/api/records/{mine[1]['id']}", headers=site.headers("lead"))
    ).status_code == 200


async def test_change_feed_and_hook(client, db, site, monkeypatch):
    first = await sync(client, site, [])
    kinds = [c["kind"] for c in first["changes"]]
    assert kinds == ["content.updated"]  # a new device learns the content cursor
    cursor = first["cursor"]
    assert (await sync(client, site, [], cursor=cursor))["changes"] == []
    async with db() as session:
        site_id = (await session.execute(select(Site.id).where(Site.slug == site.slug))).scalar_one()
        await add_change(
            session,
            site_id,
            "callback.assigned",
            "r-1",
            {"to": site.users["agent"]},
            user_id=site.users["agent"],
        )
        await add_change(
            session,
            site_id,
            "callback.assigned",
            "r-2",
            {"to": site.users["lead"]},
            user_id=site.users["lead"],
        )
        await add_change(session, site_id, "record.status", "r-3", {"status": "reentered"})
        await session.commit()
    answer = await sync(client, site, [], cursor=cursor)
    assert [(c["kind"], c["ref"]) for c in answer["changes"]] == [
        ("callback.assigned", "r-1"),
        ("record.status", "r-3"),
    ]
    assert (await sync(client, site, [], cursor=answer["cursor"]))["changes"] == []
    # A new playbook version shows up as content.updated.
    playbook = (await client.get("/api/playbooks/power-outage", headers=site.headers("admin"))).json()
    assert (
        await client.put("/api/playbooks/power-outage", json=playbook, headers=site.headers("admin"))
    ).status_code in (200, 201)
    later = await sync(client, site, [], cursor=answer["cursor"])
    assert [c["kind"] for c in later["changes"]] == ["content.updated"]

    # The hook runs for created and updated records, inside the same transaction.
    seen = []

    async def hooked(session, stored, now):
        seen.extend((str(record.id), record.rev, outcome, record.receipt) for record, outcome in stored)

    monkeypatch.setattr(client.app.state, "record_hooks", [hooked])
    item = record(1)
    await sync(client, site, [item])
    await sync(client, site, [item])
    await sync(client, site, [{**item, "rev": 2, "data": call(1, details="更新")}])
    assert [(s[0], s[1], s[2]) for s in seen] == [(item["id"], 1, "created"), (item["id"], 2, "updated")]


async def test_failing_hook_rolls_back_the_whole_batch(client, db, site, monkeypatch):
    async def broken(session, stored, now):
        raise RuntimeError("boom")

    monkeypatch.setattr(client.app.state, "record_hooks", [broken])
    item = record(1)
    response = await client.post(
        "/api/sync", json={"device_id": "d", "records": [item]}, headers=site.headers()
    )
    assert response.status_code == 500 and response.json()["detail"]  # problem details, nothing acknowledged
    assert await count(db, site) == 0  # nothing stored that the device was not told about


async def test_change_rows_have_increasing_cursors(db, site):
    async with db() as session:
        site_id = (await session.execute(select(Site.id).where(Site.slug == site.slug))).scalar_one()
        for n in range(3):
            await add_change(session, site_id, "x", str(n), {})
        await session.commit()
        ids = list(
            (
                await session.execute(select(Change.id).where(Change.site_id == site_id).order_by(Change.ref))
            ).scalars()
        )
        assert ids == sorted(ids) and len(set(ids)) == 3
        assert (
            await session.execute(select(func.count()).select_from(Change).where(Change.site_id == site_id))
        ).scalar_one() == 3
