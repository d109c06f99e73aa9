"""The device fleet (what each device still holds, from its syncs) and the audit log, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from backend import audit
from backend.auth import CurrentUser

from .test_sync_api import record


async def test_fleet_shows_what_each_device_still_holds(client, site, other_site):
    sent = [record(1), record(2)]
    body = {
        "device_id": "tablet-7",
        "records": sent,
        "device": {"unsent": 5, "drafts": 1, "oldest_unsent_at": "2026-11-23T10:00:00+08:00"},
    }
    answer = await client.post("/api/sync", json=body, headers=site.headers("agent"))
    assert answer.status_code == 200, answer.text
    # Another site's device never shows here.
    await client.post(
        "/api/sync",
        json={"device_id": "x", "records": [], "device": {"unsent": 9}},
        headers=other_site.headers("agent"),
    )

    fleet = (await client.get("/api/fleet", headers=site.headers("lead"))).json()
    assert fleet["unsent"] == 3  # 5 held when sending, 2 of them now stored
    (device,) = fleet["devices"]
    assert device["device_id"] == "tablet-7" and device["user_id"] == site.users["agent"]
    assert (device["unsent"], device["drafts"]) == (3, 1)
    assert device["oldest_unsent_at"].startswith("2026-11-23T02:00:00")

    # The next sync empties the queue: the device is shown holding nothing, and when it was last seen.
    await client.post(
        "/api/sync",
        json={"device_id": "tablet-7", "records": [record(3)], "device": {"unsent": 1}},
        headers=site.headers("agent"),
    )
    (device,) = (await client.get("/api/fleet", headers=site.headers("lead"))).json()["devices"]
    assert (device["unsent"], device["drafts"], device["oldest_unsent_at"]) == (0, 0, None)

    assert (await client.get("/api/fleet", headers=site.headers("agent"))).status_code == 403


async def test_a_bad_device_report_is_a_problem_not_a_500(client, site):
    bad = {"device_id": "d", "records": [], "device": {"unsent": -1}}
    answer = await client.post("/api/sync", json=bad, headers=site.headers("agent"))
    assert answer.status_code == 400 and answer.headers["content-type"].startswith("application/problem+json")


async def test_audit_log_is_per_site_and_for_admins(client, db, site, other_site):
    at = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
    async with db() as session:
        site_id = (await client.get("/api/auth/me", headers=site.headers("admin"))).json()
        admin = CurrentUser(
            site.users["admin"], site.usernames["admin"], "A", "admin", 0, site.slug, site.slug
        )
        ids = []
        for n in range(3):
            entry = await audit.record(
                session,
                site_id=await _site_id(session, site.slug),
                actor=admin,
                action="user.set_role",
                target=f"user:{n}",
                before={"role": "agent"},
                after={"role": "lead"},
                at=at,
            )
            ids.append(entry.id)
        await audit.record(
            session,
            site_id=await _site_id(session, other_site.slug),
            actor="cli",
            action="x",
            target="y",
            at=at,
        )
        await session.commit()
    assert site_id

    page = (await client.get("/api/audit?limit=2", headers=site.headers("admin"))).json()
    assert [e["id"] for e in page["entries"]] == ids[::-1][:2]
    assert page["entries"][0]["actor"] == site.usernames["admin"]
    assert page["entries"][0]["before"] == {"role": "agent"} and page["entries"][0]["after"] == {
        "role": "lead"
    }
    rest = (
        await client.get(f"/api/audit?before_id={page['next_before_id']}", headers=site.headers("admin"))
    ).json()
    assert [e["id"] for e in rest["entries"]] == [ids[0]] and rest["next_before_id"] is None
    assert (await client.get("/api/audit", headers=site.headers("manager"))).status_code == 403


async def _site_id(session, slug: str) -> int:
    from sqlalchemy import select

    from backend.auth import Site

    return (await session.execute(select(Site.id).where(Site.slug == slug))).scalar_one()
