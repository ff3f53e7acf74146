"""Events stored before the stores kept alert state (schema 2) are folded into it on first use,
through the providers that read them."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from alerthooks.state import FOLD_PAGE, fold_stored
from alerthooks.store import SCHEMA_VERSION, open_store
from alerthooks.testing import (
    AlertHooksClient,
    chargebee_alert_status_changed,
    stripe_alert_triggered,
    stripe_customer_created,
)

from .helpers import logged, make_hooks
from .stores import DURABLE, POSTGRES_URL, store_url

T0 = 1_790_000_000

_V2_SQLITE = """
CREATE TABLE alerthooks_schema (version INTEGER NOT NULL);
INSERT INTO alerthooks_schema VALUES (2);
CREATE TABLE alerthooks_events (seq INTEGER PRIMARY KEY, provider TEXT NOT NULL,
    event_id TEXT NOT NULL, event_type TEXT, body BLOB NOT NULL, received_at REAL NOT NULL,
    UNIQUE (event_id, provider));
CREATE TABLE alerthooks_outcomes (seq INTEGER NOT NULL REFERENCES alerthooks_events (seq),
    handler TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT, owner TEXT, lease_until REAL NOT NULL DEFAULT 0, due_at REAL NOT NULL,
    history TEXT NOT NULL DEFAULT '[]', PRIMARY KEY (seq, handler)) WITHOUT ROWID;
"""

_V2_POSTGRES = [
    "CREATE TABLE alerthooks_schema (version integer NOT NULL)",
    "INSERT INTO alerthooks_schema VALUES (2)",
    "CREATE TABLE alerthooks_events (seq bigserial PRIMARY KEY, provider text NOT NULL,"
    " event_id text NOT NULL, event_type text, body bytea NOT NULL,"
    " received_at timestamptz NOT NULL, UNIQUE (provider, event_id))",
    "CREATE TABLE alerthooks_outcomes (provider text NOT NULL, event_id text NOT NULL,"
    " handler text NOT NULL, status text NOT NULL, attempts integer NOT NULL DEFAULT 0,"
    " last_error text, owner text, lease_until timestamptz,"
    " due_at timestamptz NOT NULL DEFAULT now(), history jsonb NOT NULL DEFAULT '[]',"
    " PRIMARY KEY (provider, event_id, handler))",
]

Stored = tuple[str, str, str | None, bytes]  # provider, event id, provider's type, body


def cb(alarm: str, event_id: str, occurred: int, sub: str = "sub_1") -> Stored:
    payload = chargebee_alert_status_changed(
        alarm,  # type: ignore[arg-type]
        id=event_id,
        alert_id="al_1",
        subscription_id=sub,
        occurred_at=T0 + occurred,
    )
    return ("chargebee", event_id, "alert_status_changed", json.dumps(payload).encode())


def stripe(payload: dict[str, Any]) -> Stored:
    return ("stripe", payload["id"], payload["type"], json.dumps(payload).encode())


async def write_v2(url: str, tmp_path: Path, events: Sequence[Stored]) -> None:
    """A store as alerthooks with schema 2 left it, holding ``events`` in this order."""
    received = datetime.now(timezone.utc)
    if url.startswith("sqlite"):
        conn = sqlite3.connect(tmp_path / "inbox.db")
        conn.executescript(_V2_SQLITE)
        conn.executemany(
            "INSERT INTO alerthooks_events (provider, event_id, event_type, body, received_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [(*event, received.timestamp()) for event in events],
        )
        conn.commit()
        conn.close()
        return
    assert POSTGRES_URL
    schema = url.rsplit("schema=", 1)[1]
    pg = await asyncpg.connect(POSTGRES_URL)
    try:
        await pg.execute(f'CREATE SCHEMA "{schema}"')
        await pg.execute(f'SET search_path = "{schema}"')
        for statement in _V2_POSTGRES:
            await pg.execute(statement)
        await pg.executemany(
            "INSERT INTO alerthooks_events (provider, event_id, event_type, body, received_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            [(*event, received) for event in events],
        )
    finally:
        await pg.close()


@pytest.fixture(params=DURABLE)
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with store_url(request.param, tmp_path) as found:
        yield found


def table(states: Sequence[Any]) -> list[tuple[str, str, str | None, str, str]]:
    return [
        (s.provider, s.alert_id, s.customer_id or s.subscription_id, s.state, s.event_id)
        for s in states
    ]


async def test_events_stored_under_schema_2_are_folded_in_on_first_use(
    url: str, tmp_path: Path
) -> None:
    alert = stripe_alert_triggered(alert_id="alrt_1", customer="cus_1", created=T0)
    await write_v2(
        url,
        tmp_path,
        [
            cb("in_alarm", "ev_t", 60),
            cb("within_limit", "ev_c", 0),  # stored later, occurred earlier
            cb("within_limit", "ev_2", 0, sub="sub_2"),
            stripe(alert),
            stripe(stripe_customer_created()),  # not an alert: no state
            ("chargebee", "ev_garbled", "alert_status_changed", b"{not json"),
        ],
    )
    hooks = make_hooks(url)
    try:
        states = await hooks.alert_states()
        assert table(states) == [
            ("chargebee", "al_1", "sub_1", "in_alarm", "ev_t"),
            ("chargebee", "al_1", "sub_2", "within_limit", "ev_2"),
            ("stripe", "alrt_1", "cus_1", "in_alarm", alert["id"]),
        ]
        assert states[0].since == datetime.fromtimestamp(T0 + 60, timezone.utc)
        assert await hooks.store.unfolded() is None  # done: not read again
        # The stored events themselves are as they were.
        assert (await hooks.store.get("chargebee", "ev_c")) is not None
    finally:
        await hooks.shutdown()
    store = open_store(url)
    try:
        assert await store.unfolded() is None
        assert table(await store.states()) == table(states)
    finally:
        await store.close()


async def test_deliveries_after_the_migration_and_the_fold_keep_the_later_event(
    url: str, tmp_path: Path
) -> None:
    await write_v2(
        url, tmp_path, [cb("in_alarm", "ev_old_t", 60), cb("in_alarm", "ev_old_2", 90, "sub_2")]
    )
    hooks = make_hooks(url)
    async with AlertHooksClient(hooks) as client:
        # Delivered after the migration, before anything read the state: sub_1's clear
        # occurred after the stored trigger, sub_2's before the stored one.
        for event_id, alarm, occurred, sub in [
            ("ev_new_c", "within_limit", 120, "sub_1"),
            ("ev_new_2", "within_limit", 30, "sub_2"),
        ]:
            payload = chargebee_alert_status_changed(
                alarm,  # type: ignore[arg-type]
                id=event_id,
                alert_id="al_1",
                subscription_id=sub,
                occurred_at=T0 + occurred,
            )
            assert (await client.deliver("chargebee", payload)).status_code == 200
        assert table(await hooks.alert_states()) == [
            ("chargebee", "al_1", "sub_1", "within_limit", "ev_new_c"),
            ("chargebee", "al_1", "sub_2", "in_alarm", "ev_old_2"),
        ]


async def test_a_migrated_store_says_which_events_are_left_to_fold(
    url: str, tmp_path: Path
) -> None:
    await write_v2(url, tmp_path, [cb("in_alarm", f"ev_{i:04d}", i) for i in range(1, 8)])
    store = open_store(url)
    try:
        first = await store.unfolded(limit=3)
        assert first is not None
        assert [u.event_id for u in first] == ["ev_0001", "ev_0002", "ev_0003"]
        rest = await store.unfolded(after=first[-1].cursor, limit=100)
        assert rest is not None and [u.event_id for u in rest] == [
            f"ev_{i:04d}" for i in range(4, 8)
        ]
        assert await store.unfolded(after=rest[-1].cursor) == []
        # Events recorded after the migration carry their state already: not to fold.
        hooks = make_hooks(store)
        async with AlertHooksClient(hooks) as client:
            later = chargebee_alert_status_changed("in_alarm", id="ev_after", occurred_at=T0)
            assert (await client.deliver("chargebee", later)).status_code == 200
            assert await store.unfolded(after=rest[-1].cursor) == []
            await store.fold([], done=True)
            assert await store.unfolded() is None
    finally:
        await store.close()


async def test_folding_reads_every_page(url: str, tmp_path: Path) -> None:
    count = FOLD_PAGE * 2 + 3
    await write_v2(
        url, tmp_path, [cb("in_alarm", f"ev_{i:05d}", i, sub=f"sub_{i}") for i in range(count)]
    )
    store = open_store(url)
    try:
        assert await fold_stored(store, make_hooks(store).providers)
        states = await store.states()
        assert len(states) == count
        assert {s.state for s in states} == {"in_alarm"}
    finally:
        await store.close()


async def test_events_of_a_provider_not_configured_here_are_left_for_later(
    url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await write_v2(
        url,
        tmp_path,
        [
            cb("in_alarm", "ev_t", 0),
            ("acme", "acme_1", "threshold.crossed", b'{"id": "acme_1"}'),
            ("acme", "acme_2", "threshold.crossed", b'{"id": "acme_2"}'),
        ],
    )
    hooks = make_hooks(url)
    try:
        with caplog.at_level(logging.WARNING, "alerthooks.state"):
            states = await hooks.alert_states()
        assert table(states) == [("chargebee", "al_1", "sub_1", "in_alarm", "ev_t")]
        assert len(logged(caplog, "2 acme event(s)", level=logging.WARNING)) == 1
        unfolded = await hooks.store.unfolded()
        assert unfolded is not None and len(unfolded) == 3  # for an app that has acme
        # This app's providers will not read them later either: not tried again.
        with caplog.at_level(logging.WARNING, "alerthooks.state"):
            assert await hooks.alert_states() == states
        assert len(logged(caplog, "2 acme event(s)", level=logging.WARNING)) == 1
    finally:
        await hooks.shutdown()


async def test_a_fresh_store_has_nothing_to_fold(url: str) -> None:
    store = open_store(url)
    try:
        await store.open()
        assert await store.unfolded() is None
    finally:
        await store.close()
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        conn = sqlite3.connect(path)
        (version,) = conn.execute("SELECT version FROM alerthooks_schema").fetchone()
        conn.close()
        assert version == SCHEMA_VERSION == 4


async def test_a_migrated_store_without_events_has_nothing_to_fold(
    url: str, tmp_path: Path
) -> None:
    await write_v2(url, tmp_path, [])
    store = open_store(url)
    try:
        assert await store.unfolded() is None
        assert await store.states() == []
    finally:
        await store.close()
