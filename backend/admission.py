"""Sync admission: how the server survives the recovery burst, when hundreds of phones reconnect at once,
and a client that sends slowly (a stalled upload, or an attacker) cannot starve everyone else.

- At most `sync_concurrency` syncs run at once; the rest wait for a turn BEFORE their body is read, so
  hundreds of devices reconnecting together hold neither memory nor database connections. One that waits
  longer than `sync_wait_seconds` gets a 503 problem with Retry-After; the device retries with jittered
  backoff (its queue is untouched).
- One account holds at most `sync_per_user` turns or places in the queue at once (two phones of one agent,
  say); more get a 503 at once and retry, so one login's burst never stands in front of other sites'.
- Once admitted, the whole body must arrive within `sync_body_seconds`, else a 408 problem frees the turn: a
  trickling upload holds a turn for seconds, never indefinitely.
Runs inside authentication (app.MIDDLEWARE), so it knows whose sync it is and unknown tokens never wait.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any, cast

import msgspec
from litestar.types import ASGIApp, Receive, Scope, Send


async def _problem(
    send: Send, status: int, type_: str, title: str, detail: str, retry_after: int, code: str = "server.busy"
) -> None:
    # `code` is what the client translates (errors.py); the rest is the RFC 9457 body as everywhere.
    body = msgspec.json.encode(
        {"type": type_, "title": title, "status": status, "detail": detail, "code": code}
    )
    await send(
        cast(
            Any,
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"retry-after", str(retry_after).encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            },
        )
    )
    await send(cast(Any, {"type": "http.response.body", "body": body}))


async def _read_body(receive: Receive, seconds: float, limit: int) -> bytes | None:
    """The whole request body, or None when it did not arrive in time; stops reading past `limit` bytes (the
    app then answers 413 itself)."""
    chunks: list[bytes] = []
    size = 0
    deadline = time.monotonic() + seconds
    while True:
        try:
            message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0))
        except TimeoutError:
            return None
        if message["type"] != "http.request":
            return b"".join(chunks)  # the client went away: the app sees a short body and answers 400
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if not message.get("more_body", False) or size > limit:
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as the server would

    return replay


def sync_admission(app: ASGIApp) -> ASGIApp:
    gate: dict[str, Any] = {"per_user": Counter()}

    async def admit(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/api/sync" or cast(Any, scope)["method"] != "POST":
            await app(scope, receive, send)
            return
        settings = scope["app"].state.settings
        if "slots" not in gate:
            gate["slots"] = asyncio.Semaphore(settings.sync_slots)  # this process's share
        slots: asyncio.Semaphore = gate["slots"]
        per_user: Counter[Any] = gate["per_user"]
        who = getattr(scope.get("user"), "id", None)
        if per_user[who] >= settings.sync_per_user:
            await _problem(
                send,
                503,
                "urn:outage-desk:server-busy",
                "Service Unavailable",
                "This login is already uploading from other devices; nothing was lost on your device, "
                "it will retry.",
                5,
            )
            return
        per_user[who] += 1
        try:
            try:
                await asyncio.wait_for(slots.acquire(), settings.sync_wait_seconds)
            except TimeoutError:
                await _problem(
                    send,
                    503,
                    "urn:outage-desk:server-busy",
                    "Service Unavailable",
                    "Many devices are syncing right now; nothing was lost on your device, it will retry.",
                    5,
                )
                return
            try:
                body = await _read_body(receive, settings.sync_body_seconds, settings.max_body_bytes)
                if body is None:
                    await _problem(
                        send,
                        408,
                        "urn:outage-desk:slow-upload",
                        "Request Timeout",
                        "The upload arrived too slowly; nothing was lost on your device, it will retry.",
                        10,
                        code="sync.slow_upload",
                    )
                    return
                await app(scope, _replay(body, receive), send)
            finally:
                slots.release()
        finally:
            per_user[who] -= 1
            if per_user[who] <= 0:
                del per_user[who]

    return admit
