"""Breaking it on purpose, against real server processes: a power cut in the middle of a recovery burst,
PostgreSQL connections killed under a sync, a full disk and a read-only database. The simulated phones
(bench/devices.py) behave like the PWA: a record leaves the queue only when the server acknowledged it,
anything else is retried; afterwards every record is stored exactly once and nothing was a 500."""

from __future__ import annotations

import asyncio
import resource
import time

import httpx
import psutil
import pytest

from bench.devices import Device, call_record, make_agents, make_devices, upload_all
from bench.recovery import Database, check_exactly_once

from .conftest import POSTGRES_URL, require
from .servers import ServerProcess, _admin, drop_postgres_database, fresh_postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_url(request):
    if request.param == "sqlite":
        yield None
        return
    require(bool(POSTGRES_URL), "PostgreSQL (TEST_POSTGRES_URL)")
    url = fresh_postgres_database(POSTGRES_URL)
    yield url
    drop_postgres_database(POSTGRES_URL, url)


def started(tmp_path, url: str | None, **env: str) -> tuple[ServerProcess, Database, list[str]]:
    server = ServerProcess(tmp_path / "server", database_url=url, **env)
    users = server.add_users("fault", ("admin",))
    server.start()
    tokens = make_agents(server.base, server.login(users["admin"]), "fault", 4, server.PASSWORD)
    return server, Database(url or f"sqlite:///{server.var_dir / 'outage_desk.db'}"), tokens


def acknowledged(devices: list[Device]) -> int:
    return sum(len(d.acknowledged) for d in devices)


def no_server_errors(devices: list[Device]) -> None:
    statuses = [s for d in devices for s in d.statuses]
    assert all(s in (503, 429) for s in statuses), (
        f"unexpected answers while faulted: {sorted(set(statuses))}"
    )


async def test_kill_9_mid_burst_then_restart_loses_and_duplicates_nothing(tmp_path, backend_url):
    server, db, tokens = await asyncio.to_thread(started, tmp_path, backend_url)
    try:
        devices = make_devices(tokens, "kill", 24, 200)  # 4,800 records in batches of 100
        sent = {r["id"] for d in devices for r in d.queue}
        upload = asyncio.create_task(upload_all(server.base, devices, timeout=240))
        deadline = time.monotonic() + 120
        while acknowledged(devices) < 600 and time.monotonic() < deadline and not upload.done():
            await asyncio.sleep(0.02)
        assert not upload.done(), "the burst finished before the power cut"
        await asyncio.to_thread(server.kill)  # kill -9: in-flight batches are cut off mid-request
        at_cut = acknowledged(devices)
        assert at_cut < len(sent)
        await asyncio.sleep(1.5)  # the phones keep retrying against a dead port
        await asyncio.to_thread(server.start)
        await upload
        assert sum(len(d.queue) for d in devices) == 0, "some phones still hold records"
        assert sum(d.retries for d in devices) > 0, "no phone noticed the power cut"
        no_server_errors(devices)
        stored, duplicates = check_exactly_once(sent, await db.stored_ids("kill-"))
        assert stored == len(sent) == 4800 and duplicates == 0
        # The receipt a phone was given before the cut is still the server's receipt for that record.
        rows = dict(await db.fetch("SELECT id, receipt FROM records WHERE device_id LIKE $1", "kill-%"))
        receipts = {str(k).replace("-", ""): v for k, v in rows.items()}
        for device in devices:
            for rid, receipt in device.acknowledged.items():
                assert receipts[rid.replace("-", "")] == receipt
    finally:
        server.stop()


async def test_postgres_connections_killed_during_sync_give_503_never_500(tmp_path):
    require(bool(POSTGRES_URL), "PostgreSQL (TEST_POSTGRES_URL)")
    url = fresh_postgres_database(POSTGRES_URL)
    server = None
    try:
        server, db, tokens = await asyncio.to_thread(started, tmp_path, url)
        devices = make_devices(tokens, "pgkill", 16, 300)
        sent = {r["id"] for d in devices for r in d.queue}
        upload = asyncio.create_task(upload_all(server.base, devices, timeout=240))
        database = db.url.database
        killed = 0
        for _ in range(8):  # every ~0.3 s, drop every connection the app holds, mid-transaction or idle
            await asyncio.sleep(0.3)
            if upload.done():
                break
            rows = await db.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
            killed += sum(1 for (ok,) in rows if ok)
        await upload
        assert killed > 0, "no app connection was there to kill"
        assert sum(len(d.queue) for d in devices) == 0
        no_server_errors(devices)
        check_exactly_once(sent, await db.stored_ids("pgkill-"))
        response = httpx.get(f"{server.base}/api/health", timeout=10)  # the pool recovered by itself
        assert response.status_code == 200
    finally:
        if server:
            server.stop()
        _admin(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def sync_once(server: ServerProcess, token: str, records: list[dict]) -> httpx.Response:
    return httpx.post(
        f"{server.base}/api/sync",
        json={"device_id": "probe-phone", "records": records},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text[:500]
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["retry-after"]
    body = response.json()
    assert body["type"] == "urn:outage-desk:database-unavailable"
    assert "nothing was lost on your device" in body["detail"]


async def test_sqlite_disk_full_gives_503_and_the_phone_keeps_its_queue(tmp_path):
    server, db, tokens = await asyncio.to_thread(started, tmp_path, None)
    try:
        assert sync_once(server, tokens[0], [call_record(0, "warm")]).status_code == 200
        process = psutil.Process(server.proc.pid)
        # A full disk, for this process only: no file it writes may grow past 64 KB (Python ignores SIGXFSZ,
        # so the write fails with EFBIG and SQLite reports SQLITE_FULL, as on a full disk).
        process.rlimit(psutil.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
        phone = make_devices(tokens, "full", 1, 400)[0]
        queued = list(phone.queue)
        big = [dict(r, data={**r["data"], "details": r["data"]["details"] + "详" * 1800}) for r in queued]
        phone.queue = big
        answer = sync_once(server, tokens[0], big[:100])
        assert_unavailable(answer)
        await upload_all(server.base, [phone], timeout=3)  # retries, all refused: the queue stays
        assert len(phone.queue) == 400 and not phone.acknowledged and set(phone.statuses) == {503}
        assert httpx.get(f"{server.base}/api/health", timeout=10).status_code == 200  # reads still work

        process.rlimit(psutil.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))  # space freed
        await upload_all(server.base, [phone], timeout=60)
        assert not phone.queue
        check_exactly_once({r["id"] for r in big}, await db.stored_ids("full-"))
    finally:
        server.stop()


async def test_sqlite_read_only_database_gives_503_and_the_phone_keeps_its_queue(tmp_path):
    server, db, tokens = await asyncio.to_thread(started, tmp_path, None)
    path = server.var_dir / "outage_desk.db"
    await asyncio.to_thread(server.stop)
    # The same file opened read-only (a remounted or failing disk). chmod would not stop root, mode=ro does.
    read_only = ServerProcess(
        server.var_dir, database_url=f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true", port=server.port
    )
    read_only.env["OUTAGE_RUN_WORKERS"] = "0"
    try:
        await asyncio.to_thread(read_only.start)
        phone = make_devices(tokens, "ro", 1, 150)[0]
        sent = {r["id"] for r in phone.queue}
        assert_unavailable(sync_once(read_only, tokens[0], phone.queue[:100]))
        await upload_all(read_only.base, [phone], timeout=3)
        assert len(phone.queue) == 150 and not phone.acknowledged and set(phone.statuses) == {503}
        # Reading still works: the agent can see what the server already has.
        assert (
            httpx.get(
                f"{read_only.base}/api/records", headers={"Authorization": f"Bearer {tokens[0]}"}, timeout=10
            ).status_code
            == 200
        )
        await asyncio.to_thread(read_only.stop)
        await asyncio.to_thread(server.start)  # writable again
        await upload_all(server.base, [phone], timeout=60)
        assert not phone.queue
        check_exactly_once(sent, await db.stored_ids("ro-"))
    finally:
        read_only.stop()
        server.stop()


@pytest.mark.browser
def test_browser_queue_survives_a_read_only_database(tmp_path, new_context, artifacts):
    """The PWA, not a simulated phone: calls recorded while the database refuses writes stay queued in the
    outbox (the server answers 503), and upload once the database takes writes again."""
    from playwright.sync_api import expect

    from .test_browser_sync import log_in, outbox_count, record_call

    server = ServerProcess(tmp_path / "pwa")
    users = server.add_users("pwa503", ("agent",))
    server.start()
    path = server.var_dir / "outage_desk.db"
    read_only = ServerProcess(
        server.var_dir,
        database_url=f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true",
        port=server.port,
        OUTAGE_RUN_WORKERS="0",
    )
    try:
        context = new_context(locale="zh-CN")
        page = context.new_page()
        log_in(page, server.base, users["agent"])
        page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=30000)
        page.goto(server.base + "/#/forms/call-record")
        expect(page.locator("form.rec-form")).to_be_visible()
        server.stop()
        read_only.start()
        # (status, records carried) of every upload: a sync with an empty queue may still be answered (reading
        # the change feed works on a read-only database); what matters is that no record is acknowledged.
        uploads = []
        page.on(
            "response",
            lambda r: (
                uploads.append((r.status, len(r.request.post_data_json["records"])))
                if r.url.endswith("/api/sync")
                else None
            ),
        )
        ids = [record_call(page, f"孙先生{n}", f"只读数据库期间来电 {n}") for n in range(3)]
        page.goto(server.base + "/#/outbox")
        deadline = time.monotonic() + 30
        while (
            not any(status == 503 and carried for status, carried in uploads) and time.monotonic() < deadline
        ):
            page.wait_for_timeout(200)
        with_records = [status for status, carried in uploads if carried]
        assert 503 in with_records and 200 not in with_records, uploads
        # Still on the device, marked "not sent, will retry" with the server's reason; nothing lost.
        expect(page.locator(".outbox-counts [data-status=failed]")).to_have_attribute("data-count", "3")
        assert outbox_count(page, "synced") == 0 and outbox_count(page, "rejected") == 0
        # In the agent's language (zh-CN), by problem type; the server's English detail only as a second line.
        item = page.locator(f".outbox-item[data-id='{ids[0]}']")
        expect(item.locator(".reason")).to_have_text("服务器的数据库暂时不可用（503）")
        expect(item.locator(".reason-detail")).to_contain_text("服务器说明：The database is unavailable")
        notice = page.locator(".outbox > .warning").first
        expect(notice).to_contain_text("稍后自动重试：服务器的数据库暂时不可用（503）")
        expect(notice.locator(".detail")).to_contain_text("The database is unavailable")
        page.screenshot(path=artifacts / "faults-outbox-database-read-only.png", full_page=True)

        read_only.stop()
        server.start()  # writable again
        page.click("button.outbox-syncnow")  # the agent taps "upload now" rather than wait out the backoff
        expect(page.locator(".outbox-counts [data-status=synced]")).to_have_attribute(
            "data-count", "3", timeout=90000
        )
        token = server.login(users["agent"])
        stored = httpx.get(
            f"{server.base}/api/records", headers={"Authorization": f"Bearer {token}"}, timeout=20
        ).json()["items"]
        assert sorted(r["id"] for r in stored) == sorted(ids)
    finally:
        read_only.stop()
        server.stop()
