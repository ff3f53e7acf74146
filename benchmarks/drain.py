"""Backlog drain: how fast the queued worker works off stored events, against what the handlers
allow.

For each store (SQLite on a temporary file; PostgreSQL in a fresh schema, dropped after, when a
URL is given) and each handler (``async``: ``await asyncio.sleep(0.005)``; ``sync``: a plain
``def`` doing ``time.sleep(0.005)``, run in a thread), ``--events`` Stripe alert events are
recorded pending, as queued mode records them (``Store.begin(..., claim=False)``). Then an
``AlertHooks(mode="queued", worker_concurrency=16)`` starts its worker, and the clock runs until
every handler has run and its outcome is recorded. Reported: handler runs/s, and its ratio to
the bound ``worker_concurrency / handler time`` (16 / 5 ms = 3,200 runs/s) measured in the same
run. Target for the async handler: >= 0.7 of the bound on both stores.

Then the claim cost against the backlog (the worker's claim of 16, commit included, median of
``--claims``), at each of ``--pending`` (default 1,000 and 100,000), the sizes taking turns, as
``benchmarks/claim.py`` measures it: the ratio of the largest to the smallest must stay flat
(target <= 2).

    .venv/bin/python benchmarks/drain.py [--events 20000] [--pending 1000,100000]
        [--postgres postgresql://postgres@127.0.0.1:5432/test] [--check]

The PostgreSQL URL defaults to env ``ALERTHOOKS_TEST_POSTGRES_URL``; empty: SQLite only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from datetime import datetime, timezone

from claim import claim_once, fill, fresh_url

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import Stripe
from alerthooks.store import Delivery, Store, open_store
from alerthooks.testing import stripe_alert_triggered

HANDLER_SECONDS = 0.005
CONCURRENCY = 16
DRAIN_TARGET = 0.7  # of the bound, async handler
CLAIM_MAX_RATIO = 2.0


async def record_pending(store: Store, count: int) -> None:
    """``count`` Stripe alert events recorded pending for handler ``h``, 256 in flight."""
    now = datetime.now(timezone.utc)
    bodies = [json.dumps(stripe_alert_triggered()).encode() for _ in range(count)]

    def delivery(body: bytes) -> Delivery:
        event_id = json.loads(body)["id"]
        return Delivery("stripe", event_id, "billing.alert.triggered", body, now, ("h",))

    for start in range(0, count, 256):
        await asyncio.gather(
            *(
                store.begin(delivery(body), owner="web", lease=60, claim=False)
                for body in bodies[start : start + 256]
            )
        )


def drain_app(url: str, kind: str, ran: list[int]) -> AlertHooks:
    """The queued app: one handler ``h`` sleeping 5 ms, async or in a thread."""
    hooks = AlertHooks(
        providers=[Stripe("whsec_bench")],
        store=url,
        mode="queued",
        worker_concurrency=CONCURRENCY,
    )
    if kind == "async":

        @hooks.on("alert.triggered", name="h")
        async def handle_async(event: AlertEvent) -> None:
            await asyncio.sleep(HANDLER_SECONDS)
            ran[0] += 1

    else:

        @hooks.on("alert.triggered", name="h")
        def handle_sync(event: AlertEvent) -> None:
            time.sleep(HANDLER_SECONDS)
            ran[0] += 1

    return hooks


async def drain(url: str, kind: str, events: int, timeout: float) -> tuple[float, float]:
    """Record ``events`` pending, then drain them; (runs/s, CPU-seconds of this process per run)."""
    store = open_store(url)
    await store.open()
    try:
        await record_pending(store, events)
    finally:
        await store.close()
    ran = [0]
    hooks = drain_app(url, kind, ran)
    started, cpu = time.perf_counter(), time.process_time()
    await hooks.startup()
    try:
        deadline = started + timeout
        while hooks.worker.recorded < events:
            if time.perf_counter() > deadline:
                raise SystemExit(f"{kind}: {hooks.worker.recorded} of {events} after {timeout} s")
            await asyncio.sleep(0.01)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await hooks.shutdown()
    if ran[0] != events:
        raise SystemExit(f"{kind}: handler ran {ran[0]} times for {events} events")
    return events / elapsed, cpu / events


async def handler_bound(kind: str, runs: int = 800) -> float:
    """Runs/s of the bare handler at the worker's concurrency, no store: the bound measured."""
    ran = [0]
    hooks = drain_app("memory://", kind, ran)
    [handler] = [h for h in hooks._runtime.dispatcher.handlers if h.name == "h"]
    event = hooks._runtime.providers["stripe"].normalize(stripe_alert_triggered())
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one() -> None:
        async with gate:
            await handler.run(event)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(runs)))
    return runs / (time.perf_counter() - started)


async def claim_costs(
    backend: str, sizes: list[int], claims: int, postgres: str | None
) -> list[float]:
    """Median claim of ``CONCURRENCY`` pairs at each backlog size (sizes alternating)."""
    async with contextlib.AsyncExitStack() as stack:
        stores: list[Store] = []
        for pending in sizes:
            store = open_store(await stack.enter_async_context(fresh_url(backend, postgres)))
            stack.push_async_callback(store.close)
            await store.open()
            started = time.perf_counter()
            await fill(store, pending)
            filled = time.perf_counter() - started
            print(f"  {backend:<8} {pending:>7,} pending filled in {filled:.1f} s")
            stores.append(store)
        times: list[list[float]] = [[] for _ in sizes]
        for _ in range(claims):
            for i, store in enumerate(stores):
                times[i].append(await claim_once(store, CONCURRENCY))
    return [statistics.median(t) for t in times]


async def run(args: argparse.Namespace) -> int:
    backends = ["sqlite"] + (["postgres"] if args.postgres else [])
    sizes = [int(s) for s in args.pending.split(",") if s]
    bound = CONCURRENCY / HANDLER_SECONDS
    print(
        f"backlog drain: {args.events:,} pending events, handler {HANDLER_SECONDS * 1000:g} ms,"
        f" worker_concurrency {CONCURRENCY}: bound {bound:,.0f} runs/s;"
        f" Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    missed = 0
    for kind in args.handlers.split(","):
        measured = await handler_bound(kind)
        print(
            f"  handler alone ({kind}), no store: {measured:,.0f} runs/s"
            f" ({measured / bound:.2f} x bound)"
        )
        for backend in backends:
            async with fresh_url(backend, args.postgres) as url:
                rate, cpu = await drain(url, kind, args.events, args.timeout)
            ratio = rate / bound
            line = (
                f"  {backend:<8} {kind:<5} {rate:>7,.0f} runs/s  {ratio:.2f} x bound"
                f"  ({rate / measured:.2f} x the handler alone; {cpu * 1e6:,.0f} us CPU per run)"
            )
            if kind == "async":
                ok = ratio >= DRAIN_TARGET
                missed += not ok
                line += f"  target >= {DRAIN_TARGET}: {'ok' if ok else 'MISSED'}"
            print(line, flush=True)
    if sizes:
        listed = ", ".join(f"{s:,}" for s in sizes)
        print(f"claim of {CONCURRENCY} against the backlog ({listed} pending)")
        for backend in backends:
            costs = await claim_costs(backend, sizes, args.claims, args.postgres)
            for pending, cost in zip(sizes, costs, strict=True):
                print(f"  {backend:<8} {pending:>7,} pending: {cost * 1000:.3f} ms per claim")
            ratio = costs[-1] / costs[0]
            ok = ratio <= CLAIM_MAX_RATIO
            missed += not ok
            print(
                f"  {backend:<8} ratio {sizes[-1]:,} / {sizes[0]:,}: {ratio:.2f}"
                f" (target <= {CLAIM_MAX_RATIO}) {'ok' if ok else 'MISSED'}",
                flush=True,
            )
    return 1 if missed and args.check else 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="pending events to drain")
    parser.add_argument("--pending", default="1000,100000", help="backlogs for the claim cost")
    parser.add_argument("--claims", type=int, default=100, help="timed claims per backlog")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per drain at most")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("ALERTHOOKS_TEST_POSTGRES_URL", ""),
        help="PostgreSQL URL (default: env ALERTHOOKS_TEST_POSTGRES_URL; empty: SQLite only)",
    )
    parser.add_argument("--handlers", default="async,sync", help="handler kinds to measure")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
