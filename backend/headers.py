"""Security headers on every response, and who the client is behind the reverse proxies we trust.

The client's address and scheme come from X-Forwarded-For / X-Forwarded-Proto only when the peer that
connected to us is listed in `OUTAGE_TRUSTED_PROXIES`; the client is the rightmost hop that is not a
trusted proxy (everything left of it may be made up by the client). Without the setting the peer is the
client and the headers are ignored.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any, cast

from litestar.types import Message, Scope

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# No inline script anywhere (index.html loads modules only). Styles: stylesheets from us only
# (style-src-elem), but inline style *attributes* are still used by the print screen (column widths), so
# style-src-attr allows them; browsers without CSP level 3 fall back to style-src. The service worker and its
# importScripts are same-origin (worker-src, script-src), the app talks only to us (connect-src: Web Push is
# delivered by the push service to the browser, not fetched by the page), QR codes are data: images.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; style-src-elem 'self'; "
    "style-src-attr 'unsafe-inline'; img-src 'self' data:; font-src 'self'; connect-src 'self'; "
    "worker-src 'self'; manifest-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (name.encode(), value.encode())
    for name, value in (
        ("content-security-policy", CSP),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        (
            "permissions-policy",
            "camera=(), microphone=(), geolocation=(), payment=(), usb=(), serial=(), "
            "bluetooth=(), accelerometer=(), gyroscope=(), magnetometer=()",
        ),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    )
]
HSTS = (b"strict-transport-security", b"max-age=31536000")


@lru_cache(maxsize=8)
def parse_trusted(entries: tuple[str, ...]) -> tuple[tuple[IPNetwork, ...], frozenset[str]]:
    """IPs and CIDRs as networks; anything else (a peer with no IP, such as a test client's name) literally."""
    networks: list[IPNetwork] = []
    names: set[str] = set()
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry)
    return tuple(networks), frozenset(names)


def _trusted(host: str, trusted: tuple[tuple[IPNetwork, ...], frozenset[str]]) -> bool:
    networks, names = trusted
    if host in names:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def _header(scope: Scope, name: bytes) -> str | None:
    values = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == name]
    return ",".join(values) if values else None


def forwarded(scope: Scope) -> tuple[str, str]:
    """(client address, scheme) of this request, worked out once per request."""
    cached = cast(dict[str, Any], scope).get("outage_forwarded")
    if cached is not None:
        return cast(tuple[str, str], cached)
    client = scope.get("client")
    peer = client[0] if client else "unknown"
    scheme = scope.get("scheme", "http")
    app = scope.get("app")
    entries = getattr(getattr(getattr(app, "state", None), "settings", None), "trusted_proxies", ())
    result = (peer, scheme)
    if entries:
        trusted = parse_trusted(tuple(entries))
        if _trusted(peer, trusted):
            hops = [h.strip() for h in (_header(scope, b"x-forwarded-for") or "").split(",") if h.strip()]
            address = peer
            for hop in reversed(hops):
                address = hop
                if not _trusted(hop, trusted):
                    break
            protos = [p.strip().lower() for p in (_header(scope, b"x-forwarded-proto") or "").split(",")]
            if protos[-1] in ("http", "https"):
                scheme = protos[-1]  # as the trusted proxy next to us saw it
            result = (address[:64], scheme)
    scope["outage_forwarded"] = result  # type: ignore[typeddict-unknown-key]
    return result


def client_address(scope: Scope) -> str:
    return forwarded(scope)[0]


async def add_security_headers(message: Message, scope: Scope) -> None:
    """before_send hook: every HTTP answer (API, shell, static files, problems, 304s, the admission 503) gets
    the security headers; HSTS only when the request came over https (directly or via a trusted proxy)."""
    if message["type"] != "http.response.start":
        return
    headers: list[Any] = list(message.get("headers") or [])
    present = {bytes(k).lower() for k, _ in headers}
    wanted = SECURITY_HEADERS + ([HSTS] if forwarded(scope)[1] == "https" else [])
    headers.extend((k, v) for k, v in wanted if k not in present)
    message["headers"] = headers
