"""A store blip after the handlers ran (``finish`` fails, then the store answers again) never
runs a handler twice: the outcome is kept and recorded once the store is back, the leases are
renewed meanwhile, and inline redeliveries are answered 503 until it is recorded, then 200."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from alerthooks import AlertEvent, AlertHooks, AlertState
from alerthooks.store import (
    Begun,
    Claim,
    Delivery,
    StateChange,
    Status,
    Store,
    StoredEvent,
    StoreError,
    Unfolded,
    open_store,
)
from alerthooks.testing import stripe_alert_triggered, stripe_signature_header

from .conftest import STRIPE_SECRET
from .helpers import make_hooks, wait_until
from .hostile import asgi_call
from .stores import DURABLE, store_url


class FlakyFinish(Store):
    """A real store whose ``finish`` fails (``StoreError``) while :attr:`down`, or for its
    next :attr:`failures` calls; everything else goes through."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.url = inner.url
        self.down = False
        self.failures = 0
        self.refused = 0
        self.stall = False  # the next finish waits until cancelled (a request gone mid-write)
        self.stalled = 0

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def begin(
        self, delivery: Delivery, *, owner: str, lease: float, claim: bool = True
    ) -> Begun:
        return await self.inner.begin(delivery, owner=owner, lease=lease, claim=claim)

    async def finish(
        self,
        provider: str,
        event_id: str,
        results: Mapping[str, str | None],
        *,
        owner: str,
        retry_in: Mapping[str, float] | None = None,
        dead: Collection[str] = (),
    ) -> None:
        if self.stall:
            self.stall = False
            self.stalled += 1
            await asyncio.Event().wait()
        if self.down or self.failures > 0:
            self.failures = max(0, self.failures - 1)
            self.refused += 1
            raise StoreError("connection reset by peer")
        await self.inner.finish(
            provider, event_id, results, owner=owner, retry_in=retry_in, dead=dead
        )

    async def extend(
        self, provider: str, event_id: str, handlers: Collection[str], *, owner: str, lease: float
    ) -> None:
        await self.inner.extend(provider, event_id, handlers, owner=owner, lease=lease)

    async def claim(
        self, *, owner: str, lease: float, limit: int, max_attempts: int | None = None
    ) -> Sequence[Claim]:
        return await self.inner.claim(
            owner=owner, lease=lease, limit=limit, max_attempts=max_attempts
        )

    async def replay(
        self, event_ids: Collection[str] = (), *, dead: bool = False, failed: bool = False
    ) -> int:
        return await self.inner.replay(event_ids, dead=dead, failed=failed)

    async def prune(self, *, before: datetime, limit: int = 10_000) -> int:
        return await self.inner.prune(before=before, limit=limit)

    async def next_due(self) -> float | None:
        return await self.inner.next_due()

    async def get(self, provider: str, event_id: str) -> StoredEvent | None:
        return await self.inner.get(provider, event_id)

    async def events(
        self, *, status: Status | None = None, limit: int = 50, **query: Any
    ) -> Sequence[StoredEvent]:
        return await self.inner.events(status=status, limit=limit, **query)

    async def resolve_unparsed(
        self, provider: str, event_id: str, handlers: Collection[str]
    ) -> bool:
        return await self.inner.resolve_unparsed(provider, event_id, handlers)

    async def states(
        self, *, in_alarm: bool | None = None, provider: str | None = None
    ) -> Sequence[AlertState]:
        return await self.inner.states(in_alarm=in_alarm, provider=provider)

    async def unfolded(self, *, after: int = 0, limit: int = 500) -> Sequence[Unfolded] | None:
        return await self.inner.unfolded(after=after, limit=limit)

    async def fold(
        self, changes: Sequence[tuple[str, str, StateChange]], *, done: bool = False
    ) -> None:
        await self.inner.fold(changes, done=done)


@pytest.fixture(params=["memory", *DURABLE])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with store_url(request.param, tmp_path) as found:
        yield found


def counting(hooks: AlertHooks) -> Counter[str]:
    ran: Counter[str] = Counter()

    @hooks.on("*", name="count")
    def count(event: AlertEvent) -> None:
        ran[event.id] += 1

    return ran


async def deliver(hooks: AlertHooks, payload: dict[str, Any]) -> tuple[int, bytes]:
    body = json.dumps(payload).encode()
    header = stripe_signature_header(body, STRIPE_SECRET).encode()
    status, answer, _ = await asgi_call(
        hooks, path="/stripe", headers=[(b"stripe-signature", header)], chunks=[body]
    )
    return status, answer


async def statuses(store: Store, event_id: str) -> list[tuple[str, int]]:
    stored = await store.get("stripe", event_id)
    assert stored is not None
    return [(o.status, o.attempts) for o in stored.outcomes]


async def until_stored(
    store: Store, event_id: str, expected: list[tuple[str, int]], within: float = 10.0
) -> None:
    """Return once the event's outcomes read ``expected``; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while (found := await statuses(store, event_id)) != expected:
        assert time.monotonic() < deadline, f"outcomes still {found} after {within} s"
        await asyncio.sleep(0.02)


async def test_inline_outcome_is_recorded_after_the_blip_and_the_handler_runs_once(
    url: str,
) -> None:
    store = FlakyFinish(open_store(url))
    hooks = make_hooks(store, lease_seconds=300)
    ran = counting(hooks)
    await hooks.startup()
    try:
        payload = stripe_alert_triggered()
        store.down = True
        status, answer = await deliver(hooks, payload)
        assert (status, json.loads(answer)) == (503, {"error": "store unavailable; retry later"})
        assert ran[payload["id"]] == 1
        # The provider retries while the store is still failing: 503, and nothing runs again.
        for _ in range(3):
            assert (await deliver(hooks, payload))[0] == 503
        assert ran[payload["id"]] == 1
        store.down = False
        await until_stored(store, payload["id"], [("done", 1)])
        # Long before the 300 s lease could run out, the retry is a duplicate: it never ran twice.
        status, answer = await deliver(hooks, payload)
        assert (status, json.loads(answer)) == (200, {"status": "duplicate"})
        assert ran[payload["id"]] == 1
    finally:
        await hooks.shutdown()


async def test_inline_outcome_is_recorded_when_the_request_is_cancelled_mid_write(
    url: str,
) -> None:
    store = FlakyFinish(open_store(url))
    hooks = make_hooks(store)
    ran = counting(hooks)
    await hooks.startup()
    try:
        payload = stripe_alert_triggered()
        store.stall = True
        delivery = asyncio.ensure_future(deliver(hooks, payload))
        await wait_until(lambda: store.stalled == 1, what="finish to be under way")
        delivery.cancel()
        await until_stored(store, payload["id"], [("done", 1)])
        assert (await deliver(hooks, payload))[0] == 200
        assert ran[payload["id"]] == 1
    finally:
        await hooks.shutdown()


async def test_inline_failed_handler_outcome_survives_the_blip_and_is_retried_once(
    url: str,
) -> None:
    store = FlakyFinish(open_store(url))
    hooks = make_hooks(store)
    runs: list[str] = []

    @hooks.on("*", name="flaky")
    def flaky(event: AlertEvent) -> None:
        runs.append(event.id)
        if len(runs) == 1:
            raise RuntimeError("first run fails")

    await hooks.startup()
    try:
        payload = stripe_alert_triggered()
        store.failures = 2
        assert (await deliver(hooks, payload))[0] == 503
        await until_stored(store, payload["id"], [("failed", 1)])
        # The provider's retry runs the failed handler again (that is a retry, not a re-run).
        assert (await deliver(hooks, payload))[0] == 200
        assert runs == [payload["id"], payload["id"]]
        assert await statuses(store, payload["id"]) == [("done", 2)]
    finally:
        await hooks.shutdown()


async def test_queued_outcomes_are_recorded_after_the_blip_and_each_handler_runs_once(
    url: str,
) -> None:
    store = FlakyFinish(open_store(url))
    hooks = make_hooks(store, mode="queued", worker=False, lease_seconds=300)
    ran = counting(hooks)
    await hooks.startup()
    try:
        payloads = [stripe_alert_triggered() for _ in range(5)]
        for payload in payloads:
            assert (await deliver(hooks, payload))[0] == 200
        store.failures = 7  # the first writes of several events fail, spread over retries
        await hooks.drain(30)
        assert store.refused == 7
        for payload in payloads:
            assert await statuses(store, payload["id"]) == [("done", 1)]
        assert ran == Counter({p["id"]: 1 for p in payloads})
        assert hooks.worker.recorded == 5
    finally:
        await hooks.shutdown()


async def test_queued_leases_are_renewed_while_the_outcome_waits_for_the_store(
    tmp_path: Path,
) -> None:
    """With a short lease and a blip longer than it, a second worker on the same store never
    takes the pair over: the first one's lease keeper keeps renewing until it is recorded."""
    inner = open_store(f"sqlite:///{tmp_path}/inbox.db")
    store = FlakyFinish(inner)
    first = make_hooks(store, mode="queued", worker=False, lease_seconds=0.6)
    ran = counting(first)
    second = make_hooks(inner, mode="queued", worker=False, lease_seconds=0.6)
    second_ran = counting(second)
    await first.startup()
    try:
        payload = stripe_alert_triggered()
        assert (await deliver(first, payload))[0] == 200
        store.down = True
        assert await first.worker.run_once() == 1
        await wait_until(lambda: store.refused >= 1, what="the first finish to fail")
        # Longer than the lease: the other worker keeps polling meanwhile.
        until = time.monotonic() + 1.5
        while time.monotonic() < until:
            assert await second.worker.run_once() == 0
            await asyncio.sleep(0.05)
        store.down = False
        await first.worker.drain(10)
        assert await statuses(inner, payload["id"]) == [("done", 1)]
        assert ran[payload["id"]] == 1 and second_ran == Counter()
    finally:
        await first.shutdown()
        await second.worker.stop()
