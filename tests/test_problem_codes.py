"""Every problem the server answers carries a stable `code` beside type/title/status/detail, every place that
raises one names its code, and the client has words for every code in both languages."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from .conftest import PASSWORD

ROOT = Path(__file__).resolve().parent.parent
BACKEND = ROOT / "backend"
KEY = re.compile(r'"(problem\.[a-z0-9_.]+)"\s*:')


def raised_codes() -> tuple[set[str], list[str]]:
    """Codes named by `Problem(..., code=...)` / `problem(..., code=...)` calls, and the calls that name none."""
    codes: set[str] = set()
    missing: list[str] = []
    for path in sorted(BACKEND.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) in {"Problem", "problem"}):
                continue
            if path.name == "errors.py" and getattr(node.func, "id", None) == "problem" and not node.keywords:
                continue
            code = next((k.value for k in node.keywords if k.arg == "code"), None)
            if code is None:
                missing.append(f"{path.name}:{node.lineno}")
            elif isinstance(code, ast.Constant):
                codes.add(code.value)
            elif isinstance(code, ast.JoinedStr):  # f"{what}.not_found"
                codes.add("*" + "".join(v.value for v in code.values if isinstance(v, ast.Constant)))
    return codes, missing


def language_keys(name: str) -> set[str]:
    return set(KEY.findall((ROOT / "frontend" / "i18n" / name).read_text()))


def test_every_raise_names_a_code_the_client_can_say_in_both_languages():
    codes, missing = raised_codes()
    assert not missing, f"Problem raised without code=: {missing}"
    for name in ("zh-CN.js", "en.js"):
        keys = language_keys(name)
        for code in sorted(codes):
            if code.startswith("*"):  # a family such as "<what>.not_found": its suffix must have words
                assert any(k.endswith(code[1:]) for k in keys), (name, code)
                continue
            area = code.split(".")[0]
            assert f"problem.{code}" in keys or f"problem.{area}" in keys, f"{name} has no words for {code}"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        (
            "POST",
            "/api/auth/login",
            {"username": "nobody-here", "password": "wrong-password"},
            401,
            "auth.bad_credentials",
        ),
        ("GET", "/api/records", None, 401, "auth.required"),
        ("GET", "/api/no-such-route", None, 404, "not_found"),
        ("POST", "/api/auth/login", {"username": 5}, 400, "validation.invalid"),
    ],
)
async def test_problems_carry_a_code_beside_the_fixed_fields(client, method, path, body, status, code):
    response = await client.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert {"type", "title", "status", "detail"} <= problem.keys()
    assert problem["status"] == status and problem["code"] == code


async def test_role_and_missing_rows_have_their_codes(client, site):
    response = await client.post(
        "/api/incidents", json={"playbook": "power-outage"}, headers=site.headers("agent")
    )
    if response.status_code == 403:
        assert response.json()["code"] == "auth.forbidden"
    response = await client.get("/api/incidents/999999", headers=site.headers("lead"))
    assert response.status_code == 404 and response.json()["code"] == "incident.not_found"
    response = await client.post(
        "/api/auth/login", json={"username": site.usernames["agent"], "password": PASSWORD + "x"}
    )
    assert response.json()["code"] == "auth.bad_credentials"
