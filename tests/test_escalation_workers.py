"""Two app instances (each with its own engine and connection pool) run the escalation and push workers
against one database at once: every rung fires exactly once and every delivery is sent exactly once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from backend import escalation, incidents, outbox, push, workers
from backend.auth import CurrentUser, User, create_user
from backend.clock import ManualClock
from backend.config import load_settings
from backend.db import make_engine, sessionmaker
from backend.ladder import EscalationStep
from backend.migrate import upgrade
from backend.outbox import PushDelivery
from backend.push import PushSubscription
from backend.timeline import IncidentEvent

from .conftest import PASSWORD_HASH, POSTGRES_URL, _load_defaults, make_site, require
from .push_receiver import PushReceiver
from .servers import drop_postgres_database, fresh_postgres_database

INCIDENTS = 12
MANAGERS = 3


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_database(request, tmp_path):
    """A database of its own: these workers claim everything that is due, so no other test's rows."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'workers.db'}"
        upgrade(url)
        asyncio.run(_load_defaults(url))
        yield url
        return
    require(bool(POSTGRES_URL), "PostgreSQL (TEST_POSTGRES_URL)")
    url = fresh_postgres_database(POSTGRES_URL)
    try:
        upgrade(url)
        asyncio.run(_load_defaults(url))
        yield url
    finally:
        drop_postgres_database(POSTGRES_URL, url)


async def test_two_instances_fire_each_rung_once_and_send_each_delivery_once(
    shared_database, tmp_path, monkeypatch
):
    # Count what each instance did (the real workers call these module functions).
    work: Counter = Counter()
    real_fire, real_deliver = escalation.fire_due, outbox.deliver_due

    async def fire_due(app):
        n = await real_fire(app)
        work["fired", id(app)] += n
        return n

    async def deliver_due(app):
        n = await real_deliver(app)
        work["sent", id(app)] += n
        return n

    monkeypatch.setattr(escalation, "fire_due", fire_due)
    monkeypatch.setattr(outbox, "deliver_due", deliver_due)
    monkeypatch.setattr(escalation, "BATCH", 4)  # small claims: many rounds, so the instances interleave
    monkeypatch.setattr(outbox, "BATCH", 10)
    receiver = PushReceiver()
    clock = ManualClock()
    settings = load_settings(
        database_url=shared_database,
        secret_key="k",
        vapid_key_path=tmp_path / "vapid.pem",
        run_workers=True,
        outbound_allow="127.0.0.1",
    )  # the push stand-in is on loopback
    instances = []
    for _ in range(2):
        engine = make_engine(shared_database)
        app = SimpleNamespace(
            state=SimpleNamespace(
                settings=settings,
                engine=engine,
                sessionmaker=sessionmaker(engine),
                clock=clock,
                worker_interval=0.01,
            )
        )
        await push.on_startup(app)
        instances.append(app)
    factory = instances[0].state.sessionmaker
    site = await make_site(factory, roles=("lead",), prefix="workers")
    async with factory() as session:
        for i in range(MANAGERS):
            manager = await create_user(
                session, f"{site.slug}-m{i}", "manager", site.slug, "x", password_hash=PASSWORD_HASH
            )
            sub = receiver.subscription()
            session.add(
                PushSubscription(
                    site_id=manager.site_id,
                    user_id=manager.id,
                    endpoint=sub["endpoint"],
                    p256dh=sub["keys"]["p256dh"],
                    auth=sub["keys"]["auth"],
                    created_at=clock.at,
                    last_seen_at=clock.at,
                )
            )
        lead = (await session.execute(select(User).where(User.id == site.users["lead"]))).scalar_one()
        actor = CurrentUser(
            lead.id, lead.username, lead.display_name, "lead", lead.site_id, site.slug, site.slug
        )
        for _ in range(INCIDENTS):
            await incidents.declare(session, lead.site_id, "system-failure", actor, clock.at)
        await session.commit()
    clock.advance(minutes=61)  # every rung of every incident is due at once: maximum contention

    tasks = [task for app in instances for task in workers.start(app, [escalation.STEP, outbox.STEP])]
    rungs = INCIDENTS * 3
    expected_deliveries = INCIDENTS * MANAGERS * (1 + 3)  # the declaration notice + 3 rungs each
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            async with factory() as session:
                pending = (
                    await session.execute(
                        select(func.count())
                        .select_from(EscalationStep)
                        .where(EscalationStep.status == "pending")
                    )
                ).scalar_one()
                unsent = (
                    await session.execute(
                        select(func.count()).select_from(PushDelivery).where(PushDelivery.state != "sent")
                    )
                ).scalar_one()
            if not pending and not unsent:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)  # let any (wrong) duplicate still in flight arrive
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for app in instances:
            await push.on_shutdown(app)
        receiver.close()

    async with factory() as session:
        fired = Counter(
            (e.incident_id, e.data["rung"])
            for e in (
                await session.execute(select(IncidentEvent).where(IncidentEvent.kind == "escalation_fired"))
            ).scalars()
        )
        states = Counter((await session.execute(select(EscalationStep.status))).scalars())
        deliveries = Counter((await session.execute(select(PushDelivery.state))).scalars())
        sent_events = (
            await session.execute(
                select(func.count())
                .select_from(IncidentEvent)
                .where(IncidentEvent.kind == "notification_sent")
            )
        ).scalar_one()
    for app in instances:
        await app.state.engine.dispose()
    assert states == {"fired": rungs}
    assert len(fired) == rungs and set(fired.values()) == {1}  # each rung fired once, none twice
    assert deliveries == {"sent": expected_deliveries}
    received = Counter(m.payload["delivery"] for m in receiver.messages())
    assert len(received) == expected_deliveries and set(received.values()) == {1}  # each push sent once
    assert sent_events == expected_deliveries
    # On PostgreSQL both instances really took part (SKIP LOCKED lets them work side by side); SQLite has
    # one writer at a time, so there one instance may do it all: exactly-once is what matters there.
    if shared_database.startswith("postgresql"):
        assert all(work["fired", id(app)] > 0 and work["sent", id(app)] > 0 for app in instances), work
