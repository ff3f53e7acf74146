"""The official SDKs (``orb-billing``'s ``AsyncOrb``, ``metronome-sdk``'s ``AsyncMetronome``)
against the manager's plain-httpx clients, for the calls the manager makes: N creates (
``--concurrency`` at a time) and listing them back (all pages), against the loopback fakes.

The fakes (``alerthooks.testing.orb.FakeOrb``, ``...metronome.FakeMetronome``) run in a child
process, so their CPU time does not share this interpreter. Each variant reports wall time and
this process's CPU time per call, and how many pooled connections its client holds afterwards
(one shared ``httpx.AsyncClient`` per SDK client holds at most ``--concurrency``).

Needs the extras: ``pip install 'alerthooks[orb,metronome]'``.

    .venv/bin/python benchmarks/orb_metronome_sdks.py [--alerts 400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any

from alerthooks.manager import parse_config
from alerthooks.manager.metronome import MetronomeAPI
from alerthooks.manager.orb import OrbAPI


def _serve(conn: Connection) -> None:
    from alerthooks.testing.metronome import FakeMetronome
    from alerthooks.testing.orb import FakeOrb

    with FakeOrb() as orb, FakeMetronome(page_size=100) as metronome:
        conn.send((orb.url, orb.api_key, metronome.url, metronome.api_key))
        while True:
            if conn.recv() == "stop":
                return
            orb.reset()
            metronome.reset()
            conn.send("reset")


def _pool_size(client: Any) -> int:
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    return len(getattr(pool, "connections", ()))


async def _bounded(calls: list[Callable[[], Awaitable[Any]]], concurrency: int) -> None:
    limit = asyncio.Semaphore(concurrency)

    async def one(call: Callable[[], Awaitable[Any]]) -> None:
        async with limit:
            await call()

    await asyncio.gather(*(one(c) for c in calls))


async def _orb_httpx(url: str, key: str, n: int, concurrency: int) -> tuple[int, int]:
    alerts = [
        {
            "key": f"a{i}",
            "type": "usage_exceeded",
            "subscription_id": "sub_1",
            "metric_id": f"m{i}",
            "thresholds": [100],
        }
        for i in range(n)
    ]
    table = parse_config({"orb": {"alerts": alerts}}).tables["orb"]
    api = OrbAPI(key, list(table.alerts), api_base=url, concurrency=concurrency)
    try:
        await asyncio.gather(*(api.create_alert(a, f"k{i}") for i, a in enumerate(table.alerts)))
        listed = await api.list_alerts()
        return len(listed), _pool_size(api._client)
    finally:
        await api.aclose()


async def _orb_sdk(url: str, key: str, n: int, concurrency: int) -> tuple[int, int]:
    import httpx
    import orb

    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency))
    client = orb.AsyncOrb(api_key=key, base_url=f"{url}/v1", http_client=http, max_retries=0)
    try:
        creates = [
            lambda i=i: client.alerts.create_for_subscription(
                "sub_1", type="usage_exceeded", metric_id=f"m{i}", thresholds=[{"value": 100}]
            )
            for i in range(n)
        ]
        await _bounded(creates, concurrency)
        listed = [a async for a in client.alerts.list(subscription_id="sub_1", limit=100)]
        return len(listed), _pool_size(client._client)
    finally:
        await client.close()


async def _metronome_httpx(url: str, key: str, n: int, concurrency: int) -> tuple[int, int]:
    alerts = [
        {
            "key": f"a{i}",
            "name": f"Alert {i}",
            "alert_type": "usage_threshold_reached",
            "threshold": 100,
            "billable_metric_id": "bm_1",
            "customer_id": "cus_1",
        }
        for i in range(n)
    ]
    table = parse_config({"metronome": {"alerts": alerts}}).tables["metronome"]
    api = MetronomeAPI(key, table, api_base=url, concurrency=concurrency)  # type: ignore[arg-type]
    try:
        await asyncio.gather(*(api.create_alert(a, f"k{i}") for i, a in enumerate(table.alerts)))
        listed = await api.list_alerts()
        return len(listed), _pool_size(api._client)
    finally:
        await api.aclose()


async def _metronome_sdk(url: str, key: str, n: int, concurrency: int) -> tuple[int, int]:
    import httpx
    import metronome

    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency))
    client = metronome.AsyncMetronome(
        bearer_token=key, base_url=url, http_client=http, max_retries=0
    )
    try:
        creates = [
            lambda i=i: client.v1.alerts.create(
                alert_type="usage_threshold_reached",
                name=f"Alert {i}",
                threshold=100,
                billable_metric_id="bm_1",
                customer_id="cus_1",
                uniqueness_key=f"u{i}",
            )
            for i in range(n)
        ]
        await _bounded(creates, concurrency)
        listed = [
            a
            async for a in client.v1.customers.alerts.list(
                customer_id="cus_1", alert_statuses=["ENABLED", "DISABLED"]
            )
        ]
        return len(listed), _pool_size(client._client)
    finally:
        await client.close()


VARIANTS: dict[str, Callable[[str, str, int, int], Awaitable[tuple[int, int]]]] = {
    "orb httpx": _orb_httpx,
    "orb sdk": _orb_sdk,
    "metronome httpx": _metronome_httpx,
    "metronome sdk": _metronome_sdk,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    here, there = multiprocessing.Pipe()
    child = multiprocessing.Process(target=_serve, args=(there,), daemon=True)
    child.start()
    orb_url, orb_key, metronome_url, metronome_key = here.recv()
    where = {"orb": (orb_url, orb_key), "metronome": (metronome_url, metronome_key)}
    pages = -(-args.alerts // 100)
    calls = args.alerts + pages
    print(f"{args.alerts} creates ({args.concurrency} at a time) + {pages} list pages each")
    try:
        for name, run in VARIANTS.items():
            walls, cpus = [], []
            for _ in range(args.rounds):
                here.send("reset")
                here.recv()
                url, key = where[name.split()[0]]
                wall, cpu = time.perf_counter(), time.process_time()
                listed, pooled = asyncio.run(run(url, key, args.alerts, args.concurrency))
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
                assert listed == args.alerts, (name, listed)
                assert pooled <= args.concurrency, (name, pooled)
            wall, cpu = statistics.median(walls), statistics.median(cpus)
            print(
                f"  {name:<16} wall {wall * 1000:7.1f} ms  cpu/call {cpu / calls * 1e6:6.0f} us"
                f"  pooled connections {pooled}"
            )
    finally:
        here.send("stop")
        child.join(10)


if __name__ == "__main__":
    main()
