"""The recovery burst: a server that admits only a few syncs at a time answers the rest with a clear 503
(Retry-After) before reading their bodies, and devices that retry still store everything exactly once."""

from __future__ import annotations

import asyncio

import aiohttp
import httpx

from bench.devices import make_agents, make_devices, upload_all

from .servers import ServerProcess


def test_busy_server_sheds_load_and_nothing_is_lost(tmp_path):
    # One sync at a time, waiting at most 50 ms for a turn: most of 20 devices are turned away at first.
    server = ServerProcess(tmp_path, OUTAGE_SYNC_CONCURRENCY="1", OUTAGE_SYNC_WAIT_SECONDS="0.05")
    admin = server.add_users("burst", roles=("admin",))["admin"]
    server.start()
    try:
        tokens = make_agents(server.base, server.login(admin), "burst", 4, server.PASSWORD)
        devices = make_devices(tokens, "burst", 20, 150)
        asyncio.run(upload_all(server.base, devices, timeout=120))
        statuses = [s for d in devices for s in d.statuses]
        assert statuses and set(statuses) == {503}, statuses  # shed with 503s, never a 500

        # The 503 itself: twelve big batches at once, one admitted at a time.
        probes = make_devices(tokens, "probe", 12, 300)

        async def probe_answers():
            async with aiohttp.ClientSession() as http:

                async def post(device):
                    async with http.post(
                        f"{server.base}/api/sync",
                        headers={"Authorization": f"Bearer {tokens[0]}"},
                        json={"device_id": device.device_id, "records": device.queue},
                    ) as answer:
                        return answer.status, answer.headers, await answer.json(content_type=None)

                return await asyncio.gather(*(post(d) for d in probes))

        answers = asyncio.run(probe_answers())
        shed = [(headers, problem) for status, headers, problem in answers if status == 503]
        assert shed and len(shed) < len(answers)
        for headers, problem in shed:
            assert headers["Retry-After"] == "5" and headers["Content-Type"] == "application/problem+json"
            assert problem["status"] == 503 and "nothing was lost" in problem["detail"]
        admitted = {r["id"] for status, _, body in answers if status == 200 for r in body["results"]}

        assert all(not d.queue for d in devices)
        sent = {r_id for d in devices for r_id in d.acknowledged}
        assert len(sent) == 20 * 150
        sent |= admitted
        admin_token = server.login(admin)
        stored, after = set(), None
        while True:
            page = httpx.get(
                f"{server.base}/api/records",
                params={"limit": 1000, **({"after": after} if after else {})},
                headers={"Authorization": f"Bearer {admin_token}"},
                timeout=30,
            ).json()
            stored.update(item["id"] for item in page["items"])
            after = page["next_after"]
            if not after:
                break
        assert stored == sent  # exactly once: every acknowledged record, nothing else
    finally:
        server.stop()
