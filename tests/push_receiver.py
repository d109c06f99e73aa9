"""A Web Push service stand-in on 127.0.0.1 for tests.

It hands out subscriptions with real P-256 keys, decrypts every message it receives with http_ece (the
way a browser would), checks the VAPID signature, and answers 201 or whatever status a test queued
(404, 410, 429 with Retry-After, 500 with a body, 307 with a Location …) for a given endpoint. It counts
TCP connections too, so a test can tell that nothing even tried to reach it.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Received:
    endpoint: str
    answered: int
    headers: dict[str, str]
    payload: dict[str, Any] | None
    vapid_valid: bool
    vapid_key: str | None
    claims: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)


@dataclass
class _Subscriber:
    key: ec.EllipticCurvePrivateKey
    auth: bytes
    answers: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)


class PushReceiver:
    def __init__(self) -> None:
        self.subscribers: dict[str, _Subscriber] = {}
        self.received: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                receiver._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def process_request(self, request: Any, client_address: Any) -> None:
                with receiver.lock:
                    receiver.connections += 1
                super().process_request(request, client_address)

        self.connections = 0
        self.server = Server(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def subscription(self) -> dict[str, Any]:
        """A browser-like PushSubscription JSON whose endpoint is this receiver."""
        key = ec.generate_private_key(ec.SECP256R1())
        auth = os.urandom(16)
        endpoint = f"{self.base}/push/{secrets.token_urlsafe(12)}"
        with self.lock:
            self.subscribers[endpoint] = _Subscriber(key, auth)
        public = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(public), "auth": b64url(auth)},
        }

    def answer(
        self,
        endpoint: str,
        *statuses: int,
        retry_after: str | None = None,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> None:
        """Queue the statuses the next requests to this endpoint get (then 201 again), with these headers
        and body."""
        headers = {**({"Retry-After": retry_after} if retry_after is not None else {}), **(headers or {})}
        with self.lock:
            self.subscribers[endpoint].answers.extend((s, headers, body) for s in statuses)

    def messages(self, endpoint: str | None = None, answered: int | None = None) -> list[Received]:
        with self.lock:
            return [
                r
                for r in self.received
                if (endpoint is None or r.endpoint == endpoint)
                and (answered is None or r.answered == answered)
            ]

    def wait_for(self, count: int, timeout: float = 10, **filters: Any) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.messages(**filters)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"expected {count} pushes, got {len(self.messages(**filters))}")

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        endpoint = self.base + request.path
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self.lock:
            subscriber = self.subscribers.get(endpoint)
            status, extra, reply = (
                subscriber.answers.pop(0) if subscriber and subscriber.answers else (201, {}, b"")
            )
        if subscriber is None:
            status, extra, reply = 404, {}, b""
        payload = None
        if subscriber is not None and body:
            plain = http_ece.decrypt(
                body, private_key=subscriber.key, auth_secret=subscriber.auth, version="aes128gcm"
            )
            payload = json.loads(plain)
        authorization = headers.get("authorization", "")
        valid, key, claims = False, None, {}
        if authorization.startswith("vapid "):
            parts = dict(p.split("=", 1) for p in authorization[6:].split(","))
            key = parts.get("k")
            claims = json.loads(unb64url(parts["t"].split(".")[1]))
            valid = bool(Vapid02.verify(authorization))
        with self.lock:
            self.received.append(Received(endpoint, status, headers, payload, valid, key, claims))
        request.send_response(status)
        for name, value in extra.items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(reply)))
        request.end_headers()
        request.wfile.write(reply)


@pytest.fixture(name="receiver")
def receiver_fixture() -> Iterator[PushReceiver]:
    """`receiver`: a push service stand-in for one test (import receiver_fixture into a test module)."""
    r = PushReceiver()
    yield r
    r.close()
