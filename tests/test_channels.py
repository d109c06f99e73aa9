"""Escalation through every channel, end to end: API -> engine -> the one outbox -> loopback stand-ins that check
what the real providers check (tests/providers.py). Time is a ManualClock; the robots' signatures use real time,
as the providers check them against theirs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from backend import escalation, outbox, push
from backend.app import TRANSPORTS
from backend.channels import Channel
from backend.clock import ManualClock
from backend.outbox import PushDelivery

from .providers import (
    DING_SECRET,
    FEISHU_SECRET,
    SMS_KEY_ID,
    SMS_KEY_SECRET,
    WEBHOOK_SECRET,
    mailbox_fixture,  # noqa: F401 (the `mailbox` fixture)
    providers_fixture,  # noqa: F401 (the `providers` fixture)
)

LINK = re.compile(r"https?://\S+/ack/[0-9]+\.[A-Za-z0-9_-]{24}")


@pytest.fixture
async def engine(client, db, settings_for, database_url, providers, mailbox):
    clock = ManualClock()
    client.app.state.clock = clock
    settings = settings_for(
        database_url,
        smtp_url=mailbox.url,
        smtp_from="desk@example.cn",
        sms_endpoint=providers.urls["sms"],
        sms_access_key_id=SMS_KEY_ID,
        sms_access_key_secret=SMS_KEY_SECRET,
        sms_sign_name="应急工作台",
        sms_template="SMS_0001",
    )
    state = SimpleNamespace(settings=settings, sessionmaker=db, clock=clock, transports=TRANSPORTS)
    await push.on_startup(SimpleNamespace(state=state))
    providers.requests.clear()
    providers.queued.clear()
    mailbox.messages.clear()
    yield state
    client.app.state.clock = None
    await push.on_shutdown(SimpleNamespace(state=state))


async def drain(state) -> None:
    for _ in range(50):
        if not (await escalation.fire_due(state)) + (await outbox.deliver_due(state)):
            return
    raise AssertionError("engine did not settle")


async def add_channels(client, site, providers, kinds=("wecom", "dingtalk", "feishu", "webhook")) -> dict:
    secrets = {"dingtalk": DING_SECRET, "feishu": FEISHU_SECRET, "webhook": WEBHOOK_SECRET}
    ids = {}
    for kind in kinds:
        body = {"kind": kind, "name": f"{kind} 值班群", "url": providers.urls[kind], "roles": ["manager"]}
        if kind in secrets:
            body["secret"] = secrets[kind]
        response = await client.post("/api/channels", json=body, headers=site.headers("admin"))
        assert response.status_code == 200, response.text
        assert "key=" not in response.json()["url"] and "access_token" not in response.json()["url"]
        ids[kind] = response.json()["id"]
    return ids


async def set_contact(client, site, role="manager", email="chen@example.cn", mobile="+86 138 0013 8000"):
    response = await client.put(
        "/api/me/contact", json={"email": email, "mobile": mobile}, headers=site.headers(role)
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_drills_rungs_reach_every_channel_in_order(client, site, engine, providers, mailbox):
    await add_channels(client, site, providers)
    contact = await set_contact(client, site)
    assert {r["method"]: (r["enabled"], r["after_minutes"]) for r in contact["rules"]}["sms"] == (True, 5)
    incident = (
        await client.post(
            "/api/incidents",
            json={"playbook": "system-failure", "drill": {"time_scale": 60}},
            headers=site.headers("lead"),
        )
    ).json()
    await drain(engine)
    for _ in range(4):  # rungs at 5 and 10 minutes / 60; the manager's SMS 5 minutes / 60 after each
        engine.clock.advance(seconds=5)
        await drain(engine)
    for kind in ("wecom", "dingtalk", "feishu", "webhook"):
        got = providers.of(kind)
        assert len(got) == 2 and not providers.of(kind, verified=False), kind
        assert [r.text.startswith("【演练】") for r in got] == [True, True]
        assert "（5分钟）" in got[0].text and "（10分钟）" in got[1].text, kind  # in order
        assert f"/#/incidents/{incident['id']}" in got[0].text and "/ack/" not in got[0].text  # a group link
    assert providers.of("wecom")[0].body["text"]["mentioned_mobile_list"] == ["13800138000"]
    ding = providers.of("dingtalk")[0].body
    assert ding["at"]["atMobiles"] == ["13800138000"] and "@13800138000" in ding["text"]["content"]
    assert providers.of("webhook")[0].body["data"]["messages"][0]["drill"] is True
    # The manager's email, at once, with a personal link; the SMS after 5 minutes (scaled) with another.
    mails = [m for to, m in mailbox.messages if to == ["chen@example.cn"]]
    assert len(mails) == 2 and mails[0]["Subject"].startswith("【演练】")
    assert LINK.search(mails[0].get_content())
    texts = [r.body for r in providers.of("sms")]
    assert len(texts) == 2 and texts[0]["PhoneNumbers"] == ["13800138000"]
    assert LINK.search(texts[0]["TemplateParam"][0]) and texts[0]["SignName"] == ["应急工作台"]
    events = (
        await client.get(f"/api/incidents/{incident['id']}/timeline", headers=site.headers("lead"))
    ).json()
    sent = [e["data"].get("channel") for e in events["events"] if e["kind"] == "notification_sent"]
    assert sent.count("channel") == 8 and sent.count("email") == 2 and sent.count("sms") == 2
    await client.post(
        f"/api/incidents/{incident['id']}/resolve", headers=site.headers("lead")
    )  # no later rungs


async def test_a_rate_limited_robot_still_gets_everything(client, site, engine, providers):
    ids = await add_channels(client, site, providers, kinds=("wecom",))
    providers.queue("wecom", "ratelimit")
    for _ in range(3):
        assert (
            await client.post(f"/api/channels/{ids['wecom']}/test", headers=site.headers("admin"))
        ).status_code == 202
    await drain(engine)
    assert len(providers.of("wecom")) == 1  # the three went as one message, and the robot said "too fast"
    async with engine.sessionmaker() as session:
        rows = (
            (await session.execute(select(PushDelivery).where(PushDelivery.channel_id == ids["wecom"])))
            .scalars()
            .all()
        )
    assert {(d.state, d.attempts) for d in rows} == {("pending", 0)}  # waiting, no attempt used up
    await client.post(
        f"/api/channels/{ids['wecom']}/test", headers=site.headers("admin")
    )  # a fourth, meanwhile
    engine.clock.advance(seconds=30)
    await drain(engine)
    assert len(providers.of("wecom")) == 1  # still waiting for the robot
    engine.clock.advance(seconds=31)
    await drain(engine)
    got = providers.of("wecom")
    assert len(got) == 2 and "4 messages combined" in got[1].text and got[1].text.count("Test message") == 4
    listing = (await client.get("/api/channels", headers=site.headers("admin"))).json()
    assert listing[0]["last"]["state"] == "sent"


async def test_a_dead_robot_stops_being_tried_and_a_bad_signature_is_given_up(
    client, site, engine, providers
):
    ids = await add_channels(client, site, providers, kinds=("wecom",))
    providers.queue("wecom", "dead")
    await client.post(f"/api/channels/{ids['wecom']}/test", headers=site.headers("admin"))
    await drain(engine)
    for _ in range(2):
        await client.post(f"/api/channels/{ids['wecom']}/test", headers=site.headers("admin"))
        engine.clock.advance(minutes=20)
        await drain(engine)
    assert len(providers.of("wecom")) == 1
    listing = (await client.get("/api/channels", headers=site.headers("admin"))).json()
    assert listing[0]["state"] == "dead" and listing[0]["last"]["state"] == "gone"
    # A DingTalk robot whose 加签 secret is wrong: the provider refuses it; that is not retried.
    bad = await client.post(
        "/api/channels",
        json={
            "kind": "dingtalk",
            "name": "错的密钥",
            "url": providers.urls["dingtalk"],
            "secret": "SECwrong",
        },
        headers=site.headers("admin"),
    )
    await client.post(f"/api/channels/{bad.json()['id']}/test", headers=site.headers("admin"))
    await drain(engine)
    engine.clock.advance(hours=1)
    await drain(engine)
    assert len(providers.of("dingtalk", verified=False)) == 1
    listing = (await client.get("/api/channels", headers=site.headers("admin"))).json()
    assert listing[1]["last"]["state"] == "failed" and "310000" in listing[1]["last"]["error"]
    audit = (await client.get("/api/audit?action=channel.add", headers=site.headers("admin"))).json()
    assert len(audit["entries"]) == 2 and "SECwrong" not in str(audit) and "key=" not in str(audit)


async def test_a_personal_link_acknowledges_once_and_a_get_changes_nothing(client, site, engine, mailbox):
    await set_contact(client, site)
    incident = (
        await client.post("/api/incidents", json={"playbook": "system-failure"}, headers=site.headers("lead"))
    ).json()
    engine.clock.advance(minutes=5)
    await drain(engine)
    (mail,) = [m for to, m in mailbox.messages if to == ["chen@example.cn"]]
    link = LINK.search(mail.get_content()).group(0)
    path = link[link.index("/ack/") :]
    for _ in range(2):  # an IM app or a mail scanner fetching the link first
        page = await client.get(path)
        assert page.status_code == 200 and 'method="post"' in page.text and "确认接手" in page.text
    detail = (await client.get(f"/api/incidents/{incident['id']}", headers=site.headers("lead"))).json()
    assert detail["status"] == "open"
    assert (await client.post(path[:-3] + "AAA")).status_code == 404  # a forged signature
    done = await client.post(path)
    assert done.status_code == 200 and "已确认" in done.text
    again = await client.post(path)
    assert again.status_code == 410  # single use
    detail = (await client.get(f"/api/incidents/{incident['id']}", headers=site.headers("lead"))).json()
    assert detail["status"] == "acknowledged" and [r["status"] for r in detail["ladder"]] == [
        "fired",
        "stopped",
        "stopped",
    ]
    events = (
        await client.get(f"/api/incidents/{incident['id']}/timeline", headers=site.headers("lead"))
    ).json()
    ack = [e for e in events["events"] if e["kind"] == "acknowledged"]
    assert (
        len(ack) == 1
        and ack[0]["data"]["channel"] == "email"
        and ack[0]["actor"]["id"] == site.users["manager"]
    )
    engine.clock.advance(minutes=10)
    await drain(engine)
    async with engine.sessionmaker() as session:
        sms_rows = (
            (
                await session.execute(
                    select(PushDelivery.state).where(
                        PushDelivery.incident_id == incident["id"], PushDelivery.kind == "sms"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert sms_rows == ["cancelled"]  # the SMS that would have followed is not sent


async def test_cli_adds_and_lists_channels_and_sets_contacts(database_url, db, site, providers):
    env = {**os.environ, "DATABASE_URL": database_url, "OUTAGE_OUTBOUND_ALLOW": "127.0.0.1"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "backend", *args], env=env, capture_output=True, text=True, timeout=120
        )

    added = run("channels", "add", "--site", site.slug, "--kind", "dingtalk", "--name", "主管群", "--url",
                providers.urls["dingtalk"], "--secret", DING_SECRET, "--roles", "manager,lead")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert (
        run(
            "channels",
            "add",
            "--site",
            site.slug,
            "--kind",
            "wecom",
            "--name",
            "x",
            "--url",
            "http://10.0.0.1/",
        ).returncode
        == 2
    )
    listing = run("channels", "list", "--site", site.slug)
    assert listing.returncode == 0 and "主管群" in listing.stdout and "manager,lead" in listing.stdout
    assert DING_SECRET not in listing.stdout and "ding-token" not in listing.stdout
    contact = run(
        "users",
        "contact",
        site.usernames["manager"],
        "--email",
        "chen@example.cn",
        "--mobile",
        "+8613800138000",
    )
    assert contact.returncode == 0, contact.stderr
    async with db() as session:
        channel = (await session.execute(select(Channel).where(Channel.name == "主管群"))).scalar_one()
        assert channel.roles == ["manager", "lead"] and channel.secret == DING_SECRET


async def test_a_busy_robot_is_held_back_before_its_limit_then_gets_the_rest(client, site, engine, providers):
    from backend import bots

    ids = await add_channels(client, site, providers, kinds=("feishu",))
    for _ in range(bots.PER_MINUTE + 2):  # one message per round, all within the same minute
        await client.post(f"/api/channels/{ids['feishu']}/test", headers=site.headers("admin"))
        await drain(engine)
        engine.clock.advance(seconds=1)
    assert len(providers.of("feishu")) == bots.PER_MINUTE  # the last two wait instead of hitting the limit
    engine.clock.advance(seconds=60)
    await drain(engine)
    got = providers.of("feishu")
    assert len(got) == bots.PER_MINUTE + 1 and "2 messages combined" in got[-1].text
