"""Sync throughput against a real server process: records/s for first uploads and for replays.

    .venv/bin/python -m bench.sync_throughput [--records 5000] [--devices 4] [--batch 100] [--no-callback]
                                              [--database-url postgresql+asyncpg://…]

Starts `python -m backend serve` in a temporary directory (SQLite unless --database-url), makes one agent per
device, and has every device upload its share of call records in batches, as the page does.
Records promise a callback (as most outage calls do), so the recovery module's hook makes one per record;
--no-callback measures the sync path alone.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from tests.servers import ServerProcess


def call_record(n: int, callback: bool = True) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "form": "call-record",
        "form_version": 1,
        "rev": 1,
        "captured_at": "2026-11-23T10:00:00+08:00",
        "data": {
            "called_at": "2026-11-23T10:00:00+08:00",
            "caller_name": f"客户{n}",
            "phone": f"138{n:08d}",
            "category": "order_billing",
            "urgency": "normal",
            "details": f"系统故障期间来电，查询订单 {n}，承诺两小时内回电。",
            "callback_promised": callback,
            "callback_due": "2026-11-23T12:00:00+08:00",
        },
    }


async def upload(base: str, token: str, device: str, records: list[dict], batch: int) -> dict[str, int]:
    outcomes: dict[str, int] = {}
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120
    ) as client:
        cursor = None
        for start in range(0, len(records), batch):
            response = await client.post(
                "/api/sync",
                json={"device_id": device, "cursor": cursor, "records": records[start : start + batch]},
            )
            response.raise_for_status()
            body = response.json()
            cursor = body["cursor"]
            for result in body["results"]:
                outcomes[result["status"]] = outcomes.get(result["status"], 0) + 1
    return outcomes


async def run_round(base: str, tokens: list[str], shares: list[list[dict]], batch: int) -> tuple[float, dict]:
    started = time.perf_counter()
    results = await asyncio.gather(
        *[
            upload(base, token, f"bench-{i}", share, batch)
            for i, (token, share) in enumerate(zip(tokens, shares, strict=True))
        ]
    )
    elapsed = time.perf_counter() - started
    total: dict[str, int] = {}
    for outcome in results:
        for key, value in outcome.items():
            total[key] = total.get(key, 0) + value
    return elapsed, total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--no-callback", action="store_true", help="records that promise no callback")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="od-bench-") as tmp:
        server = ServerProcess(Path(tmp), database_url=args.database_url, OUTAGE_RUN_WORKERS="0")
        site = f"bench-{uuid.uuid4().hex[:6]}"
        names = [server.add_users(f"{site}-{i}", roles=("agent",))["agent"] for i in range(args.devices)]
        server.start()
        try:
            tokens = [server.login(name) for name in names]
            records = [call_record(n, callback=not args.no_callback) for n in range(args.records)]
            shares = [records[i :: args.devices] for i in range(args.devices)]
            database = httpx.get(f"{server.base}/api/health").json()["database"]
            promise = "no callback" if args.no_callback else "each promising a callback"
            print(
                f"{args.records} records ({promise}), {args.devices} devices, batches of {args.batch}, {database}"
            )
            for label in ("first upload", "replay (all duplicates)"):
                elapsed, outcomes = asyncio.run(run_round(server.base, tokens, shares, args.batch))
                print(f"  {label:24s} {args.records / elapsed:8.0f} records/s  ({elapsed:.2f} s, {outcomes})")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
