"""`python -m backend export --site SITE` (fixed interface): everything the site holds as JSON on stdout, no
credentials, nothing of another site. Runs the real CLI against SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .servers import ROOT
from .test_sync_api import record, sync


def _export(database_url: str, site: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "OUTAGE_SECRET_KEY": "export-test"}
    return subprocess.run(
        [sys.executable, "-m", "backend", "export", "--site", site],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_export_holds_the_site_and_nothing_else(client, database_url, site, other_site):
    mine = record(1)
    theirs = record(2, caller_name="别的站点")
    await sync(client, site, [mine])
    await sync(client, other_site, [theirs])
    declared = await client.post(
        "/api/incidents", json={"playbook": "power-outage", "note": "UPS 报警"}, headers=site.headers("lead")
    )
    assert declared.status_code == 201, declared.text

    done = _export(database_url, site.slug)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    tables = data["tables"]
    assert data["site"] == site.slug and data["format"] == "outage-desk-export"
    assert [r["id"] for r in tables["records"]] == [mine["id"]]
    assert tables["records"][0]["data"]["caller_name"] == "张1"
    assert {u["username"] for u in tables["users"]} == set(site.usernames.values())
    assert [s["slug"] for s in tables["sites"]] == [site.slug]
    assert len(tables["callbacks"]) == 1  # the record promised one
    assert [i["note"] for i in tables["incidents"]] == ["UPS 报警"]
    assert {e["kind"] for e in tables["incident_events"]} >= {"declared"}
    assert {d["slug"] for d in tables["documents"]} >= {"call-record", "power-outage"}
    text = done.stdout
    assert "别的站点" not in text and other_site.slug not in text
    assert "password_hash" not in text and "auth_tokens" not in tables and "token_hash" not in text


def test_export_of_an_unknown_site_says_so(database_url):
    done = _export(database_url, "no-such-site")
    assert done.returncode == 2 and "no-such-site" in done.stderr
