"""Bad input to the incident, metrics and push endpoints: any JSON body gets a 2xx or a 4xx problem-details
answer, never a 500 (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import sync_client_and_site

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
# Bodies near the real shapes find more than random noise: right keys, wrong values.
shaped = st.fixed_dictionaries(
    {},
    optional={
        "playbook": json_values,
        "note": json_values,
        "drill": st.one_of(json_values, st.fixed_dictionaries({"time_scale": json_values})),
        "text": json_values,
        "done": json_values,
        "answer_rate": json_values,
        "queue_length": json_values,
        "system_failure": json_values,
        "endpoint": json_values,
        "keys": st.one_of(json_values, st.fixed_dictionaries({"p256dh": json_values, "auth": json_values})),
        "delivery": json_values,
        "receipt": json_values,
    },
)
bodies = st.one_of(json_values, shaped)

PATHS = [
    "/api/incidents",
    "/api/incidents/{id}/notes",
    "/api/incidents/{id}/steps/notify-ops",
    "/api/incidents/{id}/recover",
    "/api/incidents/{id}/ack",
    "/api/metrics",
    "/api/push/subscriptions",
    "/api/push/receipts",
]


@pytest.fixture(scope="module")
def fuzz_client(database_url, settings_for):
    with sync_client_and_site(database_url, settings_for, "fuzz") as (client, site):
        incident = client.post(
            "/api/incidents", json={"playbook": "system-failure"}, headers=site.headers("lead")
        )
        assert incident.status_code == 201
        yield client, site, incident.json()["id"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), body=bodies, role=st.sampled_from(["agent", "lead", "manager"]))
def test_any_body_gets_an_answer_not_a_500(fuzz_client, path, body, role):
    client, site, incident_id = fuzz_client
    response = client.post(path.format(id=incident_id), json=body, headers=site.headers(role))
    assert response.status_code < 500, (path, body, response.text)
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["detail"]
