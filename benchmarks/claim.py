"""Queued-work claim cost against the backlog: per-claim time at a small and a large backlog.

For each store backend (SQLite on a temporary file; PostgreSQL in a fresh schema, dropped after,
when a URL is given) and each backlog size, the store is filled with that many pending
(event, handler) pairs through ``Store.begin(..., claim=False)``, as queued mode records them.
Then a worker's loop runs ``--claims`` times on each, the sizes taking turns:
``claim(limit=--limit)`` (timed), then ``finish`` every claimed pair as a failure due again at
once (not timed), so the backlog stays the same size. Reported: the median time of one
``claim`` call, what the worker waits for, commit included, and the ratio of the large
backlog's to the small one's. The cost must stay flat: ``--check`` exits 1 when a ratio is
above ``--max-ratio`` (default 2).

    .venv/bin/python benchmarks/claim.py [--pending 1000,20000] [--claims 200] [--limit 10]
        [--postgres-url postgresql://postgres@127.0.0.1:5432/test] [--check]

The PostgreSQL URL defaults to env ``ALERTHOOKS_TEST_POSTGRES_URL``; without one only SQLite
runs. Each run checks that every claim returned ``--limit`` distinct pairs with their bodies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timezone

from alerthooks.store import Delivery, Store, open_store

BODY = b'{"type": "billing.alert.triggered", "data": {"object": {"id": "%d"}}, "pad": "%s"}'


@contextlib.asynccontextmanager
async def fresh_url(backend: str, postgres_url: str | None) -> AsyncIterator[str]:
    """A store URL nobody else uses, removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            yield f"sqlite:///{directory}/claim.db"
        return
    import asyncpg

    assert postgres_url
    schema = f"alerthooks_bench_{uuid.uuid4().hex[:12]}"
    try:
        sep = "&" if "?" in postgres_url else "?"
        yield f"{postgres_url}{sep}schema={schema}&pool_size=32"
    finally:
        conn = await asyncpg.connect(postgres_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def fill(store: Store, pending: int) -> None:
    """Record ``pending`` queued events of one handler each, 64 at a time."""
    now = datetime.now(timezone.utc)

    def delivery(i: int) -> Delivery:
        body = BODY % (i, b"x" * 600)
        return Delivery("bench", f"evt_{i:08d}", "billing.alert.triggered", body, now, ("h",))

    for start in range(0, pending, 64):
        await asyncio.gather(
            *(
                store.begin(delivery(i), owner="web", lease=60, claim=False)
                for i in range(start, min(start + 64, pending))
            )
        )


async def claim_once(store: Store, limit: int) -> float:
    """Seconds of one claim of ``limit`` pairs; the pairs are then failed, due again at once, so
    the backlog keeps its size."""
    started = time.perf_counter()
    got = await store.claim(owner="worker", lease=60, limit=limit)
    elapsed = time.perf_counter() - started
    if len({(c.event_id, c.handler) for c in got}) != limit or not all(c.body for c in got):
        raise SystemExit(f"claim returned {len(got)} pairs, expected {limit} with bodies")
    for c in got:
        await store.finish(c.provider, c.event_id, {c.handler: "again"}, owner="worker")
    return elapsed


async def run_backend(
    backend: str, sizes: list[int], claims: int, limit: int, postgres_url: str | None
) -> list[float]:
    """Median claim time per backlog size; the sizes' claims alternate, so a change in the
    machine's load falls on all of them alike."""
    async with contextlib.AsyncExitStack() as stack:
        stores: list[Store] = []
        for pending in sizes:
            store = open_store(await stack.enter_async_context(fresh_url(backend, postgres_url)))
            stack.push_async_callback(store.close)
            await store.open()
            started = time.perf_counter()
            await fill(store, pending)
            filled = time.perf_counter() - started
            print(f"  {backend:<8} {pending:>7,} pending: filled in {filled:.1f} s")
            stores.append(store)
        times: list[list[float]] = [[] for _ in sizes]
        for _ in range(claims):
            for i, store in enumerate(stores):
                times[i].append(await claim_once(store, limit))
    costs = [statistics.median(t) for t in times]
    for pending, cost in zip(sizes, costs, strict=True):
        print(
            f"  {backend:<8} {pending:>7,} pending: {1000 * cost:7.3f} ms per claim of {limit}"
            f" (median of {claims})"
        )
    return costs


async def run(args: argparse.Namespace) -> int:
    sizes = [int(s) for s in args.pending.split(",")]
    backends = ["sqlite"] + (["postgres"] if args.postgres_url else [])
    print(f"claim cost against the backlog ({', '.join(f'{s:,}' for s in sizes)} pending)")
    failed = False
    for backend in backends:
        costs = await run_backend(backend, sizes, args.claims, args.limit, args.postgres_url)
        ratio = costs[-1] / costs[0]
        ok = ratio <= args.max_ratio
        failed |= not ok
        print(
            f"  {backend:<8} ratio {sizes[-1]:,} / {sizes[0]:,} pending: {ratio:.2f}"
            f" (target <= {args.max_ratio}) {'ok' if ok else 'MISSED'}"
        )
    return 1 if failed and args.check else 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry: parse the sizes and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pending", default="1000,20000", help="backlog sizes, comma-separated")
    parser.add_argument("--claims", type=int, default=200, help="timed claims per backlog size")
    parser.add_argument("--limit", type=int, default=10, help="pairs per claim")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("ALERTHOOKS_TEST_POSTGRES_URL"),
        help="PostgreSQL server to measure too (default: env ALERTHOOKS_TEST_POSTGRES_URL)",
    )
    parser.add_argument("--max-ratio", type=float, default=2.0, help="largest accepted ratio")
    parser.add_argument("--check", action="store_true", help="exit 1 when a ratio is missed")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
