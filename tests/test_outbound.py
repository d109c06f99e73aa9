"""The outbound rules (backend.outbound) through Web Push, on both databases: registration refuses endpoints
that are not https on a public address; delivery checks again at send time (rows stored before the rules, a
name that now resolves to a private address) and never connects; redirects are not followed; a push
service's reply body never reaches the timeline; one bad subscription never harms the other deliveries of
its round; a subscription cannot be taken over from another user or site."""

from __future__ import annotations

import base64
import socket
from types import SimpleNamespace

import pytest
from aiohttp.abc import AbstractResolver
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from backend import escalation, outbound, outbox, push
from backend.app import create_app
from backend.auth import User
from backend.clock import ManualClock
from backend.db import utcnow
from backend.outbox import PushDelivery
from backend.push import PushSubscription

from .push_receiver import receiver_fixture  # noqa: F401 (the `receiver` fixture)

PUBLIC_V4 = "93.184.215.14"


@pytest.fixture
def dns(monkeypatch):
    """Names this test's DNS answers ({"rebind.test": ["127.0.0.1"]}); other names resolve as usual. Patched
    where every resolver in this process ends up (socket.getaddrinfo), old code and new alike."""
    names: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        name = (host.decode() if isinstance(host, bytes) else host or "").lower().rstrip(".")
        if name not in names:
            return real(host, port, family, type, proto, flags)
        found = []
        for address in names[name]:
            try:
                found += real(address, port, family, type, proto, flags | socket.AI_NUMERICHOST)
            except socket.gaierror:
                pass  # an IPv6 answer to an IPv4-only query
        if not found:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return found

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names


@pytest.fixture(scope="module")
async def strict_client(database_url, settings_for):
    """The app with no OUTAGE_OUTBOUND_ALLOW: loopback is as forbidden as any private address."""
    async with AsyncTestClient(
        app=create_app(settings_for(database_url, outbound_allow="")), raise_server_exceptions=False
    ) as test_client:
        yield test_client


@pytest.fixture
async def engines(client, db, settings_for, database_url):
    """make(allow) -> a sender's state with that allow-list, sharing one manual clock with the API app."""
    clock = ManualClock()
    client.app.state.clock = clock
    made = []

    async def make(allow: str):
        state = SimpleNamespace(
            settings=settings_for(database_url, outbound_allow=allow),
            sessionmaker=db,
            clock=clock,
            worker_interval=0.02,
        )
        await push.on_startup(SimpleNamespace(state=state))
        made.append(state)
        return state

    yield make
    client.app.state.clock = None
    for state in made:
        await push.on_shutdown(SimpleNamespace(state=state))


async def drain(state) -> None:
    for _ in range(50):
        if not (await escalation.fire_due(state)) + (await outbox.deliver_due(state)):
            return
    raise AssertionError("sender did not settle")


async def declare(client, site) -> int:
    response = await client.post(
        "/api/incidents", json={"playbook": "system-failure"}, headers=site.headers("lead")
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def store_subscription(db, site, role, endpoint, keys) -> int:
    """A row as if stored before the rules existed (or by anything but the API)."""
    async with db() as session:
        site_id = (
            await session.execute(select(User.site_id).where(User.id == site.users[role]))
        ).scalar_one()
        sub = PushSubscription(
            site_id=site_id,
            user_id=site.users[role],
            endpoint=endpoint,
            p256dh=keys["p256dh"],
            auth=keys["auth"],
            created_at=utcnow(),
            last_seen_at=utcnow(),
        )
        session.add(sub)
        await session.commit()
        return sub.id


async def deliveries_of(db, subscription_id) -> list[PushDelivery]:
    async with db() as session:
        return list(
            (
                await session.execute(
                    select(PushDelivery)
                    .where(PushDelivery.subscription_id == subscription_id)
                    .order_by(PushDelivery.id)
                )
            ).scalars()
        )


async def timeline(client, site, incident_id) -> list[dict]:
    response = await client.get(f"/api/incidents/{incident_id}/timeline", headers=site.headers("lead"))
    return response.json()["events"]


def bad_curve_key() -> str:
    """65 bytes starting 0x04, as an uncompressed P-256 point must, but (1, 1) is not on the curve."""
    point = b"\x04" + (1).to_bytes(32, "big") + (1).to_bytes(32, "big")
    return base64.urlsafe_b64encode(point).rstrip(b"=").decode()


# ---------------------------------------------------------------- registration

REFUSED_ENDPOINTS = [
    "http://push.public.test/wpush/x",  # plain http, even to a public name
    "https://169.254.169.254/latest/meta-data/",
    "https://127.0.0.1:5432/",
    "https://127.0.0.1./push",
    "https://a..b/push",  # a name IDNA refuses
    "https://a\x00b/push",  # a NUL in the name: refused, not a 500
    "https://[::1]/push",
    "https://10.1.2.3/push",
    "https://172.16.0.1/push",
    "https://192.168.1.1/push",
    "https://100.64.0.1/push",  # carrier-grade NAT
    "https://0.0.0.0/push",
    "https://2130706433/push",  # 127.0.0.1 in decimal
    "http://2130706433/",
    "https://0x7f000001/push",
    "https://127.1/push",
    "https://017700000001/push",
    "https://0/push",
    "https://[::ffff:127.0.0.1]/push",  # IPv4-mapped IPv6
    "https://[::ffff:169.254.169.254]/push",
    "https://[64:ff9b::7f00:1]/push",  # NAT64 of 127.0.0.1
    "https://[2002:7f00:1::]/push",  # 6to4 of 127.0.0.1
    "https://[::7f00:1]/push",  # IPv4-compatible
    "https://[::ffff:0:7f00:1]/push",  # IPv4-translated
    "https://[64:ff9b:1::a9fe:a9fe]/push",  # local-use NAT64
    "https://[fe80::1]/push",
    "https://[fec0::1]/push",
    "https://[ff02::1]/push",
    "https://[fc00::1]/push",
    "https://[::]/push",
    "https://224.0.0.1/push",
    "https://localhost/push",
    "https://LOCALHOST.:8443/push",
    "https://phone.localhost/push",
    "https://metadata.test/push",  # resolves to 169.254.169.254
    "https://internal.test/push",  # resolves to 10.0.0.7
    "https://mixed.test/push",  # one public and one private answer
]


@pytest.mark.parametrize("endpoint", REFUSED_ENDPOINTS)
async def test_registration_refuses_endpoints_that_are_not_https_on_a_public_address(
    strict_client, site, dns, receiver, endpoint
):
    dns.update(
        {
            "metadata.test": ["169.254.169.254"],
            "internal.test": ["10.0.0.7"],
            "mixed.test": [PUBLIC_V4, "127.0.0.1"],
            "push.public.test": [PUBLIC_V4],
        }
    )
    keys = receiver.subscription()["keys"]
    response = await strict_client.post(
        "/api/push/subscriptions", json={"endpoint": endpoint, "keys": keys}, headers=site.headers("manager")
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert set(response.json()["errors"]) == {"endpoint"}
    mine = await strict_client.get("/api/push/subscriptions", headers=site.headers("manager"))
    assert mine.json() == []


async def test_registration_refuses_loopback_unless_allowed(strict_client, client, site, receiver):
    subscription = receiver.subscription()  # http://127.0.0.1:port/…
    refused = await strict_client.post(
        "/api/push/subscriptions", json=subscription, headers=site.headers("manager")
    )
    assert refused.status_code == 422 and set(refused.json()["errors"]) == {"endpoint"}
    allowed = await client.post("/api/push/subscriptions", json=subscription, headers=site.headers("manager"))
    assert allowed.status_code == 200, allowed.text  # the test app lists 127.0.0.1 in OUTAGE_OUTBOUND_ALLOW


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://push.public.test/wpush/v2/abc",
        f"https://{PUBLIC_V4}/push/x",
        "https://[2606:4700:4700::1111]/push/x",
        "https://[64:ff9b::5db8:d70e]/x",
        "https://push.nowhere.invalid/x",
    ],
)  # no answer now: checked when sending
async def test_registration_accepts_https_on_public_addresses(strict_client, site, dns, receiver, endpoint):
    dns["push.public.test"] = [PUBLIC_V4]
    response = await strict_client.post(
        "/api/push/subscriptions",
        json={"endpoint": endpoint, "keys": receiver.subscription()["keys"]},
        headers=site.headers("manager"),
    )
    assert response.status_code == 200, response.text


async def test_registration_refuses_a_key_that_is_not_a_point_on_p256(client, site, receiver):
    subscription = receiver.subscription()
    subscription["keys"]["p256dh"] = bad_curve_key()
    response = await client.post(
        "/api/push/subscriptions", json=subscription, headers=site.headers("manager")
    )
    assert response.status_code == 422 and set(response.json()["errors"]) == {"keys.p256dh"}


# ---------------------------------------------------------------- send time

STORED_ENDPOINTS = [
    "{base}/push/{token}",
    "https://127.0.0.1:{port}/push/{token}",
    "https://[::ffff:127.0.0.1]:{port}/push/{token}",
    "https://2130706433:{port}/push/{token}",
    "https://rebind.test:{port}/push/{token}",
]


@pytest.mark.parametrize("template", STORED_ENDPOINTS)
async def test_a_stored_private_endpoint_is_refused_at_send_time_without_connecting(
    client, db, site, engines, receiver, dns, template
):
    dns["rebind.test"] = ["127.0.0.1"]  # a public name at registration; private now
    sender = await engines("")  # no OUTAGE_OUTBOUND_ALLOW
    genuine = receiver.subscription()
    port = genuine["endpoint"].split(":")[2].split("/")[0]
    endpoint = template.format(base=receiver.base, port=port, token=genuine["endpoint"].rsplit("/", 1)[1])
    sub_id = await store_subscription(db, site, "manager", endpoint, genuine["keys"])
    incident_id = await declare(client, site)
    await drain(sender)
    sender.clock.advance(hours=2)  # rungs fire; nothing is retried to that endpoint
    await drain(sender)

    assert receiver.connections == 0 and receiver.messages() == []
    rows = await deliveries_of(db, sub_id)
    assert len(rows) == 4  # the declaration and three rungs, each refused once
    for row in rows:
        assert row.state == "failed" and row.next_attempt_at is None and row.attempts == 1
        assert row.last_status is None and row.last_error.startswith("refused: "), row.last_error
    failed = [e for e in await timeline(client, site, incident_id) if e["kind"] == "notification_failed"]
    assert [e["data"]["error"] for e in failed] == [r.last_error for r in rows]


async def test_a_push_services_reply_body_never_reaches_the_timeline(client, db, site, engines, receiver):
    sender = await engines("127.0.0.1")
    phone = receiver.subscription()
    assert (
        await client.post("/api/push/subscriptions", json=phone, headers=site.headers("manager"))
    ).status_code == 200
    secret = b'{"instance-id":"i-0abc","AccessKeyId":"SECRET-FROM-THE-METADATA-SERVICE"}'
    receiver.answer(phone["endpoint"], 500, 400, body=secret)
    incident_id = await declare(client, site)
    await drain(sender)
    sender.clock.advance(seconds=60)  # the retry after the 500 is due; the first rung (5 min) is not
    await drain(sender)
    assert [m.answered for m in receiver.messages(endpoint=phone["endpoint"])] == [500, 400]
    events = [e for e in await timeline(client, site, incident_id) if e["kind"] == "notification_failed"]
    assert [e["data"]["error"] for e in events] == ["push service answered 500", "push service answered 400"]
    async with db() as session:
        errors = (
            (
                await session.execute(
                    select(PushDelivery.last_error).where(PushDelivery.incident_id == incident_id)
                )
            )
            .scalars()
            .all()
        )
    assert errors == ["push service answered 400"]
    assert all("SECRET" not in str(e) for e in [*errors, *events])


@pytest.mark.parametrize("status", [302, 307, 308])
async def test_a_redirect_is_not_followed(client, db, site, engines, receiver, status):
    sender = await engines("127.0.0.1")  # both ends are allowed: redirects are refused as such
    phone, elsewhere = receiver.subscription(), receiver.subscription()
    assert (
        await client.post("/api/push/subscriptions", json=phone, headers=site.headers("manager"))
    ).status_code == 200
    receiver.answer(phone["endpoint"], status, headers={"Location": elsewhere["endpoint"]})
    await client.post("/api/push/test", headers=site.headers("manager"))
    await drain(sender)
    assert [m.answered for m in receiver.messages(endpoint=phone["endpoint"])] == [status]
    assert receiver.messages(endpoint=elsewhere["endpoint"]) == []
    async with db() as session:
        row = (
            await session.execute(select(PushDelivery).where(PushDelivery.user_id == site.users["manager"]))
        ).scalar_one()
    assert row.state == "failed" and row.last_status == status and row.next_attempt_at is None
    assert row.last_error == f"push service answered {status} (redirects are not followed)"


# ---------------------------------------------------------------- one bad delivery, the others unharmed


async def test_a_bad_curve_key_fails_alone_and_the_others_are_sent_exactly_once(
    client, db, site, engines, receiver
):
    sender = await engines("127.0.0.1")
    good = [receiver.subscription() for _ in range(3)]
    for phone in good[:2]:
        assert (
            await client.post("/api/push/subscriptions", json=phone, headers=site.headers("manager"))
        ).status_code == 200
    bad = receiver.subscription()
    bad_id = await store_subscription(
        db, site, "manager", bad["endpoint"], {**bad["keys"], "p256dh": bad_curve_key()}
    )
    assert (
        await client.post("/api/push/subscriptions", json=good[2], headers=site.headers("manager"))
    ).status_code == 200
    await client.post("/api/push/test", headers=site.headers("manager"))
    await outbox.deliver_due(sender)  # one round claims all four
    sender.clock.advance(seconds=outbox.SEND_LEASE.total_seconds() + 1)  # a stuck claim would be retaken
    await drain(sender)

    for phone in good:
        assert [m.answered for m in receiver.messages(endpoint=phone["endpoint"])] == [201]
    assert receiver.messages(endpoint=bad["endpoint"]) == []
    async with db() as session:
        rows = (
            (
                await session.execute(
                    select(PushDelivery)
                    .where(PushDelivery.user_id == site.users["manager"])
                    .order_by(PushDelivery.id)
                )
            )
            .scalars()
            .all()
        )
    assert sorted(r.state for r in rows) == ["failed", "sent", "sent", "sent"]
    [failed] = [r for r in rows if r.subscription_id == bad_id]
    assert failed.state == "failed" and failed.next_attempt_at is None and failed.attempts == 1
    assert failed.last_error == "cannot encrypt or sign for this subscription"


async def test_any_exception_while_sending_one_delivery_is_recorded_on_it_alone(
    client, db, site, engines, receiver, monkeypatch
):
    sender = await engines("127.0.0.1")
    phones = [receiver.subscription() for _ in range(3)]
    for phone in phones:
        assert (
            await client.post("/api/push/subscriptions", json=phone, headers=site.headers("manager"))
        ).status_code == 200
    real_send = push.send

    async def send(state, sub, *args):
        if sub.endpoint == phones[1]["endpoint"]:
            raise RuntimeError("unexpected")
        return await real_send(state, sub, *args)

    monkeypatch.setattr(push, "send", send)
    await client.post("/api/push/test", headers=site.headers("manager"))
    await outbox.deliver_due(sender)
    sender.clock.advance(seconds=outbox.SEND_LEASE.total_seconds() + 1)
    monkeypatch.setattr(push, "send", real_send)
    await drain(sender)
    assert [len(receiver.messages(endpoint=p["endpoint"])) for p in phones] == [
        1,
        1,
        1,
    ]  # the odd one on retry
    async with db() as session:
        states = (
            await session.execute(
                select(PushDelivery.state, PushDelivery.attempts)
                .where(PushDelivery.user_id == site.users["manager"])
                .order_by(PushDelivery.id)
            )
        ).all()
    assert [tuple(s) for s in states] == [("sent", 1), ("sent", 2), ("sent", 1)]


# ---------------------------------------------------------------- takeover


async def test_another_sites_user_cannot_take_a_subscription_over(
    client, site, other_site, engines, receiver
):
    sender = await engines("127.0.0.1")
    phone = receiver.subscription()
    assert (
        await client.post("/api/push/subscriptions", json=phone, headers=site.headers("manager"))
    ).status_code == 200
    other_keys = receiver.subscription()["keys"]
    for keys in (other_keys, phone["keys"]):  # never across sites, not even with the same keys
        taken = await client.post(
            "/api/push/subscriptions", json={**phone, "keys": keys}, headers=other_site.headers("manager")
        )
        assert taken.status_code == 409, taken.text
        assert taken.headers["content-type"].startswith("application/problem+json")
    assert [
        s["endpoint"]
        for s in (await client.get("/api/push/subscriptions", headers=site.headers("manager"))).json()
    ] == [phone["endpoint"]]
    assert (await client.get("/api/push/subscriptions", headers=other_site.headers("manager"))).json() == []

    await declare(client, other_site)
    incident_id = await declare(client, site)
    await drain(sender)
    [message] = receiver.messages(endpoint=phone["endpoint"])  # decrypted with the owner's keys
    assert message.answered == 201 and message.payload["incident_id"] == incident_id


async def test_a_subscription_moves_within_its_site_only_with_the_same_keys(client, site, receiver):
    phone = receiver.subscription()
    assert (
        await client.post("/api/push/subscriptions", json=phone, headers=site.headers("manager"))
    ).status_code == 200
    guessed = await client.post(
        "/api/push/subscriptions",
        json={**phone, "keys": receiver.subscription()["keys"]},
        headers=site.headers("agent"),
    )
    assert guessed.status_code == 409
    assert len((await client.get("/api/push/subscriptions", headers=site.headers("manager"))).json()) == 1
    # A shared phone: the same browser subscription (same keys), and someone else of the site logs in.
    moved = await client.post("/api/push/subscriptions", json=phone, headers=site.headers("lead"))
    assert moved.status_code == 200 and moved.json()["created"] is False
    assert (await client.get("/api/push/subscriptions", headers=site.headers("manager"))).json() == []
    assert len((await client.get("/api/push/subscriptions", headers=site.headers("lead"))).json()) == 1


# ---------------------------------------------------------------- the rules themselves


def test_allow_list_entries_are_host_or_host_and_port():
    rules = outbound.Rules(" 127.0.0.1 , crm.internal:8443,[::1]:9000")
    assert rules.allowed("127.0.0.1", 5432) and rules.allowed("CRM.internal.", 8443)
    assert (
        not rules.allowed("crm.internal", 443) and rules.allowed("::1", 9000) and not rules.allowed("::1", 80)
    )
    assert rules.check_url("http://127.0.0.1:8000/x").host == "127.0.0.1"
    assert rules.check_url("https://push.example.net/x").host == "push.example.net"  # judged when resolved
    for url, reason in [
        ("http://crm.internal/x", "not https"),
        ("https://[::1]:80/", "private address"),
        ("https://localhost/", "private address"),
        ("https://127.1/", "not a canonical IP address"),
        ("ftp://example.com/", "not an http(s) URL"),
    ]:
        with pytest.raises(outbound.Refused) as refused:
            rules.check_url(url)
        assert str(refused.value) == reason


async def test_the_resolver_refuses_an_answer_with_any_private_address():
    class Fixed(AbstractResolver):
        async def resolve(self, host, port=0, family=socket.AF_INET):
            return [
                {"hostname": host, "host": h, "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}
                for h in {
                    "mixed.test": [PUBLIC_V4, "10.0.0.1"],
                    "public.test": [PUBLIC_V4],
                    "crm.internal": ["10.0.0.2"],
                }[host]
            ]

        async def close(self):
            pass

    resolver = outbound.GuardedResolver(outbound.Rules("crm.internal"), Fixed())
    assert [r["host"] for r in await resolver.resolve("public.test", 443)] == [PUBLIC_V4]
    assert [r["host"] for r in await resolver.resolve("crm.internal", 443)] == ["10.0.0.2"]  # allow-listed
    with pytest.raises(outbound.Refused, match="private address"):
        await resolver.resolve("mixed.test", 443)
