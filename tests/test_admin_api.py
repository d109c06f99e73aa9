"""Administration through the API, on SQLite and PostgreSQL: users (audited), the site (time zone checked by
zoneinfo, contact directory reaching the playbooks), the playbook and form editor (draft, diff, publish, roll
back, refusing what would break records) and the first-run setup."""

from __future__ import annotations

import pytest

from backend import firstrun

from .conftest import SECRET
from .test_sync_api import record, sync


async def audit_actions(client, site) -> list[str]:
    entries = (await client.get("/api/audit", headers=site.headers("admin"))).json()["entries"]
    return [e["action"] for e in entries]


async def test_admin_manages_users_and_every_change_is_audited(client, site, other_site):
    admin = site.headers("admin")
    weak = {"username": "new-agent-x", "password": "new-agent-x", "role": "agent"}
    bad = await client.post("/api/users", json=weak, headers=admin)
    assert bad.status_code == 400 and "username" in bad.json()["detail"]
    made = await client.post(
        "/api/users",
        json={"username": f"{site.slug}-new", "password": "a-long-password", "role": "agent"},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    again = await client.post(
        "/api/users",
        json={"username": f"{site.slug}-new", "password": "a-long-password", "role": "agent"},
        headers=admin,
    )
    assert again.status_code == 409
    users = (await client.get("/api/admin/users", headers=admin)).json()
    new = next(u for u in users if u["username"] == f"{site.slug}-new")
    assert new["active"] is True and new["role"] == "agent" and new["logins"] == 0
    assert all(u["username"].startswith(site.slug) for u in users)  # never another site's
    uid = new["id"]
    assert (
        await client.put(f"/api/users/{uid}/role", json={"role": "lead"}, headers=admin)
    ).status_code == 200
    assert (await client.post(f"/api/users/{uid}/disable", headers=admin)).status_code == 204
    assert (await client.post(f"/api/users/{uid}/enable", headers=admin)).status_code == 204
    pw = {"password": "another-long-one"}
    assert (await client.post(f"/api/users/{uid}/password", json=pw, headers=admin)).status_code == 204
    assert (await client.post(f"/api/users/{uid}/revoke", headers=admin)).status_code == 204
    entries = (await client.get("/api/audit", headers=admin)).json()["entries"]
    assert [e["action"] for e in entries][:6] == [
        "user.revoke",
        "user.password",
        "user.enable",
        "user.disable",
        "user.role",
        "user.create",
    ]
    role_change = entries[4]
    assert role_change["before"] == {"role": "agent"} and role_change["after"]["role"] == "lead"
    assert (
        role_change["actor"] == site.usernames["admin"] and role_change["target"] == f"user:{site.slug}-new"
    )
    assert all("another-long-one" not in str(e) for e in entries)  # never a password
    # Another site's admin cannot touch this user, nor read this site's log.
    other = other_site.headers("admin")
    assert (await client.post(f"/api/users/{uid}/disable", headers=other)).status_code == 404
    assert "user.create" not in await audit_actions(client, other_site)
    assert (await client.get("/api/admin/users", headers=site.headers("lead"))).status_code == 403


async def test_site_time_zone_is_checked_and_directory_reaches_playbooks(client, site):
    admin = site.headers("admin")
    bad = await client.put("/api/admin/site", json={"time_zone": "Mars/Olympus"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["errors"]["time_zone"]
    ok = await client.put(
        "/api/admin/site", json={"name": "北京一中心", "time_zone": "Asia/Urumqi"}, headers=admin
    )
    assert ok.status_code == 200 and ok.json()["time_zone"] == "Asia/Urumqi"
    me = (await client.get("/api/me", headers=site.headers("agent"))).json()
    assert me["site_time_zone"] == "Asia/Urumqi" and me["site_name"] == "北京一中心"
    site_view = ok.json()
    assert any(c["role"] == "ops" for c in site_view["playbook_contacts"])

    before = (await client.get("/api/content/cursor", headers=site.headers("agent"))).json()
    entry = {"role": "ops", "label": {"zh-CN": "运维值班", "en": "Ops on duty"}, "phone": "010-8888-0001"}
    manager = {
        "role": "manager",
        "label": {"zh-CN": "值班经理", "en": "Duty manager"},
        "phone": "138-0000-1111",
    }
    saved = await client.put("/api/admin/site/directory", json={"entries": [entry, manager]}, headers=admin)
    assert saved.status_code == 200, saved.text
    assert saved.json()["directory"][0]["phone"] == "010-8888-0001"
    after = (await client.get("/api/content/cursor", headers=site.headers("agent"))).json()
    assert after["cursor"] > before["cursor"]  # devices refetch the playbooks
    assert {d["kind"] for d in after["documents"]} == {"form", "playbook"}
    playbook = (
        await client.get("/api/playbooks/system-failure?lang=en", headers=site.headers("agent"))
    ).json()
    ops = next(c for c in playbook["contacts"] if c["role"] == "ops")
    assert ops["phone"] == "010-8888-0001"
    assert any(c["phone"] == "138-0000-1111" for rung in playbook["escalation"] for c in rung["contacts"])
    dup = await client.put("/api/admin/site/directory", json={"entries": [entry, entry]}, headers=admin)
    assert dup.status_code == 422
    bad_phone = {**entry, "phone": "call me"}
    assert (
        await client.put("/api/admin/site/directory", json={"entries": [bad_phone]}, headers=admin)
    ).status_code in (400, 422)
    actions = await audit_actions(client, site)
    assert actions[:2] == ["site.directory", "site.update"]


async def test_draft_diff_publish_and_roll_back_a_playbook(client, site):
    admin = site.headers("admin")
    editor = (await client.get("/api/admin/documents/playbook/power-outage", headers=admin)).json()
    published, version = editor["published"], editor["version"]
    assert editor["draft"] is None
    draft = {**published, "steps": [dict(s) for s in published["steps"]]}
    draft["steps"][0]["text"] = {
        "zh-CN": "立即通知运维和领导（已改）",
        "en": "Tell ops and leadership at once (edited)",
    }
    saved = await client.put("/api/admin/documents/playbook/power-outage/draft", json=draft, headers=admin)
    assert saved.status_code == 200, saved.text
    changes = saved.json()["changes"]
    first = published["steps"][0]["id"]
    assert [c["path"] for c in changes] == [f"steps[{first}].text.zh-CN", f"steps[{first}].text.en"]
    # Devices do not see the draft.
    agent = site.headers("agent")
    live = (await client.get("/api/playbooks/power-outage", headers=agent)).json()
    assert live["version"] == version and live["steps"][0]["text"] == published["steps"][0]["text"]
    listing = (await client.get("/api/admin/documents", headers=admin)).json()
    assert next(d for d in listing if d["slug"] == "power-outage")["draft"] is True

    # A draft must pass the same rules as a published version.
    broken = {**draft, "steps": draft["steps"] + [draft["steps"][0]]}
    refused = await client.put("/api/admin/documents/playbook/power-outage/draft", json=broken, headers=admin)
    assert refused.status_code == 422 and "steps" in refused.json()["errors"]

    done = await client.post("/api/admin/documents/playbook/power-outage/publish", headers=admin)
    assert done.status_code == 200 and done.json()["version"] == version + 1
    live = (await client.get("/api/playbooks/power-outage?lang=en", headers=agent)).json()
    assert live["version"] == version + 1 and live["steps"][0]["text"].endswith("(edited)")
    rolled = await client.post(
        "/api/admin/documents/playbook/power-outage/rollback", json={"version": version}, headers=admin
    )
    assert rolled.status_code == 200 and rolled.json()["version"] == version + 2
    live = (await client.get("/api/playbooks/power-outage", headers=agent)).json()
    assert live["steps"][0]["text"] == published["steps"][0]["text"]
    actions = await audit_actions(client, site)
    assert actions[:3] == ["playbook.rollback", "playbook.publish", "playbook.draft"]
    assert (
        await client.post("/api/admin/documents/playbook/power-outage/publish", headers=admin)
    ).status_code == 404
    assert (await client.get("/api/admin/documents", headers=site.headers("manager"))).status_code == 403


async def test_form_changes_that_would_break_records_are_refused(client, site):
    admin = site.headers("admin")
    await sync(client, site, [record(1, category="complaint")])
    form = (await client.get("/api/admin/documents/form/call-record", headers=admin)).json()["published"]
    url = "/api/admin/documents/form/call-record/draft"

    dropped = {**form, "fields": [f for f in form["fields"] if f["name"] != "caller_name"]}
    answer = await client.put(url, json=dropped, headers=admin)
    assert answer.status_code == 422 and "fields.caller_name" in answer.json()["errors"]

    retyped = {
        **form,
        "fields": [{**f, "type": "integer"} if f["name"] == "phone" else f for f in form["fields"]],
    }
    answer = await client.put(url, json=retyped, headers=admin)
    assert answer.status_code == 422 and "fields.phone" in answer.json()["errors"]

    def without_choice(f):
        if f["name"] != "category":
            return f
        return {**f, "choices": [c for c in f["choices"] if c["value"] != "complaint"]}

    answer = await client.put(
        url, json={**form, "fields": [without_choice(f) for f in form["fields"]]}, headers=admin
    )
    assert answer.status_code == 422 and "complaint" in answer.json()["errors"]["fields.category"]
    # The direct API refuses it too.
    assert (await client.put("/api/forms/call-record", json=dropped, headers=admin)).status_code == 422

    # Every rule the server validates records by holds in the editor: a pattern RE2 cannot run, a choice
    # field without choices.
    bad_pattern = {
        **form,
        "fields": [{**f, "pattern": "(a)\\1"} if f["name"] == "phone" else f for f in form["fields"]],
    }
    assert (await client.put(url, json=bad_pattern, headers=admin)).status_code == 422

    # Adding a field and a choice is fine; the new version validates new records.
    extra = {"name": "branch", "type": "text", "label": {"zh-CN": "网点", "en": "Branch"}, "max_length": 20}
    grown = {**form, "fields": [*form["fields"], extra]}
    assert (await client.put(url, json=grown, headers=admin)).status_code == 200
    published = await client.post("/api/admin/documents/form/call-record/publish", headers=admin)
    assert published.status_code == 200
    new_version = published.json()["version"]
    new = {**record(2), "form_version": new_version}
    new["data"]["branch"] = "x" * 21
    answer = await sync(client, site, [new])
    assert answer["results"][0]["status"] == "rejected"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_setup_needs_the_token_and_only_works_once(client, db):
    from sqlalchemy import update

    from backend.auth import User

    # The shared test database has admins: set them aside for this test, then put them back.
    async with db() as session:
        await session.execute(update(User).where(User.role == "admin").values(role="setaside"))
        await session.commit()
    try:
        assert (await client.get("/api/setup")).json()["needed"] is True
        body = {
            "token": "wrong",
            "username": "first-admin",
            "password": "first-admin-pw",
            "site_slug": "hq",
            "site_name": "总部 HQ",
            "time_zone": "Asia/Shanghai",
        }
        assert (await client.post("/api/setup", json=body)).status_code == 403
        token = firstrun.setup_token(SECRET)
        assert (
            await client.post("/api/setup", json={**body, "token": token, "time_zone": "Nowhere"})
        ).status_code == 422
        weak = {**body, "token": token, "password": "first-admin"}
        assert (await client.post("/api/setup", json=weak)).status_code == 400
        made = await client.post("/api/setup", json={**body, "token": token})
        assert made.status_code == 201, made.text
        assert made.json() == {"username": "first-admin", "site": "hq", "site_created": True}
        assert (await client.get("/api/setup")).json()["needed"] is False
        assert (
            await client.post("/api/setup", json={**body, "token": token, "username": "x2"})
        ).status_code == 409
        login = await client.post(
            "/api/auth/login", json={"username": "first-admin", "password": "first-admin-pw"}
        )
        assert login.status_code == 200 and login.json()["user"]["role"] == "admin"
        playbooks = await client.get(
            "/api/playbooks", headers={"Authorization": f"Bearer {login.json()['token']}"}
        )
        assert len(playbooks.json()) >= 10  # the new site has the shipped playbooks
    finally:
        async with db() as session:
            await session.execute(update(User).where(User.role == "setaside").values(role="admin"))
            await session.commit()


async def test_nul_characters_are_problems_not_500s(client, site):
    admin = site.headers("admin")
    assert (await client.put("/api/admin/site", json={"name": "a\x00b"}, headers=admin)).status_code == 422
    editor = (await client.get("/api/admin/documents/playbook/fire-theft", headers=admin)).json()
    bad = {**editor["published"], "title": {"zh-CN": "火\x00警", "en": "Fire"}}
    answer = await client.put("/api/admin/documents/playbook/fire-theft/draft", json=bad, headers=admin)
    assert answer.status_code == 422
    user = {
        "username": f"{site.slug}-nul",
        "password": "a-long-password",
        "role": "agent",
        "display_name": "\x00",
    }
    assert (await client.post("/api/users", json=user, headers=admin)).status_code == 422
