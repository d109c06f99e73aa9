"""Auth, roles, site scoping and problem-details errors, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete

from backend.auth import LoginFailure, issue_token

from .conftest import PASSWORD, SECRET


async def test_health(client):
    response = await client.get("/api/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_login_and_me(client, site):
    response = await client.post(
        "/api/auth/login", json={"username": site.usernames["lead"], "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["role"] == "lead" and body["user"]["site"] == site.slug
    me = await client.get("/api/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200
    assert me.json()["username"] == site.usernames["lead"]


async def test_wrong_password_is_401_problem(client, site):
    response = await client.post(
        "/api/auth/login", json={"username": site.usernames["agent"], "password": "nope"}
    )
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["detail"] == "Wrong username or password."


async def test_unknown_user_and_missing_token(client):
    assert (
        await client.post("/api/auth/login", json={"username": "ghost", "password": "x"})
    ).status_code == 401
    response = await client.get("/api/me")
    assert response.status_code == 401 and response.json()["status"] == 401


async def test_expired_token_is_rejected(client, site, db):
    async with db() as session:
        token, _ = issue_token(session, SECRET, site.users["agent"], timedelta(seconds=-1))
        await session.commit()
    response = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


async def test_logout_ends_token(client, site):
    headers = site.headers("manager")
    assert (await client.post("/api/auth/logout", headers=headers)).status_code == 204
    assert (await client.get("/api/me", headers=headers)).status_code == 401


async def test_role_guard(client, site):
    assert (await client.get("/api/users", headers=site.headers("agent"))).status_code == 403
    assert (await client.get("/api/users", headers=site.headers("lead"))).status_code == 200
    new = {"username": f"{site.slug}-new", "password": "long-enough-1", "role": "agent"}
    assert (await client.post("/api/users", json=new, headers=site.headers("manager"))).status_code == 403
    created = await client.post("/api/users", json=new, headers=site.headers("admin"))
    assert created.status_code == 201, created.text
    assert created.json()["site"] == site.slug
    again = await client.post("/api/users", json=new, headers=site.headers("admin"))
    assert again.status_code == 409


async def test_site_scoping(client, site, other_site):
    users = (await client.get("/api/users", headers=site.headers("lead"))).json()
    names = {u["username"] for u in users}
    assert names == set(site.usernames.values())
    assert not names & set(other_site.usernames.values())


async def test_login_throttled_per_user(client, site, db):
    username = site.usernames["agent"]
    for _ in range(5):
        assert (
            await client.post("/api/auth/login", json={"username": username, "password": "bad"})
        ).status_code == 401
    blocked = await client.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    async with db() as session:  # leave the shared address unthrottled for other tests
        await session.execute(delete(LoginFailure).where(LoginFailure.username == username))
        await session.commit()


async def test_bad_input_gives_problem_details(client, site):
    cases = [
        ("POST", "/api/auth/login", b"{not json", {}, 400),
        ("POST", "/api/auth/login", b'{"username": 5, "password": "x"}', {}, 400),
        ("POST", "/api/auth/login", b'{"username": "", "password": "x"}', {}, 400),
        ("POST", "/api/auth/login", b'{"username": "a", "password": "x", "extra": 1}', {}, 400),
        (
            "POST",
            "/api/users",
            b'{"username": "x y", "password": "short", "role": "king"}',
            site.headers("admin"),
            400,
        ),
        ("GET", "/api/users?role=king", None, site.headers("lead"), 400),
        ("GET", "/api/no-such-thing", None, site.headers("lead"), 404),
        ("DELETE", "/api/me", None, site.headers("lead"), 405),
        ("POST", "/api/auth/login", b"x" * (5 * 1024 * 1024), {}, 413),
    ]
    for method, path, body, headers, status in cases:
        response = await client.request(
            method, path, content=body, headers={"Content-Type": "application/json", **headers}
        )
        assert response.status_code == status, (method, path, response.status_code, response.text[:300])
        assert response.headers["content-type"].startswith("application/problem+json"), path
        problem = response.json()
        assert problem["status"] == status and problem["title"] and problem["detail"]


async def test_openapi_served(client):
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    assert "/api/auth/login" in response.json()["paths"]
