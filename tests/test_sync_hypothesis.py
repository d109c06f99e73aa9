"""Property: whatever batches a device sends and replays, the server holds exactly what it acknowledged.

Random batches over a few record ids, with several revs and contents per id, invalid records mixed in,
and whole batches replayed. After every answer the test's model of "what the server told the device"
is updated; at the end the server must equal that model: no lost record, no extra copy, no record the
device was not told about. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import sync_client_and_site
from .test_sync_api import call

SLOTS = 4

item = st.tuples(
    st.integers(0, SLOTS - 1),  # which record
    st.integers(1, 3),  # rev
    st.integers(0, 2),  # content variant
    st.sampled_from([True, True, True, False]),
)  # valid (mostly)
batch = st.lists(item, min_size=0, max_size=8)
step = st.tuples(batch, st.booleans())  # (batch, replay it right away)


@pytest.fixture(scope="module")
def sync_client(database_url, settings_for):
    with sync_client_and_site(database_url, settings_for, "prop") as (client, site):
        yield client, site


def as_record(ids: list[str], slot: int, rev: int, variant: int, valid: bool) -> dict:
    data = call(slot, details=f"slot {slot} rev {rev} variant {variant}")
    if not valid:
        data["phone"] = "??"
    return {
        "id": ids[slot],
        "form": "call-record",
        "form_version": 1,
        "rev": rev,
        "captured_at": "2026-11-23T10:00:00+08:00",
        "data": data,
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=6))
def test_server_equals_the_acknowledged_records(sync_client, steps):
    client, site = sync_client
    ids = [str(uuid.uuid4()) for _ in range(SLOTS)]
    acked: dict[str, tuple[int, str]] = {}  # id -> (rev, details) the server said it holds

    for items, replay in steps:
        body = [as_record(ids, *i) for i in items]
        for _ in range(2 if replay else 1):
            response = client.post(
                "/api/sync", json={"device_id": "prop", "records": body}, headers=site.headers()
            )
            assert response.status_code == 200, response.text
            for sent, result in zip(body, response.json()["results"], strict=True):
                rid, mine = sent["id"], (sent["rev"], sent["data"]["details"])
                status = result["status"]
                if sent["data"]["phone"] == "??":
                    assert status == "rejected"
                elif status in ("created", "updated"):
                    assert status == "updated" or rid not in acked
                    assert rid not in acked or acked[rid][0] < mine[0]
                    acked[rid] = mine
                elif status == "duplicate":
                    assert acked[rid] == mine
                elif status == "conflict":
                    server = result["server"]
                    assert (server["rev"], server["data"]["details"]) == acked[rid]
                    assert mine[0] <= acked[rid][0] and mine != acked[rid]
                else:
                    pytest.fail(f"unexpected {result}")

    for rid in ids:
        response = client.get(f"/api/records/{rid}", headers=site.headers())
        if rid in acked:
            assert response.status_code == 200
            held = response.json()
            assert (held["rev"], held["data"]["details"]) == acked[rid]
        else:
            assert response.status_code == 404
    listed = client.get("/api/records", params={"limit": 1000}, headers=site.headers("lead")).json()
    mine = [i for i in listed["items"] if i["id"] in ids]
    assert len(mine) == len(acked)  # exactly one copy of each acknowledged record
