"""The OpenAPI document as the server really behaves: Litestar generates the operations and their schemas; this
module corrects what it cannot know.

- Errors: every operation documents the problem responses (RFC 9457, `application/problem+json`, one shared
  `Problem` schema with the `errors` map) for the statuses it can answer: 400 for bad parameters or body, 401
  where a token is needed, 403 where a role guard applies, 404 for a path id, 409 and 413 for writes, 422 for
  a body a handler can refuse, 429 for login throttling, 408/503 for sync admission, 503 (database
  unavailable or busy) and 500 everywhere. Litestar's own `{status_code, detail, extra}` 400 never goes out.
- Security: operations under `auth.PUBLIC_PATHS` (health, login, the VAPID key, push receipts) are open.
- Examples for the sync request and answer.
Served at /schema/openapi.json by `ProblemJsonRenderPlugin`; `just openapi` writes the same `document()`.
"""

from __future__ import annotations

import copy
import re
from http import HTTPStatus
from typing import Any

from litestar import Litestar, Request
from litestar.openapi.plugins import JsonRenderPlugin

from .auth import PUBLIC_PATHS
from .errors import PROBLEM

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
WRITES = {"post", "put", "patch", "delete"}

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "A URI for the kind of problem, or about:blank."},
        "title": {"type": "string", "description": "The HTTP status phrase."},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "What went wrong, for a person."},
        "code": {"type": "string", "description": "A stable machine-readable code, where there is one."},
        "errors": {
            "description": "What is wrong, where: a map of field (or record id) → problem from the app's own "
            "checks, or a list of {message, key, source} when the request did not match its declared types.",
            "anyOf": [
                {"type": "object", "additionalProperties": True},
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "message": {"type": "string"},
                            "key": {"type": "string"},
                            "source": {"type": "string"},
                        },
                        "additionalProperties": True,
                    },
                },
            ],
        },
    },
    "additionalProperties": True,
}

# Statuses an operation answers beyond what the rules below find (method, path) → statuses.
EXTRA: dict[tuple[str, str], set[int]] = {
    ("post", "/api/auth/login"): {401, 429},
    ("post", "/api/sync"): {408, 503},
    ("post", "/api/incidents"): {403},
    ("post", "/api/push/receipts"): {404},
    ("get", "/api/me"): {404},
}
# A status these never answer though the rules would say so.
NEVER: dict[tuple[str, str], set[int]] = {}

SYNC_REQUEST_EXAMPLE = {
    "device_id": "pad-07",
    "cursor": None,
    "device": {"unsent": 1, "drafts": 0, "oldest_unsent_at": "2026-11-23T10:00:05+08:00"},
    "records": [
        {
            "id": "0b9c6a3e-8f3c-4f57-9a47-1c2d3e4f5a6b",
            "form": "call-record",
            "form_version": 1,
            "rev": 1,
            "captured_at": "2026-11-23T10:00:05+08:00",
            "data": {
                "called_at": "2026-11-23T10:00:00+08:00",
                "caller_name": "张三",
                "phone": "13800001111",
                "category": "complaint",
                "urgency": "urgent",
                "details": "停电后冰箱损坏，要求赔偿",
                "callback_promised": True,
                "callback_due": "2026-11-23T12:00:00+08:00",
            },
        }
    ],
}
SYNC_ANSWER_EXAMPLE = {
    "results": [
        {
            "index": 0,
            "id": "0b9c6a3e-8f3c-4f57-9a47-1c2d3e4f5a6b",
            "status": "created",
            "rev": 1,
            "receipt": "R-7KQ2-9XH4",
            "received_at": "2026-11-23T02:00:06Z",
        }
    ],
    "changes": [],
    "cursor": "41.1207",
    "more_changes": False,
    "server_time": "2026-11-23T02:00:06Z",
}


def _public(path: str) -> bool:
    return any(re.match(pattern, path) for pattern in PUBLIC_PATHS)


def _guarded(app: Litestar) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every handler with a guard: a caller below its role gets a 403."""
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if handler.resolve_guards():
                for method in handler.http_methods:
                    found.add((method.lower(), route.path_format))
    return found


def _statuses(method: str, path: str, operation: dict[str, Any], guarded: bool) -> set[int]:
    params = operation.get("parameters", [])
    body = "requestBody" in operation
    statuses = {500, 503}
    if params or body:
        statuses.add(400)
    if not _public(path):
        statuses.add(401)
    if guarded:
        statuses.add(403)
    if any(p.get("in") == "path" for p in params):
        statuses.add(404)
    if method in WRITES:
        statuses |= {409, 413}
    if body:
        statuses.add(422)
    statuses |= EXTRA.get((method, path), set())
    return statuses - NEVER.get((method, path), set())


def _response(status: int) -> dict[str, Any]:
    return {"$ref": f"#/components/responses/Problem{status}"}


def patch(schema: dict[str, Any], app: Litestar) -> dict[str, Any]:
    """The generated document with problem responses, per-operation security and examples."""
    schema = copy.deepcopy(schema)
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    responses = components.setdefault("responses", {})
    guarded = _guarded(app)
    for path, item in schema.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            answers = operation.setdefault("responses", {})
            for (
                answer
            ) in answers.values():  # a handler that sends JSON it encoded itself (bytes) is an object
                json_body = answer.get("content", {}).get("application/json", {})
                if json_body.get("schema") == {"type": "string"}:
                    json_body["schema"] = {"type": "object"}
            for status in sorted(_statuses(method, path, operation, (method, path) in guarded)):
                responses.setdefault(
                    f"Problem{status}",
                    {
                        "description": HTTPStatus(status).phrase,
                        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                    },
                )
                answers[str(status)] = _response(status)
            if _public(path):
                operation["security"] = []
    sync = schema.get("paths", {}).get("/api/sync", {}).get("post")
    if sync:
        body = sync.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None:
            body["example"] = SYNC_REQUEST_EXAMPLE
        answer = sync.get("responses", {}).get("200", {}).get("content", {}).get("application/json")
        if answer is not None:
            answer["example"] = SYNC_ANSWER_EXAMPLE
    return schema


def document(app: Litestar) -> dict[str, Any]:
    return patch(app.openapi_schema.to_schema(), app)


class ProblemJsonRenderPlugin(JsonRenderPlugin):
    """Serves `document()` at /schema/openapi.json (worked out once per app)."""

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        cache = request.app.state.get("openapi_document")
        if cache is None:
            cache = self.render_json(request, patch(openapi_schema, request.app))
            request.app.state["openapi_document"] = cache
        return cache
