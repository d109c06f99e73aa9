"""Helpers for browser tests on the live server: a site of one's own with a user per role, calls to its API as
one of them, and a browser page already logged in as one of them."""

from __future__ import annotations

import json
import uuid

import httpx


def new_team(live_server, prefix: str) -> dict:
    """A site of its own on the live server, so counts in one module never meet another module's records."""
    site = f"{prefix}{uuid.uuid4().hex[:6]}"
    names = live_server.add_users(site)
    tokens = {role: live_server.login(name) for role, name in names.items()}
    return {"site": site, "names": names, "tokens": tokens}


def api(live_server, team, role, method, path, **kwargs):
    response = httpx.request(
        method,
        live_server.base + path,
        headers={"Authorization": f"Bearer {team['tokens'][role]}"},
        timeout=15,
        **kwargs,
    )
    assert response.status_code < 400, response.text
    return response.json() if "json" in response.headers.get("content-type", "") else response.content


def page_for(live_server, new_context, team, role, **context_args):
    body = httpx.post(
        f"{live_server.base}/api/auth/login",
        json={"username": team["names"][role], "password": live_server.PASSWORD},
        timeout=10,
    ).json()
    context = new_context(**context_args)
    context.add_init_script(
        f"localStorage.setItem('od.token', {json.dumps(body['token'])});"
        f"localStorage.setItem('od.user', {json.dumps(json.dumps(body['user']))});"
    )
    return context, context.new_page()
