"""The OpenAPI document tells the truth: it is a valid OpenAPI document (openapi-spec-validator); every error
answer is documented as a problem (one shared schema, `application/problem+json`), public operations need no
token and the others say so; real answers of the app (success, 400, 401, 403, 404, 413, 422, HEAD on the shell)
validate against it, and an answer in Litestar's own error shape would not."""

from __future__ import annotations

import uuid

import httpx
import pytest
import schemathesis
from litestar.testing import AsyncTestClient
from openapi_spec_validator import validate

from backend.app import create_app
from backend.openapi import document

PUBLIC = {
    ("get", "/api/health"),
    ("post", "/api/auth/login"),
    ("get", "/api/push/vapid-public-key"),
    ("get", "/api/setup"),  # first run: whether setup is needed; the setup link's token is the credential
    ("post", "/api/setup"),
}


@pytest.fixture(scope="module")
def spec(settings_for, tmp_path_factory):
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('spec') / 'x.db'}"
    return document(create_app(settings_for(url)))


def test_the_document_is_valid_and_documents_problems_and_security(spec):
    validate(spec)
    assert spec["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status", "detail"]
    operations = [
        (method, path, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]
    assert len(operations) > 45
    for method, path, op in operations:
        codes = set(op["responses"])
        public = op.get("security") == []
        assert public == ((method, path) in PUBLIC or path == "/api/push/receipts"), (method, path)
        assert ("401" in codes) != public or (method, path) == ("post", "/api/auth/login"), (method, path)
        assert {"500", "503"} <= codes, (method, path)
        if "{" in path:
            assert "404" in codes, (method, path)
        if "requestBody" in op:
            assert {"400", "413", "422"} <= codes, (method, path)
        for code, answer in op["responses"].items():
            if code.startswith(("4", "5")):
                assert answer == {"$ref": f"#/components/responses/Problem{code}"}, (method, path, code)
    for name, answer in spec["components"]["responses"].items():
        assert list(answer["content"]) == ["application/problem+json"], name
    assert "status_code" not in str(spec)  # Litestar's own error body is documented nowhere
    assert ("401" in spec["paths"]["/api/auth/login"]["post"]["responses"]) and (
        "429" in spec["paths"]["/api/auth/login"]["post"]["responses"]
    )
    sync = spec["paths"]["/api/sync"]["post"]
    assert sync["requestBody"]["content"]["application/json"]["example"]["records"]
    assert (
        sync["responses"]["200"]["content"]["application/json"]["example"]["results"][0]["status"]
        == "created"
    )
    assert {"408", "503"} <= set(sync["responses"])


async def test_real_answers_validate_against_the_document(spec, client, site, database_url, settings_for):
    schema = schemathesis.openapi.from_dict(spec)
    seen: list[tuple[str, str, int]] = []

    def check(method: str, path: str, response: httpx.Response, status: int) -> None:
        assert response.status_code == status, (method, path, response.text[:300])
        schema[path][method.upper()].validate_response(response)
        seen.append((method, path, status))

    agent, lead = site.headers("agent"), site.headers("lead")
    check("get", "/api/health", await client.get("/api/health"), 200)
    bad_login = {"username": site.usernames["agent"], "password": "wrong-password-1"}
    check("post", "/api/auth/login", await client.post("/api/auth/login", json=bad_login), 401)
    check("post", "/api/auth/login", await client.post("/api/auth/login", json={"user": 1}), 400)
    check("get", "/api/records", await client.get("/api/records"), 401)
    check("get", "/api/records", await client.get("/api/records", headers=agent), 200)
    check("get", "/api/fleet", await client.get("/api/fleet", headers=agent), 403)
    missing = f"/api/records/{uuid.uuid4()}"
    check("get", "/api/records/{record_id}", await client.get(missing, headers=lead), 404)
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
            "details": "停电",
            "callback_promised": False,
        },
    }
    synced = await client.post("/api/sync", json={"device_id": "d", "records": [record]}, headers=agent)
    check("post", "/api/sync", synced, 200)
    check("post", "/api/sync", await client.post("/api/sync", json={"records": 3}, headers=agent), 400)
    admin = site.headers("admin")
    erase = await client.post("/api/retention/erase", json={"phone": "abc-def"}, headers=admin)
    check("post", "/api/retention/erase", erase, 422)
    check(
        "put",
        "/api/retention",
        await client.put("/api/retention", json={"erase_after_days": -1}, headers=admin),
        400,
    )
    reentry = {"status": "reentered", "records": [{"id": record["id"]}]}  # no CRM reference
    check(
        "post",
        "/api/recovery/reentry",
        await client.post("/api/recovery/reentry", json=reentry, headers=lead),
        422,
    )

    small = create_app(settings_for(database_url, max_body_bytes=2048))
    async with AsyncTestClient(app=small, raise_server_exceptions=False) as tiny:
        big = {"device_id": "d", "records": [record] * 20}
        check("post", "/api/sync", await tiny.post("/api/sync", json=big, headers=agent), 413)

    # An answer in Litestar's default error shape is not what the document says.
    fake = httpx.Response(
        400,
        json={"status_code": 400, "detail": "Bad Request", "extra": {}},
        request=httpx.Request("POST", "http://testserver.local/api/sync"),
    )
    with pytest.raises(BaseException):  # noqa: B017 (schemathesis raises its failure group)
        schema["/api/sync"]["POST"].validate_response(fake)
    assert len(seen) == 13

    for path in ("/", "/sw.js"):
        head = await client.head(path)
        assert head.status_code == 200 and head.content == b"", path
        assert head.headers["content-type"].count("charset") == 1, head.headers["content-type"]
    assert (await client.get("/sw.js")).headers["content-type"] == "text/javascript; charset=utf-8"
