"""Receiver throughput in-process: events/s of ASGI apps fed signed Stripe alert events.

No HTTP server: each app is called with an ASGI scope, ``receive`` and ``send`` directly, so the
cost of the framework itself shows. Variants, measured in one run with rounds alternated:

- ``floor``: a Starlette route doing only ``stripe.WebhookSignature.verify_header`` +
  ``json.loads`` + a type check: the irreducible work.
- ``construct_event``: the same route with ``stripe.Webhook.construct_event``, as Stripe's docs
  show it.
- ``memory``: alerthooks with the memory store, served as the ASGI app itself (as
  ``uvicorn module:hooks`` serves it).
- ``memory mounted``: the same inside a Starlette app, ``Mount("/webhooks", app=hooks)``, as the
  quickstart shows it: Starlette's middleware and routing come on top.
- ``sqlite``: alerthooks with the SQLite store, one delivery at a time.
- ``sqlite x32``: alerthooks with the SQLite store, 32 deliveries in flight.
- ``postgres x32``: alerthooks with the Postgres store, 32 deliveries in flight, when
  ``--postgres URL`` or env ``ALERTHOOKS_TEST_POSTGRES_URL`` names a server (a fresh schema,
  dropped afterwards); the writes of the deliveries in flight go in one statement and commit.
- ``postgres x32 unbatched``: the same with ``group_commit=off``: a statement and a commit per
  ``begin`` and per ``finish``, as before group commit.

Every event is unique and freshly signed; bodies, headers and scopes are built before the timed
loop. Each run checks that every answer was 200 and every handler ran.

    .venv/bin/python benchmarks/receiver.py [--events 1000] [--rounds 15] [--postgres URL]

Many short rounds rather than a few long ones, and ratios taken per round: on a shared machine
the background load changes from second to second, and each round's variants see the same.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from apps import PATH, SECRET, App, construct_event_app, floor_app, signed_alert
from starlette.applications import Starlette
from starlette.routing import Mount

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import Chargebee, Stripe
from alerthooks.store import open_store

Prepared = tuple[dict[str, Any], bytes]

TARGETS = (
    # (variant, against, minimum ratio, of events/s "wall" or per CPU-second "cpu"); "xN" is the
    # concurrency of the run
    ("memory", "floor", 0.8, "wall"),
    ("memory mounted", "floor", 0.8, "wall"),
    ("memory", "construct_event", 4.0, "wall"),
    ("sqlite xN", "floor", 0.5, "wall"),
    ("postgres xN", "sqlite xN", 1.0, "wall"),
    ("postgres xN", "floor", 0.25, "wall"),
    ("postgres xN", "floor", 0.4, "cpu"),
)
REPORTED = (
    # (variant, against): ratios printed on a line of their own, with no target
    ("postgres xN", "postgres xN unbatched"),
)


# -- the apps ---------------------------------------------------------------------------------


@dataclass
class Variant:
    """One app under test and how it is driven."""

    name: str
    app: App
    concurrency: int = 1
    path: str = PATH
    handled: list[int] = field(default_factory=lambda: [0])
    startup: Callable[[], Awaitable[None]] | None = None
    shutdown: Callable[[], Awaitable[None]] | None = None


def alerthooks_variant(
    name: str, store: str, concurrency: int = 1, *, mounted: bool = False
) -> Variant:
    """alerthooks with a counting handler: the ASGI app itself, or mounted in Starlette."""
    hooks = AlertHooks(providers=[Stripe(SECRET), Chargebee(("bench", "bench"))], store=store)
    variant = Variant(
        name,
        Starlette(routes=[Mount("/webhooks", app=hooks)]) if mounted else hooks,
        concurrency,
        path=PATH if mounted else "/stripe",
        startup=hooks.startup,
        shutdown=hooks.shutdown,
    )
    handled = variant.handled

    @hooks.on("alert.triggered")
    async def count(event: AlertEvent) -> None:
        handled[0] += 1

    return variant


def sqlite_available(directory: str) -> bool:
    """Whether this checkout has the SQLite store."""
    try:
        open_store(f"sqlite:///{directory}/probe.db")
    except ValueError:
        return False
    return True


# -- requests and the driver ------------------------------------------------------------------


def prepare(count: int, path: str = PATH) -> list[Prepared]:
    """``count`` unique signed ``billing.alert.triggered`` deliveries to ``path``, as Stripe
    sends them."""
    prepared = []
    for _ in range(count):
        body, signature = signed_alert()
        headers = [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"Stripe/1.0 (+https://stripe.com/docs/webhooks)"),
            (b"content-type", b"application/json; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"accept", b"*/*; q=0.5, application/xml"),
            (b"content-length", str(len(body)).encode()),
            (b"stripe-signature", signature.encode()),
        ]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 51000),
            "server": ("127.0.0.1", 8000),
        }
        prepared.append((scope, body))
    return prepared


async def deliver(app: App, scope: dict[str, Any], body: bytes) -> int:
    """One request through ``app``; return the response status."""
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def drive(app: App, requests: Iterable[Prepared], concurrency: int) -> list[int]:
    """Deliver ``requests`` with ``concurrency`` in flight; return every status."""
    statuses: list[int] = []
    pending = iter(requests)

    async def worker() -> None:
        for scope, body in pending:
            statuses.append(await deliver(app, scope, body))

    if concurrency == 1:
        await worker()
    else:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


async def timed_round(variant: Variant, requests: list[Prepared]) -> tuple[float, float]:
    """Deliver ``requests``; check every answer and handler; return events per second of wall
    time and per second of this process's CPU time."""
    before = variant.handled[0]
    gc.collect()
    started, cpu = time.perf_counter(), time.process_time()
    statuses = await drive(variant.app, requests, variant.concurrency)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    bad = [s for s in statuses if s != 200]
    if len(statuses) != len(requests) or bad:
        raise SystemExit(f"{variant.name}: {len(bad)} answers were not 200: {sorted(set(bad))}")
    ran = variant.handled[0] - before
    if ran != len(requests):
        raise SystemExit(f"{variant.name}: handler ran {ran} times for {len(requests)} events")
    return len(requests) / elapsed, len(requests) / max(cpu, 1e-9)


# -- the run ----------------------------------------------------------------------------------


def postgres_url(base: str, schema: str) -> str:
    """``base`` with the store's ``schema=`` parameter set to ``schema``."""
    return f"{base}{'&' if '?' in base else '?'}schema={schema}"


async def postgres_reachable(base: str) -> bool:
    """Whether the server at ``base`` answers; says why not when it does not."""
    import asyncpg

    try:
        conn = await asyncpg.connect(base.split("?", 1)[0], timeout=5)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
        print(f"postgres: {type(exc).__name__}: {exc}; skipped", flush=True)
        return False
    await conn.close()
    return True


async def drop_schema(base: str, schema: str) -> None:
    """Drop the benchmark's Postgres schema."""
    import asyncpg

    conn = await asyncpg.connect(base.split("?", 1)[0])
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def run(
    events: int,
    rounds: int,
    concurrency: int,
    sqlite_events: int,
    only: set[str] | None = None,
    postgres: str | None = None,
) -> int:
    """Measure every variant (or those in ``only``); print medians, ratios and targets."""
    with tempfile.TemporaryDirectory(prefix="alerthooks-bench-") as directory:
        floor_handled: list[int] = [0]
        construct_handled: list[int] = [0]
        variants = [
            Variant("floor", floor_app(floor_handled), handled=floor_handled),
            Variant(
                "construct_event", construct_event_app(construct_handled), handled=construct_handled
            ),
            alerthooks_variant("memory", "memory://"),
            alerthooks_variant("memory mounted", "memory://", mounted=True),
        ]
        if sqlite_available(directory):
            variants.append(alerthooks_variant("sqlite", f"sqlite:///{directory}/seq.db"))
            variants.append(
                alerthooks_variant(
                    f"sqlite x{concurrency}", f"sqlite:///{directory}/conc.db", concurrency
                )
            )
        else:
            print("sqlite: this checkout has no SQLite store; skipped", flush=True)
        schema = f"alerthooks_bench_{uuid.uuid4().hex[:8]}"
        if postgres and not await postgres_reachable(postgres):
            postgres = None
        if postgres:
            url = postgres_url(postgres, schema)
            variants.append(alerthooks_variant(f"postgres x{concurrency}", url, concurrency))
            variants.append(
                alerthooks_variant(
                    f"postgres x{concurrency} unbatched", f"{url}&group_commit=off", concurrency
                )
            )
        if only:
            variants = [v for v in variants if v.name in only or v.name == "floor"]
        sizes = {v.name: sqlite_events if v.name == "sqlite" else events for v in variants}

        for variant in variants:
            if variant.startup is not None:
                await variant.startup()
            await timed_round(variant, prepare(min(200, sizes[variant.name]), variant.path))

        results: dict[str, list[float]] = {v.name: [] for v in variants}
        per_cpu: dict[str, list[float]] = {v.name: [] for v in variants}
        for r in range(rounds):
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            if r % 2:
                order.reverse()
            for variant in order:
                # Signed just before the round: the 300 s tolerance holds however long runs are.
                requests = prepare(sizes[variant.name], variant.path)
                wall, cpu = await timed_round(variant, requests)
                results[variant.name].append(wall)
                per_cpu[variant.name].append(cpu)

        for variant in variants:
            if variant.shutdown is not None:
                await variant.shutdown()
        if postgres and any(v.name.startswith("postgres") for v in variants):  # it was created
            await drop_schema(postgres, schema)

    medians = {name: statistics.median(rates) for name, rates in results.items()}
    print(
        f"receiver, in-process: {rounds} rounds alternated, median events/s "
        f"({events} events per round; sequential sqlite {sqlite_events}); "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    cpu_medians = {name: statistics.median(rates) for name, rates in per_cpu.items()}
    for name, rates in results.items():
        print(
            f"  {name:<24} {medians[name]:>9,.0f} events/s"
            f"   (min {min(rates):,.0f}, max {max(rates):,.0f}; {sizes[name]} events x {rounds})"
            f"   {cpu_medians[name]:>9,.0f} per CPU-second"
        )

    def ratio(table: dict[str, list[float]], name: str, against: str) -> float:
        # Paired by round: both were measured seconds apart, under the same background load.
        return statistics.median(a / b for a, b in zip(table[name], table[against], strict=True))

    print(
        "ratios vs floor (median of per-round ratios): "
        + " | ".join(f"{n} {ratio(results, n, 'floor'):.2f}" for n in results)
    )
    print(
        "per CPU-second:                               "
        + " | ".join(f"{n} {ratio(per_cpu, n, 'floor'):.2f}" for n in per_cpu)
    )
    n = f"x{concurrency}"
    for name, against in REPORTED:
        name, against = name.replace("xN", n), against.replace("xN", n)
        if name in medians and against in medians:
            print(f"{name} / {against}: {ratio(results, name, against):.2f} (no target)")
    failed = 0
    for name, against, minimum, measure in TARGETS:
        name, against = name.replace("xN", n), against.replace("xN", n)
        if name not in medians or against not in medians:
            continue
        paired = ratio(results if measure == "wall" else per_cpu, name, against)
        ok = paired >= minimum
        failed += not ok
        what = "" if measure == "wall" else " per CPU-second"
        print(
            f"target {name} >= {minimum} x {against}{what}: {paired:.2f} {'ok' if ok else 'MISSED'}"
        )
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry: parse the sizes and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1000, help="events per variant per round")
    parser.add_argument("--rounds", type=int, default=15, help="rounds; the median is reported")
    parser.add_argument("--concurrency", type=int, default=32, help="deliveries in flight")
    parser.add_argument(
        "--sqlite-events",
        type=int,
        default=None,
        help="events per round for sequential SQLite (default: --events / 4; fsync bound)",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target ratio is missed")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated variants to run besides floor, e.g. 'memory,construct_event'",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("ALERTHOOKS_TEST_POSTGRES_URL", ""),
        help="PostgreSQL URL for the postgres variant (default: env ALERTHOOKS_TEST_POSTGRES_URL;"
        " empty: skip it)",
    )
    args = parser.parse_args(argv)
    sqlite_events = args.sqlite_events or max(1, args.events // 4)
    only = {name.strip() for name in args.only.split(",") if name.strip()} or None
    status = asyncio.run(
        run(args.events, args.rounds, args.concurrency, sqlite_events, only, args.postgres or None)
    )
    return status if args.check else 0


if __name__ == "__main__":
    sys.exit(main())
