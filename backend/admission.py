"""Sync admission: how the server survives the recovery burst, when hundreds of phones reconnect at once."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar.types import ASGIApp, Receive, Scope, Send


def sync_admission(app: ASGIApp) -> ASGIApp:
    """At most `sync_concurrency` syncs run at once; the rest wait their turn BEFORE their body is read, so
    hundreds of devices reconnecting together hold neither memory nor database connections. One that waits
    longer than `sync_wait_seconds` gets a 503 problem with Retry-After, and the device retries later with
    jittered backoff (its queue is untouched)."""
    gate: dict[str, Any] = {}

    async def admit(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/api/sync" or scope["method"] != "POST":
            await app(scope, receive, send)
            return
        settings = scope["app"].state.settings
        if "slots" not in gate:
            gate["slots"] = asyncio.Semaphore(settings.sync_concurrency)
        slots: asyncio.Semaphore = gate["slots"]
        try:
            await asyncio.wait_for(slots.acquire(), settings.sync_wait_seconds)
        except TimeoutError:
            body = msgspec.json.encode({
                "type": "urn:outage-desk:server-busy", "title": "Service Unavailable", "status": 503,
                "detail": "Many devices are syncing right now; nothing was lost on your device, it will retry."})
            await send({"type": "http.response.start", "status": 503, "headers": [
                (b"content-type", b"application/problem+json"), (b"retry-after", b"5"),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        try:
            await app(scope, receive, send)
        finally:
            slots.release()

    return admit


