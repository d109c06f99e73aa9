"""Loopback stand-ins for the providers the outbox reaches: WeCom, DingTalk and Feishu group robots, a Standard
Webhooks receiver, Aliyun SMS (one HTTP server on 127.0.0.1) and an SMTP server (aiosmtpd).

Each checks what the real one checks: WeCom the robot key; DingTalk the access token, the 加签 signature and its
timestamp window (an hour); Feishu the signature in the body and its timestamp window; the webhook its Standard
Webhooks signature (the `standardwebhooks` library); Aliyun its RPC signature (HMAC-SHA1) and timestamp. A
check that fails gets the provider's own error answer. A test can queue "ratelimit", "dead" or "error" answers
per provider; every request is recorded with what it said.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.controller import Controller
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from backend import sms

WECOM_KEY = "wecom-key-123"
DING_TOKEN = "ding-token-456"
DING_SECRET = "SEC0123456789abcdef"
FEISHU_TOKEN = "feishu-hook-789"
FEISHU_SECRET = "feishu-secret"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"standard-webhooks-test-secret-32").decode()
SMS_KEY_ID, SMS_KEY_SECRET = "LTAI-test", "sms-key-secret"
WINDOW = 3600  # seconds: the robots refuse a timestamp further from now than this

ANSWERS = {
    "wecom": {"ok": {"errcode": 0, "errmsg": "ok"}, "ratelimit": {"errcode": 45009, "errmsg": "api freq out of limit"},
              "dead": {"errcode": 93000, "errmsg": "invalid webhook url"}, "error": {"errcode": 40008, "errmsg": "invalid message type"}},
    "dingtalk": {"ok": {"errcode": 0, "errmsg": "ok"}, "ratelimit": {"errcode": 130101, "errmsg": "send too fast"},
                 "dead": {"errcode": 300001, "errmsg": "token is not exist"}, "error": {"errcode": 310000, "errmsg": "keywords not in content"}},
    "feishu": {"ok": {"code": 0, "msg": "success", "data": {}}, "ratelimit": {"code": 11232, "msg": "frequency limited"},
               "dead": {"code": 19001, "msg": "param invalid: incoming webhook access token invalid"}, "error": {"code": 19024, "msg": "Key Words Not Found"}},
    "sms": {"ok": {"Code": "OK", "Message": "OK", "BizId": "900619746936498440^0"},
            "ratelimit": {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发分钟级流控Permits:1"},
            "error": {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号"}},
}  # fmt: skip


@dataclass
class Request:
    provider: str
    verified: bool
    body: dict[str, Any]
    answered: Any
    query: dict[str, list[str]] = field(default_factory=dict)

    @property
    def text(self) -> str:
        if self.provider == "wecom":
            return self.body["text"]["content"]
        if self.provider == "dingtalk":
            return self.body["text"]["content"]
        if self.provider == "feishu":
            return self.body["content"]["text"]
        if self.provider == "webhook":
            return self.body["data"]["text"]
        return json.loads(self.body["TemplateParam"][0])["title"]


class Providers:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.queued: dict[str, list[str]] = {}
        self.lock = threading.Lock()
        providers = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                providers._handle(self, self.rfile.read(length))

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    # URLs as each provider hands them out
    @property
    def urls(self) -> dict[str, str]:
        return {
            "wecom": f"{self.base}/cgi-bin/webhook/send?key={WECOM_KEY}",
            "dingtalk": f"{self.base}/robot/send?access_token={DING_TOKEN}",
            "feishu": f"{self.base}/open-apis/bot/v2/hook/{FEISHU_TOKEN}",
            "webhook": f"{self.base}/hooks/outage",
            "sms": f"{self.base}/sms/",
        }

    def queue(self, provider: str, *answers: str) -> None:
        with self.lock:
            self.queued.setdefault(provider, []).extend(answers)

    def of(self, provider: str, verified: bool | None = True) -> list[Request]:
        with self.lock:
            return [
                r
                for r in self.requests
                if r.provider == provider and (verified is None or r.verified == verified)
            ]

    def _next(self, provider: str) -> str:
        with self.lock:
            queued = self.queued.get(provider) or []
            return queued.pop(0) if queued else "ok"

    def _handle(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        url = urlsplit(handler.path)
        query = parse_qs(url.query)
        now = time.time()
        status, verified = 200, False
        if url.path == "/cgi-bin/webhook/send":
            provider, body = "wecom", json.loads(raw)
            verified = query.get("key") == [WECOM_KEY] and body.get("msgtype") == "text"
            failed = {"errcode": 93000, "errmsg": "invalid webhook url"}
        elif url.path == "/robot/send":
            provider, body = "dingtalk", json.loads(raw)
            stamp, sign = query.get("timestamp", ["0"])[0], query.get("sign", [""])[0]
            digest = hmac.new(
                DING_SECRET.encode(), f"{stamp}\n{DING_SECRET}".encode(), hashlib.sha256
            ).digest()
            verified = (
                query.get("access_token") == [DING_TOKEN]
                and abs(now - int(stamp) / 1000) < WINDOW
                and hmac.compare_digest(base64.b64encode(digest).decode(), sign)
            )
            failed = {"errcode": 310000, "errmsg": "sign not match"}
        elif url.path.startswith("/open-apis/bot/v2/hook/"):
            provider, body = "feishu", json.loads(raw)
            stamp = str(body.get("timestamp", "0"))
            digest = hmac.new(f"{stamp}\n{FEISHU_SECRET}".encode(), b"", hashlib.sha256).digest()
            verified = (
                url.path.endswith("/" + FEISHU_TOKEN)
                and abs(now - int(stamp)) < WINDOW
                and hmac.compare_digest(base64.b64encode(digest).decode(), str(body.get("sign", "")))
            )
            failed = {
                "code": 19021,
                "msg": "sign match fail or timestamp is not within one hour from current time",
            }
        elif url.path == "/hooks/outage":
            provider = "webhook"
            try:
                body = Webhook(WEBHOOK_SECRET).verify(raw, {k.lower(): v for k, v in handler.headers.items()})
                verified = True
            except WebhookVerificationError:
                body = json.loads(raw)
            failed = None
        else:
            provider, body = "sms", parse_qs(raw.decode())
            params = {k: v[0] for k, v in body.items()}
            given = params.pop("Signature", "")
            stamp = params.get("Timestamp", "1970-01-01T00:00:00Z")
            sent_at = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
            verified = (
                params.get("AccessKeyId") == SMS_KEY_ID
                and abs(now - sent_at) < 900
                and hmac.compare_digest(sms.signature(params, SMS_KEY_SECRET), given)
            )
            failed = {"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched"}
        if not verified:
            answer: Any = failed
            status = 401 if provider == "webhook" else 200
        else:
            kind = self._next(provider)
            if provider == "webhook":
                status = {"ok": 204, "ratelimit": 429, "dead": 410, "error": 500}[kind]
                answer = None
            else:
                answer = ANSWERS[provider][kind]
        with self.lock:
            self.requests.append(Request(provider, verified, body, answer, query))
        data = b"" if answer is None else json.dumps(answer).encode()
        handler.send_response(status)
        if status == 429:
            handler.send_header("Retry-After", "30")
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """aiosmtpd on 127.0.0.1 keeping every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        mailbox = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                message = message_from_bytes(envelope.content, policy=policy.default)
                mailbox.messages.append((envelope.rcpt_tos, message))
                return "250 OK"

        with socket.socket() as probe:  # aiosmtpd checks it is up by connecting: it needs a real port
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=port)
        self.controller.start()
        self.url = f"smtp://127.0.0.1:{port}"

    def close(self) -> None:
        self.controller.stop()


@pytest.fixture(scope="module", name="providers")
def providers_fixture() -> Iterator[Providers]:
    stand_in = Providers()
    yield stand_in
    stand_in.close()


@pytest.fixture(scope="module", name="mailbox")
def mailbox_fixture() -> Iterator[Mailbox]:
    box = Mailbox()
    yield box
    box.close()
