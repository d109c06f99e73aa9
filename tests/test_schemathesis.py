"""Schemathesis against the OpenAPI document of a real server process (SQLite and PostgreSQL), logged in as a
site admin (every guard passes, so generated input reaches the handlers): valid and invalid input for every
operation, and no answer may be a 5xx. Every answer must also conform to the document: its status is one the
operation documents, its content type the documented one, its body valid against the documented schema (so a
problem answer is `application/problem+json` with the Problem schema). Bounded: a fixed number of examples per
operation and mode."""

from __future__ import annotations

import uuid

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import POSTGRES_URL, require
from .servers import ServerProcess, drop_postgres_database, fresh_postgres_database

CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 10  # per operation and mode: 48 operations × 2 modes × 10 ≈ 950 requests per database


@pytest.fixture(params=["sqlite", "postgresql"])
def fuzz_server(request, tmp_path):
    url = None
    if request.param == "postgresql":
        require(bool(POSTGRES_URL), "PostgreSQL (TEST_POSTGRES_URL)")
        url = fresh_postgres_database(POSTGRES_URL)
    server = ServerProcess(tmp_path / "fuzz", database_url=url)
    try:
        users = server.add_users("fuzz", ("agent", "lead", "admin"))
        server.start()
        server.users = users
        yield server
    finally:
        server.stop()
        if url:
            drop_postgres_database(POSTGRES_URL, url)


def seed(server: ServerProcess, token: str) -> None:
    """Something for the generated ids to hit: a record with a callback, incidents, a note, a sheet."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.base, headers=headers, timeout=30) as client:
        record = {
            "id": str(uuid.uuid4()),
            "form": "call-record",
            "form_version": 1,
            "rev": 1,
            "captured_at": "2026-11-23T10:00:05+08:00",
            "data": {
                "called_at": "2026-11-23T10:00:00+08:00",
                "caller_name": "张三",
                "phone": "13800001111",
                "category": "complaint",
                "urgency": "normal",
                "details": "投诉",
                "callback_promised": True,
            },
        }
        assert client.post("/api/sync", json={"device_id": "seed", "records": [record]}).status_code == 200
        for playbook in ("power-outage", "call-surge"):
            incident = client.post("/api/incidents", json={"playbook": playbook}).json()
            client.post(f"/api/incidents/{incident['id']}/notes", json={"text": "现场"})
        client.post(f"/api/incidents/{incident['id']}/resolve", json={})
        client.post("/api/print/sheets", json={"form": "call-record"})


def test_no_5xx_for_generated_input(fuzz_server):
    server = fuzz_server
    token = server.login(server.users["admin"])
    seed(server, token)
    schema = schemathesis.openapi.from_url(f"{server.base}/schema/openapi.json")
    session = requests.Session()
    failures: list[str] = []
    mismatches: list[str] = []
    tried = 0

    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis.settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def run(case) -> None:
                nonlocal tried
                bearer = token
                if case.operation.path == "/api/auth/logout":  # would end the token the rest of the run uses
                    bearer = server.login(server.users["agent"])
                response = case.call(
                    base_url=server.base,
                    session=session,
                    timeout=30,
                    headers={"Authorization": f"Bearer {bearer}"},
                )
                tried += 1
                try:
                    case.validate_response(response, checks=CONFORMANCE)
                except BaseException as exc:  # schemathesis raises its failure group: keep it, go on
                    if isinstance(exc, KeyboardInterrupt | SystemExit):
                        raise
                    mismatches.append(
                        f"{case.method} {case.operation.path} ({mode}) -> {response.status_code} "  # noqa: B023
                        f"{response.headers.get('content-type')}: {str(exc)[:400]}"
                    )
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} ({mode}) -> {response.status_code}: "  # noqa: B023
                        f"{response.text[:300]}\n  {case.as_curl_command()[:600]}"
                    )

            try:
                run()  # right here, inside the loop: the loop variables it reads are the current ones
            except hypothesis.errors.Unsatisfiable:
                # A public operation without parameters or body (health): there is nothing to make invalid.
                assert mode == GenerationMode.NEGATIVE, operation.path
    log = server.log.read_text(errors="replace")
    assert tried > 500, f"only {tried} requests were generated"
    assert not failures, f"{len(failures)} server errors:\n" + "\n".join(failures[:20])
    assert not mismatches, f"{len(mismatches)} answers not as documented:\n" + "\n".join(
        sorted(set(mismatches))[:30]
    )
    assert "Traceback" not in log, log[-4000:]
