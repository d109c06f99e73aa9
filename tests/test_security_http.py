"""Security headers on every answer, HSTS only over https, and odd input answered with a 4xx problem (never a
500): JSON nested very deeply, dates at the ends of the calendar, a NUL or an over-long name in a file path.
On SQLite and PostgreSQL where the database is involved."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from backend.app import create_app

FRONTEND = Path(__file__).resolve().parent.parent / "frontend"
REQUIRED = [
    "content-security-policy",
    "x-frame-options",
    "x-content-type-options",
    "referrer-policy",
    "permissions-policy",
    "cross-origin-opener-policy",
]


def directives(csp: str) -> dict[str, list[str]]:
    out = {}
    for part in csp.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


def assert_secure(response, where: str) -> None:
    missing = [h for h in REQUIRED if h not in response.headers]
    assert not missing, f"{where}: missing {missing}"
    csp = directives(response.headers["content-security-policy"])
    assert csp["script-src"] == ["'self'"], f"{where}: {csp['script-src']}"
    assert csp["frame-ancestors"] == ["'none'"] and response.headers["x-frame-options"] == "DENY", where
    assert csp["connect-src"] == ["'self'"] and csp["worker-src"] == ["'self'"], where
    assert set(csp["img-src"]) == {"'self'", "data:"}, where
    assert csp["object-src"] == ["'none'"], where
    assert "'unsafe-inline'" not in csp.get("style-src-elem", ["'unsafe-inline'"]), where
    assert response.headers["x-content-type-options"] == "nosniff", where
    assert response.headers["cross-origin-opener-policy"] == "same-origin", where
    assert "strict-transport-security" not in response.headers, f"{where}: HSTS over plain http"


async def test_security_headers_on_every_kind_of_answer(client, site):
    static = await client.get("/static/app.js")
    assert static.status_code == 200
    forms = await client.get("/api/forms?lang=zh-CN", headers=site.headers())
    not_modified = await client.get(
        "/api/forms?lang=zh-CN", headers={**site.headers(), "If-None-Match": forms.headers["etag"]}
    )
    assert not_modified.status_code == 304
    answers = {
        "/": await client.get("/"),
        "/sw.js": await client.get("/sw.js"),
        "/sw/push.js": await client.get("/sw/push.js"),
        "/static/app.js": static,
        "304 /api/forms": not_modified,
        "/manifest.webmanifest": await client.get("/manifest.webmanifest"),
        "/api/health": await client.get("/api/health"),
        "/api/me": await client.get("/api/me", headers=site.headers("agent")),
        "404 problem": await client.get("/api/no-such-thing", headers=site.headers("agent")),
        "404 static": await client.get("/static/no-such-file.js"),
        "404 unrouted": await client.get("/nowhere/at/all"),
        "401 problem": await client.get("/api/me"),
        "405 problem": await client.delete("/api/me", headers=site.headers("agent")),
        "400 problem": await client.post(
            "/api/auth/login", content=b"{not json", headers={"Content-Type": "application/json"}
        ),
    }
    assert answers["404 problem"].headers["content-type"].startswith("application/problem+json")
    for where, response in answers.items():
        assert_secure(response, where)
    # What the service worker needs still holds: it may control the whole origin.
    assert answers["/sw.js"].headers["service-worker-allowed"] == "/"


def test_the_shell_has_no_inline_script():
    """The CSP forbids inline script; this keeps index.html (as the server serves it) compatible."""
    html = (FRONTEND / "index.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S | re.I)
    assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts), scripts
    assert not re.search(r"\son[a-z]+\s*=", html, re.I), "inline event handler attribute"
    assert "<style" not in html.lower() and "javascript:" not in html.lower()


@pytest.fixture(scope="module")
async def proxied(database_url, settings_for):
    """The app behind a trusted reverse proxy (the in-process test client's peer name is 'testclient')."""
    app = create_app(settings_for(database_url, trusted_proxies="testclient, 10.9.0.0/16"))
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as test_client:
        yield test_client


async def test_hsts_only_over_https(client, proxied, database_url, settings_for):
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    # From a trusted proxy that saw https: HSTS, on API answers, shell and errors alike.
    for path in ("/api/health", "/", "/static/app.js", "/api/nowhere"):
        response = await proxied.get(path, headers=https)
        assert response.headers.get("strict-transport-security", "").startswith("max-age="), path
    # The same header from a peer we do not trust is ignored; plain http through the proxy gets none.
    assert "strict-transport-security" not in (await client.get("/api/health", headers=https)).headers
    assert (
        "strict-transport-security"
        not in (await proxied.get("/api/health", headers={"X-Forwarded-Proto": "http"})).headers
    )
    # Served over https directly (no proxy at all).
    app = create_app(settings_for(database_url))
    async with AsyncTestClient(app=app, base_url="https://testserver.local") as direct:
        assert "strict-transport-security" in (await direct.get("/api/health")).headers


def nested(depth: int, kind: str = "array") -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def sync_body(data: bytes) -> bytes:
    return (
        b'{"device_id":"deep","records":[{"id":"6f1c2a52-0d55-4a57-9c3e-5d2b7f1e9a10","form":"call-record",'
        b'"form_version":1,"rev":1,"captured_at":"2026-11-23T10:00:00+08:00","data":' + data + b"}]}"
    )


def assert_problem(response, status: int | tuple[int, ...], where: str) -> None:
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, f"{where}: {response.status_code} {response.text[:300]}"
    assert response.headers["content-type"].startswith("application/problem+json"), where
    body = response.json()
    assert body["status"] == response.status_code and body["detail"], where


@pytest.mark.parametrize("depth", [1_000, 5_000, 100_000])
async def test_deeply_nested_json_is_a_400_problem(client, site, depth):
    json_type = {"Content-Type": "application/json"}
    for kind in ("array", "object"):
        login = await client.post("/api/auth/login", content=nested(depth, kind), headers=json_type)
        assert_problem(login, 400, f"login {kind} {depth}")
        for body in (
            nested(depth, kind),
            sync_body(nested(depth, kind)),
            b'{"device_id":"deep","records":' + nested(depth, kind) + b"}",
        ):
            response = await client.post(
                "/api/sync", content=body, headers={**json_type, **site.headers("agent")}
            )
            assert_problem(response, 400, f"sync {kind} {depth}")
    users = await client.post(
        "/api/users", content=nested(depth, "object"), headers={**json_type, **site.headers("admin")}
    )
    assert_problem(users, 400, f"users {depth}")


EXTREMES = [
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00+00:01",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59.999999-00:01",
]


@pytest.mark.parametrize("value", EXTREMES)
async def test_dates_at_the_ends_of_the_calendar_are_a_400_problem(client, site, value):
    lead = site.headers("lead")
    cases = [("/api/records", {"since": value})]
    for export in ("/api/recovery/export.csv", "/api/recovery/export.json"):
        cases += [
            (export, {"form": "call-record", "since": value}),
            (export, {"form": "call-record", "until": value}),
            (export, {"form": "call-record", "since": value, "until": value}),
        ]
    for path, params in cases:
        assert_problem(await client.get(path, params=params, headers=lead), 400, f"{path} {params}")


async def test_ordinary_dates_still_work(client, site):
    lead = site.headers("lead")
    assert (
        await client.get("/api/records", params={"since": "2026-11-23T08:00:00+08:00"}, headers=lead)
    ).status_code == 200
    export = await client.get(
        "/api/recovery/export.json",
        headers=lead,
        params={
            "form": "call-record",
            "since": "0001-01-01T00:00:00+00:00",
            "until": "9999-12-31T23:59:59+00:00",
        },
    )
    assert export.status_code == 200, export.text


@pytest.mark.parametrize(
    "path",
    [
        "/static/%00",
        "/static/a%00b",
        "/static/app.js%00",
        "/static/css/%00.css",
        "/sw/%00",
        "/sw/push.js%00",
        "/static/" + "a" * 5000,
        "/static/" + "a/" * 3000,
        "/sw/" + "b" * 5000,
    ],
)
async def test_a_path_the_file_system_refuses_is_a_4xx_problem(client, path):
    response = await client.get(path)
    assert 400 <= response.status_code < 500, f"{path[:60]}: {response.status_code} {response.text[:200]}"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert_secure(response, path[:60])
