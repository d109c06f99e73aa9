"""Push fan-out: one notification to 1,000 subscriptions, delivered by the app's push sender (`outbox.deliver_due`,
the loop its worker runs) to the decrypting Web Push stand-in from tests/ on 127.0.0.1.

Baseline, same run, same receiver and keys: a plain sequential loop of `pywebpush.webpush()` calls.
The receiver runs in its own process, as a push service would: in the sender's process its decrypting
threads would fight the sender for the GIL and measure that instead.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

from pywebpush import webpush

from backend import notifications, outbound, outbox, push
from backend.auth import create_user
from backend.cli import load_defaults
from backend.config import load_settings
from backend.db import make_engine, sessionmaker
from backend.migrate import upgrade
from tests.push_receiver import PushReceiver


@dataclass
class FanoutResult:
    subscriptions: int
    seconds: float
    rate: float
    baseline_seconds: float
    baseline_rate: float
    cpu_per_message: float = 0.0  # seconds of the sender process's CPU per message (all its threads)


def run_fanout(
    subscriptions: int = 1000, delay: float = 0.0, baseline_count: int | None = None
) -> FanoutResult:
    """delay: seconds the receiver waits before answering, like a real push service's round trip (a real
    one is tens to hundreds of ms away; loopback is ~0). The baseline loop may cover fewer subscriptions
    (baseline_count) to save time: its rate is per message."""
    with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'push.db'}"
        upgrade(url)
        settings = load_settings(
            database_url=url, secret_key="bench", vapid_key_path=Path(tmp) / "vapid.pem", run_workers=False
        )
        parent, child = multiprocessing.get_context("spawn").Pipe()
        receiver = multiprocessing.get_context("spawn").Process(
            target=_receiver_process, args=(child, subscriptions, delay), daemon=True
        )
        receiver.start()
        try:
            return asyncio.run(_fanout(settings, parent, parent.recv(), baseline_count or subscriptions))
        finally:
            parent.send("stop")
            receiver.join(10)


def _receiver_process(pipe, count: int, delay: float) -> None:
    """The decrypting push receiver in its own process; answers "received" with (201s, all valid)."""
    # http.server listens with a backlog of 5: with the sender's 50 parallel connects the kernel drops the
    # rest of the SYNs and they are retried after 1 s, so the bench measured TCP retransmits instead of
    # pushes. A push service accepts many pending connections; so does the stand-in here (own process).
    ThreadingHTTPServer.request_queue_size = 1024
    # And it keeps connections open (HTTP/1.1 keep-alive; FCM and autopush even speak HTTP/2), where
    # http.server's default HTTP/1.0 closes each one. The app's shared aiohttp session reuses them; the
    # baseline's pywebpush.webpush() posts through a throwaway requests session, one connection per message,
    # as it would against a real push service.
    BaseHTTPRequestHandler.protocol_version = "HTTP/1.1"
    receiver = PushReceiver()
    if delay:
        handle = receiver._handle

        def slow(request):
            time.sleep(delay)  # each connection has its own thread: concurrent requests wait side by side
            handle(request)

        receiver._handle = slow
    pipe.send([receiver.subscription() for _ in range(count)])
    while (command := pipe.recv()) != "stop":
        got = receiver.messages(answered=201)
        pipe.send((len(got), all(r.vapid_valid and r.payload for r in got)))
        if command == "clear":
            receiver.received.clear()
    receiver.close()


def _received(pipe, clear: bool = False) -> tuple[int, bool]:
    pipe.send("clear" if clear else "count")
    return pipe.recv()


async def _fanout(settings, receiver, subs: list[dict], baseline_count: int) -> FanoutResult:
    count = len(subs)
    engine = make_engine(settings.database_url)
    state = SimpleNamespace(
        settings=settings, sessionmaker=sessionmaker(engine), vapid=push.vapid_key(settings)
    )
    now = datetime.now(UTC)
    async with state.sessionmaker() as session:
        await load_defaults(session)
        user = await create_user(
            session, "bench-lead", "lead", "bench-push", "bench-pass-1", "值班组长", None
        )
        session.add_all(
            [
                push.PushSubscription(
                    site_id=user.site_id,
                    user_id=user.id,
                    endpoint=s["endpoint"],
                    p256dh=s["keys"]["p256dh"],
                    auth=s["keys"]["auth"],
                    created_at=now,
                    last_seen_at=now,
                )
                for s in subs
            ]
        )
        await session.commit()

    # Baseline: what a naive sender does, one request after another.
    payload = '{"v":1,"title":{"zh-CN":"升级：停电","en":"Escalation: power outage"},"body":{}}'
    started = time.perf_counter()
    for s in subs[:baseline_count]:
        webpush(
            s,
            data=payload,
            vapid_private_key=state.vapid,
            vapid_claims={"sub": settings.vapid_subject},
            ttl=3600,
            timeout=10,
            headers={"Urgency": "high"},
        )
    baseline = time.perf_counter() - started
    assert _received(receiver, clear=True) == (baseline_count, True), "the baseline loop lost messages"

    state.outbound = outbound.Client(
        settings.outbound_allow or "127.0.0.1", push.SEND_TIMEOUT
    )  # as on_startup
    try:
        async with state.sessionmaker() as session:
            queued = await notifications.notify(
                session,
                user.site_id,
                ["lead"],
                {"zh-CN": "升级：停电", "en": "Escalation"},
                {"zh-CN": "请确认", "en": "Please acknowledge"},
                urgency="high",
                at=datetime.now(UTC),
            )
            await session.commit()
        assert queued["deliveries"] == count
        started, cpu = time.perf_counter(), time.process_time()
        while await outbox.deliver_due(state):
            pass
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await state.outbound.close()
        await engine.dispose()
    assert _received(receiver) == (count, True), "fan-out lost or garbled messages"
    return FanoutResult(count, seconds, count / seconds, baseline, baseline_count / baseline, cpu / count)
