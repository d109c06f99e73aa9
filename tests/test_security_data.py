"""Data integrity against a careless device and a curious agent (security issue, items 4-7, 10, 13), on SQLite
and PostgreSQL: every value the database cannot store is a per-record rejection and the good records beside it
are kept; sync applies the same ownership rules as the rest of the API; the change feed carries a callback only
to who works it; paper-row ids belong to one site; CSV cells never run as formulas; no form pattern can stall
the server."""

from __future__ import annotations

import asyncio
import csv
import io
import time
import uuid
from datetime import timedelta

from backend.auth import create_user, issue_token
from backend.printing import make_sheet_id, paper_record_id

from .conftest import PASSWORD_HASH, SECRET
from .test_sync_api import call, record

EXTREMES = [
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "1899-12-31T23:59:59+00:00",
    "2200-01-01T00:00:00Z",
]


async def post_sync(client, site, records, role="agent", cursor=None, headers=None):
    response = await client.post(
        "/api/sync",
        json={"device_id": f"dev-{role}", "cursor": cursor, "records": records},
        headers=headers or site.headers(role),
    )
    assert response.status_code == 200, response.text
    return response.json()


async def another_agent(db, site) -> dict[str, str]:
    """A second agent at the same site: the Authorization header of their login."""
    async with db() as session:
        user = await create_user(
            session,
            f"{site.slug}-agent2-{uuid.uuid4().hex[:4]}",
            "agent",
            site.slug,
            "x",
            "第二坐席",
            password_hash=PASSWORD_HASH,
        )
        token, _ = issue_token(session, SECRET, user.id, timedelta(hours=1))
        await session.commit()
    return {"Authorization": f"Bearer {token}"}


# ---------------------------------------------------------------- 4. values the database cannot store


async def test_unstorable_values_reject_only_their_own_record(client, site):
    good = record(1)
    bad = [
        {**record(2), "captured_at": EXTREMES[0]},
        {**record(3), "captured_at": EXTREMES[1]},
        {**record(4), "captured_at": EXTREMES[3]},
        record(5, called_at=EXTREMES[0]),
        record(6, callback_due=EXTREMES[1]),
        record(7, called_at=EXTREMES[2]),
        {**record(8), "form_version": 2**40},
        {**record(9), "incident_id": 2**40},
        {**record(10), "incident_id": 2**31},
        record(11, caller_name="张\x00三"),
        record(12, details="a\x00"),
        {**record(13), "sheet_row": 2**40, "source": "paper", "sheet_id": "X"},
    ]
    answer = await post_sync(client, site, [good, *bad])
    statuses = [r["status"] for r in answer["results"]]
    assert statuses == ["created"] + ["rejected"] * len(bad), answer["results"]
    fields = [set((r.get("errors") or {}).keys()) for r in answer["results"][1:]]
    assert fields[0] == fields[1] == fields[2] == {"captured_at"}
    assert fields[3] == {"called_at"} and fields[4] == {"callback_due"} and fields[5] == {"called_at"}
    assert fields[9] == {"caller_name"} and fields[10] == {"details"}
    codes = {r["errors"][k]["code"] for r in answer["results"][4:7] for k in r["errors"]}
    assert codes == {"datetime"}  # the codes the device shows for its own checks
    # the device retries the batch: the good one is a duplicate, the bad ones rejected again, never a 4xx/5xx
    again = await post_sync(client, site, [good, *bad])
    assert [r["status"] for r in again["results"]] == ["duplicate"] + ["rejected"] * len(bad)


async def test_integers_in_data_stay_within_what_json_keeps(client, site):
    form = {
        "slug": f"count-{uuid.uuid4().hex[:6]}",
        "title": {"zh-CN": "人数", "en": "Headcount"},
        "fields": [{"name": "people", "type": "integer", "label": {"zh-CN": "人数", "en": "People"}}],
    }
    created = await client.post("/api/forms", json=form, headers=site.headers("admin"))
    assert created.status_code in (200, 201), created.text
    rows = [
        {
            "id": str(uuid.uuid4()),
            "form": form["slug"],
            "form_version": 1,
            "rev": 1,
            "captured_at": "2026-11-23T10:00:00+08:00",
            "data": {"people": n},
        }
        for n in (12, 2**63, -(2**70))
    ]
    answer = await post_sync(client, site, rows)
    assert [r["status"] for r in answer["results"]] == ["created", "rejected", "rejected"]
    assert [r["errors"]["people"]["code"] for r in answer["results"][1:]] == ["max", "min"]


async def test_callback_attempts_with_unstorable_values_are_rejected_alone(client, site):
    answer = await post_sync(client, site, [record(1)])
    callback_id = answer["results"][0]["id"]
    good = {
        "id": str(uuid.uuid4()),
        "callback_id": callback_id,
        "outcome": "no_answer",
        "attempted_at": "2026-11-23T11:00:00+08:00",
    }
    bad = [{**good, "id": str(uuid.uuid4()), "attempted_at": t} for t in EXTREMES] + [
        {**good, "id": str(uuid.uuid4()), "note": "未接\x00通"}
    ]
    response = await client.post(
        "/api/callbacks/attempts", json={"attempts": [good, *bad]}, headers=site.headers()
    )
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["results"]] == ["created"] + ["rejected"] * len(bad)


# ---------------------------------------------------------------- 5. sync obeys ownership


async def test_an_agent_can_neither_change_nor_read_another_agents_record_through_sync(client, db, site):
    mine = record(1)
    await post_sync(client, site, [mine])
    other = await another_agent(db, site)
    attempts = [
        {**mine, "rev": 2, "data": call(1, caller_name="改掉")},  # a newer rev
        {**mine, "data": call(1, details="别的内容")},  # the same rev, other content
        mine,
    ]  # an exact replay
    answer = await post_sync(client, site, attempts, headers=other)
    for result in answer["results"]:
        assert result["status"] == "rejected" and result["errors"]["id"]["code"] == "taken", result
        assert "server" not in result and "receipt" not in result
    assert "张1" not in str(answer)
    stored = (await client.get(f"/api/records/{mine['id']}", headers=site.headers("lead"))).json()
    assert stored["rev"] == 1 and stored["data"]["caller_name"] == "张1"
    # a lead may correct it (as GET /api/records/{id} lets leads read it); the author stays the author
    fixed = await post_sync(
        client, site, [{**mine, "rev": 2, "data": call(1, details="组长更正")}], role="lead"
    )
    assert fixed["results"][0]["status"] == "updated"
    stored = (await client.get(f"/api/records/{mine['id']}", headers=site.headers("agent"))).json()
    assert stored["agent_id"] == site.users["agent"] and stored["data"]["details"] == "组长更正"


# ---------------------------------------------------------------- 6. the feed, per recipient


async def test_the_change_feed_carries_a_callback_only_to_its_owner_and_the_leads(client, db, site):
    other = await another_agent(db, site)
    cursors = {}
    for who, headers in (("agent", site.headers("agent")), ("other", other), ("lead", site.headers("lead"))):
        cursors[who] = (await post_sync(client, site, [], headers=headers))["cursor"]
    secret_name = f"客户{uuid.uuid4().hex[:6]}"
    await post_sync(client, site, [record(1, caller_name=secret_name)])

    async def feed(who, headers):
        return await post_sync(client, site, [], cursor=cursors[who], headers=headers)

    assert secret_name in str(await feed("agent", site.headers("agent")))
    assert secret_name in str(await feed("lead", site.headers("lead")))
    assert secret_name not in str(await feed("other", other))
    # a lead reassigns it to the other agent: the other agent now gets it, the first agent learns it left
    callbacks = (await client.get("/api/callbacks", headers=site.headers("lead"))).json()["items"]
    [callback] = [c for c in callbacks if c["caller_name"] == secret_name]
    users = (await client.get("/api/users", headers=site.headers("lead"))).json()
    other_id = next(u["id"] for u in users if "agent2" in u["username"])
    assigned = await client.put(
        f"/api/callbacks/{callback['id']}/owner", json={"owner_id": other_id}, headers=site.headers("lead")
    )
    assert assigned.status_code == 200, assigned.text
    assert secret_name in str(await feed("other", other))
    kinds = [c["kind"] for c in (await feed("agent", site.headers("agent")))["changes"]]
    assert "callback.assigned" in kinds


# ---------------------------------------------------------------- 7. paper rows belong to their site


async def test_another_site_cannot_take_our_paper_rows(client, site, other_site):
    sheet = make_sheet_id("261123")
    ours = {
        **record(1, rid=str(paper_record_id(site.slug, sheet, 1))),
        "source": "paper",
        "sheet_id": sheet,
        "sheet_row": 1,
    }
    stolen = {**ours, "data": call(1, caller_name="抢注")}
    # site B sends our row's id: refused (the id is not derived from its own site)
    refused = await post_sync(client, other_site, [stolen])
    assert refused["results"][0]["status"] == "rejected"
    assert refused["results"][0]["errors"]["id"]["code"] == "paper_id"
    # site B types the same sheet ID in with its own ids: a record of its own, never ours
    theirs = {**stolen, "id": str(paper_record_id(other_site.slug, sheet, 1))}
    assert (await post_sync(client, other_site, [theirs]))["results"][0]["status"] == "created"
    assert (await post_sync(client, site, [ours]))["results"][0]["status"] == "created"  # ours is not "taken"


# ---------------------------------------------------------------- 10. CSV cells never run as formulas


async def test_csv_export_guards_formula_cells(client, site):
    evil = record(
        1,
        caller_name='=HYPERLINK("http://x.invalid","点我")',
        phone="+86 137 0000 0000",
        details="@SUM(A1:A9)",
    )
    dash = record(2, caller_name="-2+3", details="\t=1+1")
    await post_sync(client, site, [evil, dash])
    response = await client.get("/api/recovery/export.csv", headers=site.headers("lead"))
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    cells = [cell for row in rows for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")], cells
    assert '\'=HYPERLINK("http://x.invalid","点我")' in cells and "'+86 137 0000 0000" in cells
    assert "'@SUM(A1:A9)" in cells and "'-2+3" in cells


# ---------------------------------------------------------------- 13. patterns that cannot stall the server


async def test_a_catastrophic_pattern_cannot_block_the_server(client, site):
    slug = f"pattern-{uuid.uuid4().hex[:6]}"
    form = {
        "slug": slug,
        "title": {"zh-CN": "编码", "en": "Code"},
        "fields": [
            {
                "name": "code",
                "type": "text",
                "pattern": "^(a+)+$",
                "max_length": 10000,
                "label": {"zh-CN": "编码", "en": "Code"},
            }
        ],
    }
    assert (await client.post("/api/forms", json=form, headers=site.headers("admin"))).status_code in (
        200,
        201,
    )
    row = {
        "id": str(uuid.uuid4()),
        "form": slug,
        "form_version": 1,
        "rev": 1,
        "captured_at": "2026-11-23T10:00:00+08:00",
        "data": {"code": "a" * 5000 + "!"},
    }
    started = time.monotonic()
    answer = await asyncio.wait_for(post_sync(client, site, [row]), 30)  # Python's re would never finish
    assert time.monotonic() - started < 30
    assert answer["results"][0]["errors"]["code"]["code"] == "pattern"
    # what RE2 cannot run in linear time (a backreference) is refused when the form is saved
    refused = await client.post(
        "/api/forms",
        json={**form, "slug": slug + "-b", "fields": [{**form["fields"][0], "pattern": r"^(a)\1$"}]},
        headers=site.headers("admin"),
    )
    assert refused.status_code == 422 and "fields.code" in refused.json()["errors"]
