"""Playbooks and forms: per-site versions, localisation, admin edits, validation field by field."""

from __future__ import annotations

import copy

from backend.forms import validate_data

PLAYBOOKS = {
    "seat-equipment-failure",
    "system-failure",
    "power-outage",
    "air-conditioning-failure",
    "fire-theft",
    "personal-accident",
    "website-failure",
    "call-surge",
    "complaint-escalation",
    "media-enquiry",
}
FORMS = {"call-record", "incident-log", "callback-list", "staff-headcount", "media-enquiry"}


async def test_every_site_gets_the_shipped_content(client, site):
    playbooks = (await client.get("/api/playbooks?lang=zh-CN", headers=site.headers())).json()
    assert {p["slug"] for p in playbooks} == PLAYBOOKS
    forms = (await client.get("/api/forms?lang=en", headers=site.headers())).json()
    assert {f["slug"] for f in forms} == FORMS
    assert all(f["version"] == 1 for f in forms)


async def test_localisation(client, site):
    zh = (await client.get("/api/playbooks/system-failure?lang=zh-CN", headers=site.headers())).json()
    en = (await client.get("/api/playbooks/system-failure?lang=en", headers=site.headers())).json()
    both = (await client.get("/api/playbooks/system-failure", headers=site.headers())).json()
    assert zh["title"] == "应用程序/网络/系统故障" and isinstance(zh["steps"][0]["text"], str)
    assert en["title"].startswith("Application") and en["escalation"][0]["after_minutes"] == 5
    assert both["title"] == {"zh-CN": zh["title"], "en": en["title"]}
    assert [r["after_minutes"] for r in en["escalation"]] == [5, 10, 60]


async def test_unknown_slug_and_bad_lang(client, site):
    assert (await client.get("/api/forms/nope", headers=site.headers())).status_code == 404
    assert (await client.get("/api/forms/call-record?lang=fr", headers=site.headers())).status_code == 400
    assert (await client.get("/api/forms/call-record?version=9", headers=site.headers())).status_code == 404


async def test_etag_and_cursor(client, site):
    first = await client.get("/api/forms?lang=zh-CN", headers=site.headers())
    again = await client.get(
        "/api/forms?lang=zh-CN", headers={**site.headers(), "If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304
    before = (await client.get("/api/content/cursor", headers=site.headers())).json()["cursor"]
    form = (await client.get("/api/forms/media-enquiry", headers=site.headers())).json()
    form["title"]["en"] = "Media enquiry note (edited)"
    assert (
        await client.put("/api/forms/media-enquiry", json=form, headers=site.headers("admin"))
    ).status_code == 200
    after = (await client.get("/api/content/cursor", headers=site.headers())).json()["cursor"]
    assert after > before
    changed = await client.get(
        "/api/forms?lang=zh-CN", headers={**site.headers(), "If-None-Match": first.headers["etag"]}
    )
    assert changed.status_code == 200


async def test_playbook_edit_makes_version_2_and_keeps_1(client, site, other_site):
    original = (await client.get("/api/playbooks/power-outage", headers=site.headers())).json()
    edited = copy.deepcopy(original)
    edited["contacts"][0]["phone"] = "010-8888-0001"
    for key in ("version", "lang", "updated_at"):
        edited.pop(key)
    assert (
        await client.put("/api/playbooks/power-outage", json=edited, headers=site.headers("lead"))
    ).status_code == 403
    response = await client.put("/api/playbooks/power-outage", json=edited, headers=site.headers("admin"))
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 2
    newest = (await client.get("/api/playbooks/power-outage", headers=site.headers())).json()
    assert newest["version"] == 2 and newest["contacts"][0]["phone"] == "010-8888-0001"
    v1 = (await client.get("/api/playbooks/power-outage?version=1", headers=site.headers())).json()
    assert v1["contacts"][0]["phone"] == original["contacts"][0]["phone"]
    # another site is untouched
    theirs = (await client.get("/api/playbooks/power-outage", headers=other_site.headers())).json()
    assert theirs["version"] == 1


async def test_admin_creates_and_bad_definitions_are_422(client, site):
    new = {
        "slug": "lift-stuck",
        "category": "safety",
        "title": {"zh-CN": "电梯困人", "en": "Lift stuck"},
        "summary": {"zh-CN": "有人被困电梯。", "en": "Someone is stuck in a lift."},
        "steps": [
            {
                "id": "call",
                "who": "lead",
                "within_minutes": 0,
                "text": {"zh-CN": "联系物业。", "en": "Call the building."},
            }
        ],
        "escalation": [
            {"after_minutes": 10, "notify": ["manager"], "message": {"zh-CN": "未解决", "en": "Open"}}
        ],
        "forms": ["incident-log"],
    }
    created = await client.post("/api/playbooks", json=new, headers=site.headers("admin"))
    assert created.status_code == 201, created.text
    assert (await client.post("/api/playbooks", json=new, headers=site.headers("admin"))).status_code == 409
    bad = [
        {**new, "slug": "x2", "forms": ["no-such-form"]},
        {**new, "slug": "x3", "escalation": new["escalation"] * 2},
        {**new, "slug": "x4", "title": {"zh-CN": "只有中文"}},
        {**new, "slug": "x5", "steps": []},
        {**new, "slug": "Bad Slug"},
    ]
    for body in bad:
        response = await client.post("/api/playbooks", json=body, headers=site.headers("admin"))
        assert response.status_code == 422, (body["slug"], response.text)
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_form_validation_field_by_field(client, site):
    form = (await client.get("/api/forms/call-record", headers=site.headers())).json()
    good = {
        "called_at": "2026-11-23T10:05:00+08:00",
        "caller_name": "张伟",
        "phone": "138 0013 8000",
        "category": "complaint",
        "urgency": "urgent",
        "details": "宽带断了",
        "callback_promised": True,
        "callback_due": "2026-11-23T12:05:00+08:00",
    }
    assert validate_data(form, good) == {}
    assert validate_data(form, {**good, "callback_promised": False, "callback_due": None}) == {}
    cases = {
        "caller_name": ("", "required"),
        "phone": ("call me", "pattern"),
        "category": ("gossip", "choice"),
        "urgency": (3, "choice"),
        "called_at": ("yesterday", "datetime"),
        "callback_promised": ("yes", "type"),
        "details": ("长" * 5000, "max_length"),
    }
    for name, (value, code) in cases.items():
        errors = validate_data(form, {**good, name: value})
        assert set(errors) == {name}, (name, errors)
        assert errors[name]["code"] == code
    errors = validate_data(form, {**good, "callback_due": "", "surprise": 1})
    assert errors["callback_due"]["code"] == "required" and errors["surprise"]["code"] == "unknown"
    assert validate_data(form, ["not", "an", "object"])["_"]["code"] == "type"
    assert (
        validate_data(form, {**good, "called_at": "2026-11-23T10:05:00"})["called_at"]["code"] == "datetime"
    )
