"""A CRM stand-in on 127.0.0.1 that checks what a real CRM's API checks: authentication (a bearer token, one
header, or an HMAC signature over timestamp and body, with a stale-timestamp check), an Idempotency-Key on every
request and a JSON body. It stores entries by idempotency key and answers 201 with a reference, 409 with the
existing reference for a known key, and on demand 429 with Retry-After, 500 (before or after storing: a lost
answer) and 400 with a reason.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Entry:
    ref: str
    body: Any
    headers: dict[str, str]


@dataclass
class StandIn:
    auth: str = "header"  # "bearer" | "header" | "hmac" | "none"
    secret: str = "s3cret-api-key"
    header_name: str = "X-Api-Key"
    entries: dict[str, Entry] = field(default_factory=dict)
    # Faults by idempotency key: a list of what to answer on the next requests with that key, in order
    # ("429", "500", "500-stored", "400"); once used up, the key is served normally.
    faults: dict[str, list[str]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # why requests were refused (auth, key, body)
    retry_after: str = "7"
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/cases"

    def authenticated(self, headers: Any, body: bytes) -> bool:
        if self.auth == "none":
            return True
        if self.auth == "bearer":
            return hmac.compare_digest(headers.get("Authorization", ""), f"Bearer {self.secret}")
        if self.auth == "header":
            return hmac.compare_digest(headers.get(self.header_name, ""), self.secret)
        stamp = headers.get("X-OD-Timestamp", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > 3600 * 24 * 365:
            return False  # (the tests' manual clock may be far from the wall clock; a real CRM allows ~5 min)
        want = hmac.new(self.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(headers.get(self.header_name, ""), f"sha256={want}")

    def answer(self, headers: Any, raw: bytes) -> tuple[int, dict[str, str], Any]:
        with self.lock:
            key = headers.get("Idempotency-Key")
            self.requests.append({"key": key, "headers": dict(headers), "body": raw})
            if not self.authenticated(headers, raw):
                self.refused.append("auth")
                return 401, {}, {"error": "unauthorized"}
            if not key:
                self.refused.append("no idempotency key")
                return 400, {}, {"error": "Idempotency-Key required"}
            try:
                body = json.loads(raw)
            except ValueError:
                self.refused.append("not json")
                return 400, {}, {"error": "body must be JSON"}
            fault = self.faults.get(key, [None]).pop(0) if self.faults.get(key) else None
            if fault == "429":
                return 429, {"Retry-After": self.retry_after}, {"error": "slow down"}
            if fault == "500":
                return 500, {}, {"error": "internal"}
            if fault == "400":
                return 400, {}, {"message": "phone: not a valid number"}
            if key in self.entries:
                return 409, {}, {"error": "duplicate", "data": {"case_no": self.entries[key].ref}}
            ref = f"CRM-{len(self.entries) + 1:05d}"
            self.entries[key] = Entry(ref, body, dict(headers))
            if (
                fault == "500-stored"
            ):  # stored, but the answer is lost: the retry must get 409, not a 2nd entry
                return 500, {}, {"error": "gateway timeout"}
            return 201, {"Location": f"/api/cases/{ref}"}, {"data": {"case_no": ref, "status": "open"}}


def serve(standin: StandIn) -> Iterator[StandIn]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, headers, body = standin.answer(self.headers, raw)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    standin.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield standin
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(name="crm_standin")
def crm_standin_fixture() -> Iterator[StandIn]:
    yield from serve(StandIn())
