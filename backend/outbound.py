"""Outbound requests: the one home for the rules on where the server may send HTTP (push services now;
IM-bot webhooks and the CRM will use the same client).

The rules: only https, only to public addresses (`ipaddress` is_global), except the hosts listed in
OUTAGE_OUTBOUND_ALLOW (comma-separated host[:port]; plain http and private addresses allowed for them).
A URL is checked when it is stored (`Client.check`) and again on every request (`Client.post`), because a
row may predate the rules and a name may resolve elsewhere tomorrow. Names are resolved by the session's
own resolver (GuardedResolver), which refuses any answer holding a non-public address: aiohttp connects
only to addresses that resolver returned, so what was checked is what is connected to (no DNS-rebinding
window between check and connect). Redirects are never followed and proxies from the environment are not
used; OUTAGE_OUTBOUND_PROXY names the one proxy requests go through, given explicitly (its host is allowed, and
every target name is resolved and checked by the rules before the proxy is asked to reach it). A reply's body
is read only when the caller asks: at most `read_body` bytes from `post` (IM bots answer 200 with an error code
in the body), or a few KB of JSON from `post_json_reply` (the CRM's reference); `describe()` turns a failure
into a short classification that is safe to show users.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import socket
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from multidict import CIMultiDictProxy
from yarl import URL

if TYPE_CHECKING:
    import aiohttp
    from aiohttp.abc import AbstractResolver, ResolveResult

# aiohttp (about 9 MB resident) is imported on the first outbound request, not by a server that sends nothing.

# A DNS name as it goes on the wire (IDNs arrive punycoded from yarl): labels of letters, digits, - and _.
LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
HOST_NAME = re.compile(rf"(?=.{{1,253}}\.?$)({LABEL}\.)*{LABEL}\.?")
RESOLVE_TIMEOUT = 5  # seconds for a lookup while a user waits (registration)
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
NAT64 = ipaddress.ip_network("64:ff9b::/96")
TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT's IPv4-translated addresses
NOT_GLOBAL_V6 = [
    ipaddress.ip_network("64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215)
    ipaddress.ip_network("fec0::/10"),
]  # site-local (deprecated, still routed inside some sites)


class Refused(OSError):
    """The rules forbid this request; str() is the short reason ("private address", "not https" …)."""


class Reply(NamedTuple):
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes = b""  # at most the read_body bytes the caller asked for


class JsonReply(NamedTuple):
    status: int
    headers: CIMultiDictProxy[str]
    body: Any  # the decoded JSON answer; None when empty, not JSON or longer than the limit


REPLY_LIMIT = 8192  # bytes of an answer post_json_reply reads (a CRM's reference, an error's reason)


def public(ip: Address) -> bool:
    """Is this a public unicast address? IPv6 forms that carry an IPv4 address (mapped, compatible,
    translated, 6to4, NAT64) are judged by that IPv4 address: ::ffff:127.0.0.1 is loopback, whatever
    is_global says of the IPv6 form."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id or any(ip in net for net in NOT_GLOBAL_V6):
            return False
        low = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        embedded = (
            ip.ipv4_mapped
            or ip.sixtofour
            or (low if ip in NAT64 or ip in TRANSLATED or int(ip) >> 32 == 0 else None)
        )
        if embedded is not None:
            return public(embedded)
    return ip.is_global and not ip.is_multicast


def _literal(host: str) -> Address | None:
    """The address a URL's host names literally, or None for a DNS name. Legacy numeric IPv4 spellings
    (2130706433, 0x7f.1, 127.1) are refused outright: socket would read them as addresses."""
    host = host.rstrip(".")  # "127.0.0.1." is still 127.0.0.1 to the resolver
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        socket.inet_aton(host)
    except (OSError, ValueError):  # not numeric (ValueError: a NUL in it)
        return None
    raise Refused("not a canonical IP address")


def _key(host: str) -> str:
    """One spelling per host: lower case, no trailing dot, IP addresses in their compressed form."""
    host = host.lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


class Rules:
    """OUTAGE_OUTBOUND_ALLOW, parsed: `host` allows every port of that host, `host:port` only that one."""

    def __init__(self, allow: str) -> None:
        self.allow: set[tuple[str, int | None]] = set()
        for item in filter(None, (part.strip() for part in allow.split(","))):
            parts = urlsplit(f"//{item}")
            if not parts.hostname:
                raise ValueError(f"OUTAGE_OUTBOUND_ALLOW: {item!r} is not host[:port]")
            self.allow.add((_key(parts.hostname), parts.port))

    def allowed(self, host: str, port: int | None) -> bool:
        key = _key(host)
        return (key, None) in self.allow or (key, port) in self.allow

    def check_url(self, url: str) -> URL:
        """What can be judged without DNS: the scheme, a host that is an IP address, a name's spelling."""
        try:
            parsed = URL(url)
        except ValueError as exc:
            raise Refused("not a valid URL") from exc
        if parsed.scheme not in ("https", "http") or not parsed.host:
            raise Refused("not an http(s) URL")
        if self.allowed(parsed.host, parsed.port):
            return parsed
        if parsed.scheme != "https":
            raise Refused("not https")
        ip = _literal(parsed.host)
        if ip is not None and not public(ip):
            raise Refused("private address")
        if ip is None and not HOST_NAME.fullmatch(parsed.raw_host or ""):
            raise Refused("not a valid host name")  # %-escapes, NULs, spaces: what DNS would not mean either
        if _key(parsed.host) == "localhost" or _key(parsed.host).endswith(".localhost"):
            raise Refused("private address")  # loopback by definition (RFC 6761), whatever DNS says today
        return parsed


class GuardedResolver:
    """aiohttp's resolver, then the rules: an answer with any non-public address is refused as a whole
    (unless the host is allow-listed), so a connection only ever goes to a checked, public address.
    (aiohttp's AbstractResolver interface: resolve and close.)"""

    def __init__(self, rules: Rules, inner: AbstractResolver | None = None) -> None:
        self.rules = rules
        self._inner = inner

    @property
    def inner(self) -> AbstractResolver:
        if self._inner is None:
            from aiohttp.resolver import DefaultResolver

            self._inner = DefaultResolver()
        return self._inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            results = await self.inner.resolve(host, port, family)
        except ValueError as exc:  # IDNA refuses the name (an empty label …), a NUL in it: it never resolves
            raise Refused("not a valid host name") from exc
        if self.rules.allowed(host, port):
            return results
        if not results:
            raise OSError("no address for this name")
        if not all(public(ipaddress.ip_address(r["host"])) for r in results):
            raise Refused("private address")
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


class Client:
    """One shared HTTP session for every outbound request, with the rules built in."""

    def __init__(self, allow: str, timeout: float, proxy: str = "") -> None:
        self.proxy = proxy or None
        if self.proxy:
            parts = urlsplit(self.proxy)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("OUTAGE_OUTBOUND_PROXY must be http(s)://host:port")
            allow = f"{allow},{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
        self.rules = Rules(allow)
        self.resolver = GuardedResolver(self.rules)
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """Made on first use (inside the event loop, as aiohttp wants)."""
        if self._session is None:
            import aiohttp

            # trust_env=False: an HTTP(S)_PROXY from the environment would connect for us, to unchecked addresses.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=self.resolver),  # type: ignore[arg-type]
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                trust_env=False,
            )
        return self._session

    async def check(self, url: str) -> None:
        """Raise Refused unless `url` may be sent to: for storing a URL a user gave (resolves the name now,
        so one that already points at a private address is refused at once). A name that does not resolve
        right now is let through: DNS fails in outages too, and every request is checked again anyway."""
        parsed = self.rules.check_url(url)
        assert parsed.host is not None
        if self.rules.allowed(parsed.host, parsed.port) or _literal(parsed.host) is not None:
            return
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT):
                await self.resolver.resolve(parsed.host, parsed.port or 0, socket.AF_UNSPEC)
        except Refused:
            raise
        except (OSError, TimeoutError):
            pass

    async def post(self, url: str, *, data: bytes, headers: dict[str, str], read_body: int = 0) -> Reply:
        """POST and return the status, headers and at most `read_body` bytes of the body (none by default).
        Raises Refused, TimeoutError or aiohttp.ClientError (classify them with describe())."""
        parsed = self.rules.check_url(url)
        if self.proxy and not self.rules.allowed(parsed.host or "", parsed.port):
            await self._resolve_checked(parsed)  # the proxy resolves for itself: check the name first
        async with self.session.post(
            parsed, data=data, headers=headers, allow_redirects=False, proxy=self.proxy
        ) as response:
            body = b""
            while len(body) < read_body and (chunk := await response.content.read(read_body - len(body))):
                body += chunk
            return Reply(response.status, response.headers, body)

    async def _resolve_checked(self, parsed: URL) -> None:
        assert parsed.host is not None
        if _literal(parsed.host) is not None:
            return  # check_url judged it already
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            await self.resolver.resolve(parsed.host, parsed.port or 0, socket.AF_UNSPEC)

    async def post_json_reply(
        self, url: str, *, data: bytes, headers: dict[str, str], limit: int = REPLY_LIMIT
    ) -> JsonReply:
        """POST like `post`, and read at most `limit` bytes of the answer as JSON (for an API whose answer
        matters, such as the CRM's reference): a longer answer is not read further and gives body None."""
        parsed = self.rules.check_url(url)
        if self.proxy and not self.rules.allowed(parsed.host or "", parsed.port):
            await self._resolve_checked(parsed)
        async with self.session.post(
            parsed, data=data, headers=headers, allow_redirects=False, proxy=self.proxy
        ) as response:
            raw = await response.content.read(limit + 1)
            body: Any = None
            if raw and len(raw) <= limit:
                try:
                    body = json.loads(raw)
                except ValueError:  # not JSON (or not UTF-8): the caller sees the status only
                    body = None
            return JsonReply(response.status, response.headers, body)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        else:
            await self.resolver.close()


def refusal(exc: BaseException) -> Refused | None:
    """The Refused behind a failed request (aiohttp wraps a resolver's refusal in a connector error)."""
    if isinstance(exc, Refused):
        return exc
    os_error = getattr(exc, "os_error", None)
    return os_error if isinstance(os_error, Refused) else None


def describe(exc: BaseException) -> str:
    """A short, fixed classification of a failed request: never the remote side's text."""
    import aiohttp

    if (refused := refusal(exc)) is not None:
        return f"refused: {refused}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "host name does not resolve"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return "TLS error"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connection failed"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "connection lost"
    if isinstance(exc, aiohttp.ClientError):
        return "request failed"
    return "error"
