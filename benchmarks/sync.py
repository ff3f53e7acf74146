"""Alert sync at scale: plan and apply N alerts per provider against the stateful fakes.

The fakes (``alerthooks.testing.FakeStripe`` / ``FakeChargebee``, loopback HTTP) add a fixed
latency to every API call and count calls per endpoint. They run in a child process, so their own
CPU time does not share the manager's interpreter. Two runs per provider, both providers at
once, as ``alerthooks apply`` does:

- ``create``: nothing exists yet; plan, then apply N creates.
- ``re-plan``: the N alerts exist; plan again (all pages), nothing to apply.

Each run prints its wall time and API calls beside the minimum (one create per new alert, one
list call per 100 existing alerts, at least one), and the wall time beside the bound
1.3 x (list pages x latency + writes x latency / concurrency): pages are read one after the
other (each needs the previous cursor), writes run ``--concurrency`` at a time per provider.
Every run checks the fakes hold exactly the configured alerts afterwards.

    .venv/bin/python benchmarks/sync.py [--alerts 2000] [--latency 0.03] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import sys
import time
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import Any

from alerthooks.manager import AlertManager, Credentials, parse_config
from alerthooks.testing.fakes import FakeChargebee, FakeStripe

STRIPE_PER_PAIR = 25  # Stripe's limit of alerts per (meter, customer)


def config(count: int) -> dict[str, Any]:
    """``count`` alerts per provider, as ``alerts.toml`` would declare them."""
    return {
        "stripe": {
            "alerts": [
                {
                    "key": f"usage-{i}",
                    "title": f"Usage {i} reached",
                    "meter": f"mtr_{i // STRIPE_PER_PAIR}",
                    "gte": 100 + i,
                    "customer": f"cus_{i % 7}",
                }
                for i in range(count)
            ]
        },
        "chargebee": {
            "alerts": [
                {
                    "key": f"usage-{i}",
                    "name": f"Usage {i}",
                    "metered_feature_id": f"feature-{i % 50}",
                    "threshold": {"mode": "absolute", "value": 100 + i},
                }
                for i in range(count)
            ]
        },
    }


def serve_fakes(conn: Connection, latency: float) -> None:
    """Child process: run both fakes; answer ``clear``, ``state`` and ``stop`` over ``conn``."""
    with FakeStripe(latency=latency) as stripe_api, FakeChargebee(latency=latency) as cb_api:
        fakes = {"stripe": stripe_api, "chargebee": cb_api}
        conn.send({**stripe_api.env(), **cb_api.env()})
        while (command := conn.recv()) != "stop":
            if command == "clear":
                for fake in fakes.values():
                    fake.calls.clear()
                conn.send(None)
            elif command == "state":
                conn.send({n: (dict(f.calls), len(f.alerts())) for n, f in fakes.items()})


def _calls(calls: Mapping[str, int]) -> tuple[int, int, int]:
    """(list calls, create calls, every call) from a fake's call counts."""
    lists = creates = 0
    for endpoint, n in calls.items():
        method, path = endpoint.split(" ", 1)
        if path.rstrip("/").endswith("/alerts"):
            if method == "GET":
                lists += n
            elif method == "POST":
                creates += n
    return lists, creates, sum(calls.values())


def _ask(conn: Connection, command: str) -> Any:
    conn.send(command)
    return conn.recv()


async def _run(
    manager: AlertManager, conn: Connection, apply: bool
) -> tuple[float, dict[str, tuple[int, int, int]], int]:
    _ask(conn, "clear")
    started = time.perf_counter()
    plan = await manager.plan()
    writes = sum(1 for change in plan.changes if change.is_write)
    if apply:
        result = await manager.apply(plan)
        if not result.ok:
            raise SystemExit(f"apply failed: {[o for o in result.failed][:3]}")
    wall = time.perf_counter() - started
    state = _ask(conn, "state")
    return wall, {name: _calls(calls) for name, (calls, _) in state.items()}, writes


def _report(
    run: str,
    wall: float,
    calls: Mapping[str, tuple[int, int, int]],
    existing: int,
    created: int,
    latency: float,
    concurrency: int,
) -> bool:
    ok = True
    pages = max(1, math.ceil(existing / 100))
    bound = 0.0
    for name, (lists, creates, total) in calls.items():
        minimum = pages + created
        ok &= total == minimum
        print(
            f"  {run:<8} {name:<9} calls {total:>5} (list {lists}, create {creates}); "
            f"minimum {minimum} ({pages} list + {created} create)"
            f"{'' if total == minimum else '  ABOVE MINIMUM'}"
        )
        bound = max(bound, 1.3 * (pages * latency + created * latency / concurrency))
    within = wall <= bound
    print(
        f"  {run:<8} wall {wall:6.2f} s; bound 1.3 x (pages x latency + creates x latency / "
        f"{concurrency}) = {bound:.2f} s {'ok' if within else 'MISSED'}"
    )
    return ok and within


async def main_async(count: int, latency: float, concurrency: int) -> int:
    """Run ``create`` then ``re-plan``; return 1 when a count or bound was missed."""
    settings = parse_config(config(count), source="benchmarks/sync.py")
    conn, child_conn = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(
        target=serve_fakes, args=(child_conn, latency), daemon=True
    )
    child.start()
    try:
        if not conn.poll(60):
            raise SystemExit("the fakes did not start")
        credentials = Credentials.from_env(conn.recv())
        print(
            f"sync: {count} alerts per provider, {latency * 1000:.0f} ms per API call, "
            f"concurrency {concurrency} per provider, both providers at once"
        )
        async with AlertManager(settings, credentials, concurrency=concurrency) as manager:
            wall, calls, writes = await _run(manager, conn, apply=True)
            if writes != 2 * count:
                raise SystemExit(f"create: planned {writes} writes for {2 * count} alerts")
            ok = _report("create", wall, calls, 0, count, latency, concurrency)
            held = {name: alerts for name, (_, alerts) in _ask(conn, "state").items()}
            if set(held.values()) != {count}:
                raise SystemExit(f"create: the fakes hold {held} alerts, not {count} each")
            wall, calls, writes = await _run(manager, conn, apply=False)
            if writes:
                raise SystemExit(f"re-plan: {writes} changes planned after a full apply")
            ok &= _report("re-plan", wall, calls, count, 0, latency, concurrency)
    finally:
        conn.send("stop")
        child.join(30)
        if child.is_alive():
            child.kill()
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    """Command line entry."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=2000, help="alerts per provider")
    parser.add_argument("--latency", type=float, default=0.03, help="seconds per API call")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight each")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    status = asyncio.run(main_async(args.alerts, args.latency, args.concurrency))
    return status if args.check else 0


if __name__ == "__main__":
    sys.exit(main())
