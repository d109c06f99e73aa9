"""`just bench`: every figure against a baseline measured in the same run, as one table.

    .venv/bin/python -m bench                      # defaults sized for ~10 minutes on 2 cores
    .venv/bin/python -m bench --devices 500 --records 500 --push 5000   # bigger
    .venv/bin/python -m bench --only burst         # one part: burst, fanout, escalation, coldstart

PostgreSQL: --postgres-url (default $TEST_POSTGRES_URL, else postgresql://postgres@127.0.0.1:5432/postgres);
a fresh database is made for the run and dropped after. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime

PARTS = ("drain", "burst", "fanout", "escalation", "coldstart")
MB = 1024 * 1024


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=500, help="devices in the recovery burst (500)")
    parser.add_argument("--records", type=int, default=100, help="queued records per device (100)")
    parser.add_argument("--concurrent", type=int, default=50, help="devices for the batch p99 figure (50)")
    parser.add_argument("--rounds", type=int, default=6, help="100-record batches per device for the p99 (6)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="sqlite,postgresql")
    parser.add_argument("--leads", type=int, default=5, help="lead phones draining everyone's callbacks (5)")
    parser.add_argument("--workers", type=int, default=2, help="processes for the scale-out row (2)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/postgres",
    )
    parser.add_argument("--push", type=int, default=1000, help="push subscriptions for the fan-out (1000)")
    parser.add_argument(
        "--rtt",
        type=float,
        default=0.05,
        help="push service round trip for the second fan-out row, seconds (0.05)",
    )
    parser.add_argument("--steps", type=int, default=200, help="escalation rungs to fire (200)")
    parser.add_argument("--runs", type=int, default=7, help="cold starts per mode (7)")
    parser.add_argument(
        "--only",
        default="drain,fanout,escalation,coldstart",
        help="comma-separated: "
        + ",".join(PARTS)
        + " (burst: the earlier closed-loop burst without callbacks)",
    )
    return parser.parse_args(argv)


def machine() -> str:
    free = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout.splitlines()
    memory = free[1].split()[1] if len(free) > 1 else "?"
    return (
        f"{os.cpu_count()} cores (nproc {os.cpu_count()}), {memory} RAM, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}"
    )


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []

    def add(
        self,
        figure: str,
        value: str,
        baseline: str,
        ratio: float | None,
        target: str,
        met: bool | None,
        load: float | None = None,
    ):
        """One row; `load`: the 1-minute load average while it was measured (default: now)."""
        self.rows.append(
            (
                figure,
                value,
                baseline,
                "—" if ratio is None else f"{ratio:.2f}×",
                target,
                "—" if met is None else ("yes" if met else "NO"),
                f"{os.getloadavg()[0] if load is None else load:.1f}",
            )
        )

    def render(self) -> str:
        head = ("figure", "value", "baseline", "ratio", "target", "met?", "load")
        rows = [head] + self.rows
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
        return "\n".join(
            [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows[1:]]
        )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def drain_rows(table: Table, args: argparse.Namespace, log) -> None:
    """The realistic drain on each backend; on PostgreSQL one process and N, interleaved in this run."""
    from .drain import run_drain

    for backend in args.backends.split(","):
        runs = {}
        for workers in (1, args.workers) if backend == "postgresql" else (1,):
            runs[workers] = run_drain(
                backend,
                args.devices,
                args.records,
                leads=args.leads,
                workers=workers,
                postgres_admin=args.postgres_url,
                log=log,
            )
        r = runs[1]
        what = f"{r.devices} phones × {r.records} records + {r.leads} leads, callbacks, cursors"
        table.add(
            f"{backend}: realistic drain, {what}",
            f"{r.seconds:.1f} s, {r.rate:,.0f} rec/s",
            f"{r.raw_rate:,.0f} rows/s raw executemany",
            r.rate / r.raw_rate,
            "≤ 30 s, ≥ 0.30× raw",
            r.seconds <= 30 and r.rate >= 0.3 * r.raw_rate,
            r.load,
        )
        table.add(
            f"{backend}: drain stored exactly once, each feed entry to its addressees",
            f"{r.entries:,} entries drained; {'; '.join(r.errors) or 'no errors'}",
            f"{r.devices * r.records:,} sent",
            None,
            "0 errors",
            not r.errors,
            r.load,
        )
        capacity = r.rate / 100
        for share, p99, target in ((0.5, r.p99_half, 0.3), (0.8, r.p99_08, 1.0)):
            table.add(
                f"{backend}: open-loop batch p99 at {share:.1f}× capacity ({share * capacity:.1f} batches/s)",
                ms(p99),
                f"{capacity:.1f} batches/s capacity",
                None,
                f"≤ {ms(target)}",
                p99 <= target,
                r.load,
            )
        table.add(
            f"{backend}: server RSS idle / peak through the drain",
            f"{r.idle_rss / MB:.0f} / {r.peak_rss / MB:.0f} MB",
            "85 / 150 MB targets",
            r.peak_rss / r.idle_rss,
            "≤ 85 MB idle, ≤ 150 MB peak",
            r.idle_rss <= 85 * MB and r.peak_rss <= 150 * MB,
            r.load,
        )
        for n in runs.values():
            table.add(
                f"{backend}: CPU through the drain, {n.workers} process(es): server / load generator / "
                + ("PostgreSQL and the rest" if backend == "postgresql" else "the rest"),
                " / ".join(f"{n.cpu[who]:.2f}" for who in ("server", "load generator", "postgresql"))
                + " cores",
                f"{os.cpu_count()} cores in the machine",
                sum(n.cpu.values()) / (os.cpu_count() or 1),
                "(what bounds scale-out)",
                None,
                n.load,
            )
        if len(runs) > 1:
            n = runs[args.workers]
            table.add(
                f"{backend}: scale-out, {args.workers} processes (serve --workers), same drain",
                f"{n.rate:,.0f} rec/s ({n.seconds:.1f} s)",
                f"{r.rate:,.0f} rec/s one process",
                n.rate / r.rate,
                "≥ 1.50×",
                n.rate >= 1.5 * r.rate,
                n.load,
            )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    parts = set(args.only.split(","))
    table = Table()
    started = time.monotonic()
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731

    try:
        if "drain" in parts:
            drain_rows(table, args, log)

        if "burst" in parts:
            from .recovery import run_burst

            for backend in args.backends.split(","):
                log(f"recovery burst on {backend}…")
                r = run_burst(
                    backend,
                    args.devices,
                    args.records,
                    postgres_admin=args.postgres_url,
                    log=log,
                    concurrent_p99=args.concurrent,
                    p99_rounds=args.rounds,
                )
                total = r.devices * r.records
                table.add(
                    f"{backend}: ingest, {r.devices} devices × {r.records} records",
                    f"{r.rate:,.0f} rec/s",
                    f"{r.raw_rate:,.0f} rows/s raw executemany",
                    r.rate / r.raw_rate,
                    "≥ 0.50× raw",
                    r.rate >= 0.5 * r.raw_rate,
                )
                table.add(
                    f"{backend}: exactly-once after the burst",
                    f"{r.stored:,} stored, {r.duplicates} dup",
                    f"{total:,} sent",
                    r.stored / total,
                    "= sent, 0 dup",
                    r.stored == total and not r.duplicates,
                )
                table.add(
                    f"{backend}: batch p50 / p99, {r.devices} devices at once",
                    f"{ms(r.p50)} / {ms(r.p99)}",
                    f"{ms(r.single_batch)} one device alone",
                    r.p99 / r.single_batch,
                    "—",
                    None,
                )
                table.add(
                    f"{backend}: 100-record batch p99, {args.concurrent} devices at once",
                    f"{ms(r.p99_50)} (p50 {ms(r.p50_50)})",
                    f"{ms(r.single_batch)} one device alone",
                    r.p99_50 / r.single_batch,
                    "≤ 150 ms",
                    r.p99_50 <= 0.150,
                )
                table.add(
                    f"{backend}: server peak RSS",
                    f"{r.peak_rss / MB:.0f} MB",
                    f"{r.idle_rss / MB:.0f} MB idle",
                    r.peak_rss / r.idle_rss,
                    "≤ 150 MB",
                    r.peak_rss <= 150 * MB,
                )

        if "fanout" in parts:
            from backend.outbox import PARALLEL

            from .fanout import run_fanout

            for rtt in (0.0, args.rtt):
                log(f"push fan-out to {args.push} subscriptions, receiver round trip {rtt * 1000:.0f} ms…")
                f = run_fanout(
                    args.push, delay=rtt, baseline_count=args.push if not rtt else min(args.push, 200)
                )
                table.add(
                    f"push fan-out, {f.subscriptions} subscriptions, {rtt * 1000:.0f} ms push-service RTT",
                    f"{f.rate:,.0f} msg/s ({f.seconds:.1f} s)",
                    f"{f.baseline_rate:,.0f} msg/s sequential loop",
                    f.rate / f.baseline_rate,
                    "≥ 10×",
                    f.rate >= 10 * f.baseline_rate,
                )
                table.add(
                    f"push sender CPU per message, {rtt * 1000:.0f} ms RTT",
                    f"{f.cpu_per_message * 1000:.2f} ms",
                    f"{1000 / f.baseline_rate:.2f} ms wall per message, sequential loop",
                    None,
                    "≤ 0.5 ms",
                    f.cpu_per_message <= 0.0005,
                )
                if rtt:
                    bound = PARALLEL / rtt  # messages in flight ÷ round trip
                    table.add(
                        f"push fan-out vs its concurrency bound ({PARALLEL} in flight, {rtt * 1000:.0f} ms RTT)",
                        f"{f.rate:,.0f} msg/s",
                        f"{bound:,.0f} msg/s bound",
                        f.rate / bound,
                        "≥ 0.80× bound",
                        f.rate >= 0.8 * bound,
                    )

        if "escalation" in parts:
            from .escalation_lateness import run_lateness

            log(f"escalation lateness over {args.steps} drill rungs…")
            e = run_lateness(args.steps)
            table.add(
                f"escalation lateness, {e.steps} drill rungs (p50 / p99 / max)",
                f"{ms(e.p50)} / {ms(e.p99)} / {ms(e.worst)}",
                f"{ms(e.poll)} poll interval",
                e.worst / e.poll,
                "≤ 1 s late",
                e.worst <= 1.0,
            )

        if "coldstart" in parts:
            from .coldstart import run_coldstart

            log("offline cold start in Chromium…")
            c = run_coldstart(args.runs)
            table.add(
                f"offline cold start to call-record form (median of {c.runs})",
                f"{c.offline_ms:.0f} ms",
                f"{c.blank_ms:.0f} ms blank page from the same SW; {c.online_ms:.0f} ms online",
                c.offline_ms / c.blank_ms,
                "≤ 250 ms",
                c.offline_ms <= 250,
            )
            table.add(
                f"offline cold start to home screen's buttons (median of {c.runs})",
                f"{c.home_ms:.0f} ms",
                f"{c.blank_ms:.0f} ms blank page from the same SW",
                c.home_ms / c.blank_ms,
                "(no target)",
                None,
            )
            table.add(
                f"app shell download (sw.js + precache, {c.shell_files} files)",
                f"{c.shell_wire / 1024:.0f} KB",
                f"{c.shell_bytes / 1024:.0f} KB uncompressed",
                c.shell_wire / c.shell_bytes,
                "≤ 150 KB",
                c.shell_wire <= 150 * 1024,
            )

    finally:  # a part that fails (and raises) leaves the rows measured before it on screen
        print(
            f"\nOutage Desk benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}, "
            f"{time.monotonic() - started:.0f} s\n"
        )
        print(table.render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
