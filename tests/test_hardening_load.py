"""Load: events at 64 concurrency with 30 % duplicates into queued mode while each handler fails
at random 10 % of the time. In the end every event's handlers ran exactly once successfully and
none was lost — on SQLite and on Postgres (a fresh schema per test).

``make test`` sends 300 events; ``ALERTHOOKS_FULL_TESTS=1`` sends the full 2,000.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from alerthooks import AlertEvent
from alerthooks.testing import (
    chargebee_alert_status_changed,
    chargebee_auth_headers,
    stripe_alert_triggered,
    stripe_signature_header,
)

from .conftest import CB_PASSWORD, CB_USER, STRIPE_SECRET
from .helpers import make_hooks
from .hostile import FULL, asgi_call
from .stores import store_url

DELIVERIES = 2000 if FULL else 300
CONCURRENCY = 64
DUPLICATE_SHARE = 0.30
FAILURE_RATE = 0.10
HANDLERS = ("notify", "record")


def _request(payload: dict[str, Any], provider: str) -> dict[str, Any]:
    body = json.dumps(payload).encode()
    if provider == "stripe":
        header = (b"stripe-signature", stripe_signature_header(body, STRIPE_SECRET).encode())
    else:
        auth = chargebee_auth_headers(CB_USER, CB_PASSWORD)["Authorization"]
        header = (b"authorization", auth.encode())
    return {"path": f"/{provider}", "headers": [header], "chunks": [body]}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_queued_load_with_duplicates_and_failing_handlers_loses_nothing(
    backend: str, tmp_path: Path
) -> None:
    rng = random.Random(7)
    succeeded: Counter[tuple[str, str]] = Counter()
    failed: Counter[tuple[str, str]] = Counter()
    async with store_url(backend, tmp_path) as url:
        hooks = make_hooks(
            url,
            mode="queued",
            retry_backoff=0.01,
            retry_backoff_max=0.1,
            poll_interval=0.05,
            max_attempts=20,
        )

        def handler(name: str) -> Any:
            async def run(event: AlertEvent) -> None:
                await asyncio.sleep(0)
                if rng.random() < FAILURE_RATE:
                    failed[(event.id, name)] += 1
                    raise RuntimeError(f"{name} failed at random")
                succeeded[(event.id, name)] += 1

            return run

        for name in HANDLERS:
            hooks.add_handler(handler(name), "*", name=name)

        unique = round(DELIVERIES * (1 - DUPLICATE_SHARE))
        originals: list[tuple[str, dict[str, Any]]] = []
        for i in range(unique):
            if i % 2:
                alarm = "in_alarm" if i % 4 == 1 else "within_limit"
                originals.append(("chargebee", chargebee_alert_status_changed(alarm)))  # type: ignore[arg-type]
            else:
                originals.append(("stripe", stripe_alert_triggered()))
        deliveries = originals + [rng.choice(originals) for _ in range(DELIVERIES - unique)]
        rng.shuffle(deliveries)

        statuses: Counter[int] = Counter()
        redeliveries = 0
        gate = asyncio.Semaphore(CONCURRENCY)

        async def deliver(provider: str, payload: dict[str, Any]) -> None:
            nonlocal redeliveries
            async with gate:
                for _ in range(20):  # a provider retries until it gets a 2xx
                    status, _, _ = await asgi_call(hooks, **_request(payload, provider))
                    statuses[status] += 1
                    if 200 <= status < 300:
                        return
                    redeliveries += 1
                    await asyncio.sleep(0.05)
                raise AssertionError(f"{payload['id']} never acknowledged: {status}")

        await hooks.startup()
        try:
            await asyncio.gather(*(deliver(p, payload) for p, payload in deliveries))
            expected = {(payload["id"], name) for _, payload in originals for name in HANDLERS}
            deadline = time.monotonic() + (240 if FULL else 60)
            while set(succeeded) != expected:
                assert time.monotonic() < deadline, f"{len(expected - set(succeeded))} pending"
                await asyncio.sleep(0.05)
            await hooks.drain(30)
            stored = await hooks.store.events(limit=unique + 10)
            dead = await hooks.store.events(status="dead")
        finally:
            await hooks.shutdown()

    assert sum(statuses[s] for s in statuses if 200 <= s < 300) == DELIVERIES
    assert {k: n for k, n in succeeded.items() if n != 1} == {}, "a handler succeeded twice"
    assert set(succeeded) == expected
    assert sum(failed.values()) > 0, "the random failures never happened"
    assert len(stored) == unique
    assert all(o.status == "done" for e in stored for o in e.outcomes)
    assert dead == []
