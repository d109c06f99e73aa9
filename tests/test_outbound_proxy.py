"""OUTAGE_OUTBOUND_PROXY: outbound requests go through the one proxy named explicitly (never HTTP(S)_PROXY from the
environment), targets are still judged by the outbound rules first, and a reply's body is read only up to the
bound the caller gave (IM bots answer 200 with an error code in the body)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from backend import outbound


class Recorder:
    """A plain-HTTP server that records the request target it is given: an absolute URL when it is used as a
    forward proxy, a path when it is the target itself. Answers 200 with a 10 KB JSON body."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.targets.append(self.path)
                body = json.dumps({"errcode": 0, "pad": "x" * 10_000}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorders() -> Iterator[tuple[Recorder, Recorder]]:
    proxy, target = Recorder(), Recorder()
    yield proxy, target
    proxy.close()
    target.close()


async def test_requests_go_through_the_named_proxy_only(recorders, monkeypatch):
    proxy, target = recorders
    monkeypatch.setenv("HTTP_PROXY", proxy.url)  # from the environment: must be ignored
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    direct = outbound.Client("127.0.0.1", 5)
    try:
        reply = await direct.post(f"{target.url}/direct", data=b"{}", headers={}, read_body=4096)
    finally:
        await direct.close()
    assert reply.status == 200 and target.targets == ["/direct"] and proxy.targets == []
    assert len(reply.body) == 4096 and reply.body.startswith(b'{"errcode": 0')  # bounded read

    via = outbound.Client(f"127.0.0.1:{target.port}", 5, proxy=proxy.url)
    try:
        reply = await via.post(f"{target.url}/via", data=b"{}", headers={})
        assert reply.status == 200 and reply.body == b""  # nothing read unless asked
        assert proxy.targets == [f"{target.url}/via"]  # the absolute URL: it went through the proxy
        with pytest.raises(outbound.Refused):  # the proxy is no way around the rules
            await via.post("https://10.1.2.3/robot", data=b"{}", headers={})
        with pytest.raises(outbound.Refused):
            await via.post("http://example.com/robot", data=b"{}", headers={})  # not https, not allowed
    finally:
        await via.close()
    assert len(proxy.targets) == 1


def test_a_proxy_must_be_an_http_url():
    with pytest.raises(ValueError):
        outbound.Client("", 5, proxy="socks5://127.0.0.1:1080")
