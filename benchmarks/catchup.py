"""Catch-up throughput: ``alerthooks catch-up`` of 10,000 events from the fake Events API,
against the rate the same store ingests deliveries, both measured in one run.

The fake Stripe API (``alerthooks.testing.FakeStripe``) runs in a child process holding
``--events`` ``billing.alert.triggered`` events. For each store (SQLite on a temporary file;
PostgreSQL in a fresh schema, dropped after, when a URL is given), in rounds that alternate the
two measurements:

- ``ingest``: the same number of signed deliveries put through ``AlertHooks.receive`` with 32 in
  flight into a fresh store, inline mode, one handler: the rate the store ingests deliveries.
- ``catch-up``: ``AlertHooks.catch_up(providers=["stripe"])`` (what ``alerthooks catch-up``
  runs) into another fresh store: every page read from the fake and every event ingested.

Reported: both rates and their ratio (median of the per-round ratios); target >= 0.5. Every run
checks that every event was new and reached the handler once.

    .venv/bin/python benchmarks/catchup.py [--events 10000] [--rounds 2]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]

The PostgreSQL URL defaults to env ``ALERTHOOKS_TEST_POSTGRES_URL``; empty: SQLite only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import timedelta

from apps import SECRET, signed_alert
from claim import fresh_url

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import Stripe

TARGET = 0.5
CONCURRENCY = 32


def fake_main(events: int) -> None:
    """Child process: serve a fake Stripe API holding ``events`` alert events; print its
    environment as one JSON line; serve until stdin closes."""
    from alerthooks.testing import stripe_alert_triggered
    from alerthooks.testing.fakes import FakeStripe

    now = int(time.time())
    with FakeStripe() as fake:
        for i in range(events):
            fake.add_event(stripe_alert_triggered(created=now - 3600 + i * 3600 // events))
        print(json.dumps(fake.env()), flush=True)
        sys.stdin.read()


def app(url: str, ran: list[int]) -> AlertHooks:
    """Inline mode, one counting handler."""
    hooks = AlertHooks(providers=[Stripe(SECRET)], store=url)

    @hooks.on("alert.triggered")
    async def count(event: AlertEvent) -> None:
        ran[0] += 1

    return hooks


async def ingest(url: str, events: int) -> float:
    """Events/s of signed deliveries received with CONCURRENCY in flight."""
    ran = [0]
    hooks = app(url, ran)
    deliveries = []
    for _ in range(events):
        body, signature = signed_alert()
        deliveries.append((body, {"stripe-signature": signature}))
    provider = hooks.providers["stripe"]
    pending = iter(deliveries)
    await hooks.startup()
    try:

        async def worker() -> None:
            for body, headers in pending:
                answer = await hooks.receive(provider, body, headers)
                if answer.status != 200:
                    raise SystemExit(f"ingest: answered {answer.status}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    finally:
        await hooks.shutdown()
    if ran[0] != events:
        raise SystemExit(f"ingest: handler ran {ran[0]} times for {events} events")
    return events / elapsed


async def catch_up(url: str, events: int) -> float:
    """Events/s of catching up every event the fake holds."""
    ran = [0]
    hooks = app(url, ran)
    await hooks.startup()
    try:
        started = time.perf_counter()
        [result] = await hooks.catch_up(since=timedelta(hours=2), providers=["stripe"])
        elapsed = time.perf_counter() - started
    finally:
        await hooks.shutdown()
    if not result.ok or result.new != events or ran[0] != events:
        raise SystemExit(f"catch-up: {result.line()}; handler ran {ran[0]} times")
    return events / elapsed


async def run(args: argparse.Namespace) -> int:
    backends = ["sqlite"] + (["postgres"] if args.postgres else [])
    print(
        f"catch-up of {args.events:,} events from the fake Stripe Events API against the store's"
        f" ingest rate ({CONCURRENCY} deliveries in flight), {args.rounds} rounds alternated;"
        f" Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    missed = 0
    for backend in backends:
        rates: dict[str, list[float]] = {"ingest": [], "catch-up": []}
        for r in range(args.rounds):
            order = ["ingest", "catch-up"] if r % 2 == 0 else ["catch-up", "ingest"]
            for what in order:
                async with fresh_url(backend, args.postgres) as url:
                    measure = ingest if what == "ingest" else catch_up
                    rates[what].append(await measure(url, args.events))
        ratio = statistics.median(
            c / i for c, i in zip(rates["catch-up"], rates["ingest"], strict=True)
        )
        ok = ratio >= TARGET
        missed += not ok
        print(
            f"  {backend:<8} ingest {statistics.median(rates['ingest']):>7,.0f} events/s"
            f"   catch-up {statistics.median(rates['catch-up']):>7,.0f} events/s"
            f"   ratio {ratio:.2f} (target >= {TARGET}) {'ok' if ok else 'MISSED'}",
            flush=True,
        )
    return 1 if missed and args.check else 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry: the comparison, or (``fake``) the fake API's child process."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", choices=["compare", "fake"], default="compare")
    parser.add_argument("--events", type=int, default=10_000, help="events to catch up")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; ratios' median reported")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("ALERTHOOKS_TEST_POSTGRES_URL", ""),
        help="PostgreSQL URL (default: env ALERTHOOKS_TEST_POSTGRES_URL; empty: SQLite only)",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args(argv)
    if args.mode == "fake":
        fake_main(args.events)
        return 0
    child = subprocess.Popen(
        [sys.executable, __file__, "fake", "--events", str(args.events)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        os.environ.update(json.loads(child.stdout.readline()))
        return asyncio.run(run(args))
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(30)


if __name__ == "__main__":
    sys.exit(main())
