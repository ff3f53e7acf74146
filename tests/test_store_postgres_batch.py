"""The Postgres store's group commit: the begins and finishes of the deliveries in flight go to
the database as one statement, with the same answers as one statement each — dedup within a
batch and across replicas, the guarded alert-state upsert, a faulty write failing alone; the
start marks of the runs in flight, as one statement of their own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest

from alerthooks.store import Delivery, StateChange, StoreError
from alerthooks.store.postgres import PostgresStore

from .stores import postgres_schema

NOW = datetime(2026, 5, 1, tzinfo=timezone.utc)


def delivery(event_id: str, *, state: StateChange | None = None, kind: str = "t") -> Delivery:
    return Delivery(
        provider="stripe",
        event_id=event_id,
        event_type=kind,
        body=b'{"id": 1}',
        received_at=NOW,
        handlers=("a", "b"),
        state=state,
    )


def change(state: str, minutes: int) -> StateChange:
    return StateChange(
        alert_id="al_1",
        alert_name="Usage",
        customer_id="cus_1",
        subscription_id=None,
        state=state,  # type: ignore[arg-type]
        since=NOW + timedelta(minutes=minutes),
    )


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with postgres_schema() as url:
        yield url


async def test_deliveries_in_flight_share_one_statement(url: str) -> None:
    store = PostgresStore(url)
    try:
        await store.open()
        begun = await asyncio.gather(
            *(store.begin(delivery(f"evt_{i}"), owner="w", lease=30) for i in range(32))
        )
        assert all(b.new and b.claimed == ("a", "b") for b in begun)
        assert store._batch.batches <= 2  # not 32
        before = store._batch.batches
        await asyncio.gather(
            *(
                store.finish("stripe", f"evt_{i}", {"a": None, "b": "boom"}, owner="w")
                for i in range(32)
            )
        )
        assert store._batch.batches - before <= 2
        stored = await store.get("stripe", "evt_7")
        assert stored is not None
        assert [(o.handler, o.status, o.attempts) for o in stored.outcomes] == [
            ("a", "done", 1),
            ("b", "failed", 1),
        ]
    finally:
        await store.close()


async def test_one_event_twice_in_flight_is_new_once(url: str) -> None:
    store = PostgresStore(url)
    try:
        begun = await asyncio.gather(
            *(store.begin(delivery("evt_same"), owner="w", lease=30) for _ in range(3))
        )
        assert sorted(b.new for b in begun) == [False, False, True]
        # Only the first holds the leases; the others see a live lease held.
        assert sorted(b.claimed for b in begun) == [(), (), ("a", "b")]
    finally:
        await store.close()


async def test_two_replicas_batching_the_same_events_record_each_once(url: str) -> None:
    replicas = [PostgresStore(url), PostgresStore(url)]
    try:
        for store in replicas:
            await store.open()
        ids = [f"evt_{i}" for i in range(40)]
        # Each replica gets every event, in opposite orders: rows are locked in one order.
        begun = await asyncio.gather(
            *(replicas[0].begin(delivery(i), owner="r0", lease=30) for i in ids),
            *(replicas[1].begin(delivery(i), owner="r1", lease=30) for i in reversed(ids)),
        )
        assert sum(b.new for b in begun) == len(ids)
        assert sum(len(b.claimed) for b in begun) == 2 * len(ids)
    finally:
        for store in replicas:
            await store.close()


async def test_the_latest_state_wins_within_a_batch_and_across_batches(url: str) -> None:
    store = PostgresStore(url)
    try:
        await asyncio.gather(
            store.begin(delivery("evt_1", state=change("in_alarm", 1)), owner="w", lease=30),
            store.begin(delivery("evt_3", state=change("within_limit", 3)), owner="w", lease=30),
            store.begin(delivery("evt_2", state=change("in_alarm", 2)), owner="w", lease=30),
        )
        # An older event arriving later does not set the state back.
        await store.begin(delivery("evt_0", state=change("in_alarm", 0)), owner="w", lease=30)
        [state] = await store.states()
        assert (state.state, state.event_id) == ("within_limit", "evt_3")
    finally:
        await store.close()


async def test_a_write_the_database_refuses_fails_alone(url: str) -> None:
    store = PostgresStore(url)
    try:
        await store.open()
        results = await asyncio.gather(
            store.begin(delivery("evt_ok1"), owner="w", lease=30),
            store.begin(delivery("evt_bad", kind="nul\x00byte"), owner="w", lease=30),
            store.begin(delivery("evt_ok2"), owner="w", lease=30),
            return_exceptions=True,
        )
        assert isinstance(results[1], StoreError)
        assert [r.new for r in (results[0], results[2]) if not isinstance(r, BaseException)] == [
            True,
            True,
        ]
        assert await store.get("stripe", "evt_bad") is None
        assert await store.get("stripe", "evt_ok2") is not None
    finally:
        await store.close()


async def test_group_commit_off_runs_each_write_alone(url: str) -> None:
    store = PostgresStore(url + "&group_commit=off")
    try:
        begun = await asyncio.gather(
            *(store.begin(delivery(f"evt_{i}"), owner="w", lease=30) for i in range(4))
        )
        assert all(b.new for b in begun)
        assert store._batch.batches == 0
    finally:
        await store.close()


@pytest.mark.parametrize("group_commit", ["on", "off"])
async def test_the_start_marks_of_runs_in_flight_share_one_statement(
    url: str, group_commit: str
) -> None:
    store = PostgresStore(f"{url}&group_commit={group_commit}")
    try:
        for i in range(16):
            await store.begin(delivery(f"evt_{i}"), owner="w", lease=30, claim=False)
        claims = await store.claim(owner="w", lease=30, limit=32)
        assert len(claims) == 32
        before = store._starts.batches
        starting = claims[:24]  # the rest stay claimed, not started
        await asyncio.gather(
            *(store.start(c.provider, c.event_id, [c.handler], owner="w") for c in starting)
        )
        # The worker marks each run as it starts it: one round trip for all in flight.
        assert store._starts.batches - before == (0 if group_commit == "off" else 1)
        async with store._conn() as conn:
            marked = await conn.fetch(
                "SELECT event_id, handler FROM alerthooks_outcomes WHERE status = 'running'"
                " AND started"
            )
        assert sorted((r["event_id"], r["handler"]) for r in marked) == sorted(
            (c.event_id, c.handler) for c in starting
        )
    finally:
        await store.close()


def test_group_commit_takes_on_or_off() -> None:
    with pytest.raises(ValueError, match="group_commit must be on or off"):
        PostgresStore("postgresql://h/db?group_commit=maybe")


async def test_leases_commit_without_the_flush_and_leave_the_session_as_it_was(url: str) -> None:
    store = PostgresStore(url + "&pool_size=1")
    try:
        begun = await asyncio.gather(
            *(store.begin(delivery(f"evt_{i}"), owner="w", lease=30) for i in range(4))
        )
        assert all(b.new for b in begun)
        await store.begin(delivery("evt_q"), owner="w", lease=30, claim=False)
        assert len(await store.claim(owner="w2", lease=30, limit=5)) == 2  # evt_q's a and b
        async with store._conn() as conn:  # the pool's one connection, as every write left it
            assert await conn.fetchval("SHOW synchronous_commit") == "on"
    finally:
        await store.close()
