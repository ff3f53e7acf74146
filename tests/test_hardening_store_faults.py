"""Store failures: while the database is unavailable the receiver answers 503 (so the provider
retries) and never 2xx, and it recovers by itself, without a restart, when the database returns.

SQLite: a database locked by another writer, a location that cannot be written, a file that is
not a database. Postgres: a closed port (a loopback TCP proxy taken away and brought back, which
also resets every pooled connection) and backends terminated by the server. Every answer that
was 2xx is checked against a fresh connection to the database afterwards, and every recorded
event's handler ran exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from alerthooks import AlertEvent
from alerthooks.store import open_store
from alerthooks.testing import stripe_alert_triggered, stripe_signature_header

from .conftest import STRIPE_SECRET
from .helpers import make_hooks, wait_until
from .hostile import TcpProxy, asgi_call
from .stores import POSTGRES_URL, postgres_schema

MODES = ["inline", "queued"]


class _Receiver:
    """An AlertHooks on ``url`` with one handler that counts its runs per event."""

    def __init__(self, url: str, mode: str) -> None:
        self.url = url
        self.mode = mode
        self.hooks = make_hooks(
            url,
            mode=mode,
            worker=False,
            retry_backoff=0.01,
            retry_backoff_max=0.05,
        )
        self.ran: Counter[str] = Counter()
        self.accepted: set[str] = set()
        self.answers: list[tuple[str, int]] = []

        @self.hooks.on("*")
        def count(event: AlertEvent) -> None:
            self.ran[event.id] += 1

    async def deliver(self, payload: dict[str, Any]) -> int:
        body = json.dumps(payload).encode()
        header = stripe_signature_header(body, STRIPE_SECRET).encode()
        status, _, _ = await asgi_call(
            self.hooks, path="/stripe", headers=[(b"stripe-signature", header)], chunks=[body]
        )
        self.answers.append((payload["id"], status))
        if 200 <= status < 300:
            self.accepted.add(payload["id"])
        return status

    async def deliver_until_accepted(self, payload: dict[str, Any], within: float = 15.0) -> int:
        """Redeliver like a provider until 2xx; return how many attempts it took."""
        deadline = time.monotonic() + within
        attempts = 0
        while True:
            attempts += 1
            status = await self.deliver(payload)
            if 200 <= status < 300:
                return attempts
            assert status == 503, status
            assert time.monotonic() < deadline, "the receiver did not recover"
            await asyncio.sleep(0.1)

    async def check(self) -> None:
        """Every 2xx is durable (seen through a new connection) and handled exactly once."""
        if self.mode == "queued":
            await self.hooks.drain(30)
        await self.hooks.shutdown()
        fresh = open_store(self.url)
        await fresh.open()
        try:
            for event_id in self.accepted:
                stored = await fresh.get("stripe", event_id)
                assert stored is not None, f"{event_id} got a 2xx but is not stored"
                assert [o.status for o in stored.outcomes] == ["done"]
        finally:
            await fresh.close()
        assert {e: n for e, n in self.ran.items() if n != 1} == {}
        assert set(self.ran) == self.accepted


def _event() -> dict[str, Any]:
    return stripe_alert_triggered(id=f"evt_fault_{uuid.uuid4().hex[:12]}")


async def _all_503(receiver: _Receiver, count: int = 3) -> None:
    for _ in range(count):
        assert await receiver.deliver(_event()) == 503


# -- SQLite ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_sqlite_locked_by_another_writer_is_503_then_recovers(
    tmp_path: Path, mode: str
) -> None:
    path = tmp_path / "inbox.db"
    receiver = _Receiver(f"sqlite:///{path}?busy_timeout=0.2", mode)
    await receiver.hooks.startup()
    assert await receiver.deliver(_event()) == 200
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        held = _event()
        assert await receiver.deliver(held) == 503
        await _all_503(receiver)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert await receiver.deliver_until_accepted(held) <= 2
    assert await receiver.deliver(_event()) == 200
    await receiver.check()


@pytest.mark.parametrize("mode", MODES)
async def test_sqlite_location_not_writable_is_503_then_recovers(tmp_path: Path, mode: str) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the database directory should be")
    receiver = _Receiver(f"sqlite:///{blocker}/inbox.db", mode)
    await receiver.hooks.startup()  # logs the failure, does not raise
    held = _event()
    assert await receiver.deliver(held) == 503
    await _all_503(receiver)
    blocker.unlink()
    assert await receiver.deliver_until_accepted(held) == 1
    await receiver.check()


@pytest.mark.parametrize("mode", MODES)
async def test_sqlite_file_that_is_not_a_database_is_503_then_recovers(
    tmp_path: Path, mode: str
) -> None:
    path = tmp_path / "inbox.db"
    path.write_bytes(b"this is not an SQLite database" * 200)
    receiver = _Receiver(f"sqlite:///{path}", mode)
    await receiver.hooks.startup()
    held = _event()
    assert await receiver.deliver(held) == 503
    await _all_503(receiver)
    path.unlink()  # the operator restores the database
    assert await receiver.deliver_until_accepted(held) == 1
    await receiver.check()


# -- Postgres ----------------------------------------------------------------------------------


def _through(url: str, port: int, **params: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    netloc_text = f"{netloc[0]}@{host}" if len(netloc) == 2 else host
    query = "&".join([p for p in [parts.query, *(f"{k}={v}" for k, v in params.items())] if p])
    return urlunsplit(parts._replace(netloc=netloc_text, query=query))


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with postgres_schema() as url:
        yield url


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    assert POSTGRES_URL
    target = urlsplit(POSTGRES_URL)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    yield proxy
    await proxy.stop()


@pytest.mark.parametrize("mode", MODES)
async def test_postgres_going_away_is_503_then_recovers(
    pg_url: str, proxy: TcpProxy, mode: str
) -> None:
    await proxy.start()
    receiver = _Receiver(_through(pg_url, proxy.port), mode)
    await receiver.hooks.startup()
    assert await receiver.deliver(_event()) == 200
    await proxy.stop()  # every pooled connection is reset and the port refuses
    held = _event()
    assert await receiver.deliver(held) == 503
    await _all_503(receiver)
    await proxy.start()
    assert await receiver.deliver_until_accepted(held) <= 3
    assert await receiver.deliver(_event()) == 200
    await receiver.check()


@pytest.mark.parametrize("mode", MODES)
async def test_postgres_on_a_closed_port_at_startup_is_503_then_recovers(
    pg_url: str, proxy: TcpProxy, mode: str
) -> None:
    await proxy.start()
    await proxy.stop()  # reserve a port number, then leave it closed
    receiver = _Receiver(_through(pg_url, proxy.port), mode)
    await receiver.hooks.startup()  # logs the failure, does not raise
    held = _event()
    assert await receiver.deliver(held) == 503
    await _all_503(receiver)
    await proxy.start()
    assert await receiver.deliver_until_accepted(held) == 1
    await receiver.check()


@pytest.mark.parametrize("mode", MODES)
async def test_postgres_backends_terminated_recovers_and_never_acks_unrecorded(
    pg_url: str, mode: str
) -> None:
    assert POSTGRES_URL
    app_name = f"ah_fault_{uuid.uuid4().hex[:10]}"
    target = urlsplit(POSTGRES_URL)
    receiver = _Receiver(_through(pg_url, target.port or 5432, application_name=app_name), mode)
    await receiver.hooks.startup()
    assert await receiver.deliver(_event()) == 200
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        for _ in range(3):
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1",
                app_name,
            )
            assert killed >= 1
            # Answers right after the kill may be 503 (the pool finds its connections dead) but
            # a 2xx is only given for a recorded event; the pool reconnects by itself.
            assert await receiver.deliver_until_accepted(_event()) <= 3
    finally:
        await admin.close()
    await receiver.check()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_queued_worker_survives_an_outage_and_resumes_by_itself(
    backend: str, tmp_path: Path
) -> None:
    """The worker keeps running through the outage (no drain, no restart) and handles what
    was accepted before and after it once the database is back."""
    async with contextlib.AsyncExitStack() as stack:
        if backend == "sqlite":
            path = tmp_path / "inbox.db"
            url = f"sqlite:///{path}?busy_timeout=0.2"
        else:
            pg = await stack.enter_async_context(postgres_schema())
            target = urlsplit(POSTGRES_URL or "")
            proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
            stack.push_async_callback(proxy.stop)
            await proxy.start()
            url = _through(pg, proxy.port)
        receiver = _Receiver(url, "queued")
        receiver.hooks.run_worker = True
        receiver.hooks.worker.poll_interval = 0.05
        await receiver.hooks.startup()
        before = _event()
        assert await receiver.deliver(before) == 200
        # Handled and its outcome recorded, before the database goes away.
        await wait_until(
            lambda: receiver.ran[before["id"]] == 1 and receiver.hooks.worker.recorded == 1,
            within=20,
            what="the worker to record the first event",
        )
        lock = None
        if backend == "sqlite":
            lock = sqlite3.connect(path, isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")
        else:
            await proxy.stop()
        await _all_503(receiver)
        await asyncio.sleep(0.3)  # the worker polls the unavailable store meanwhile
        if lock is not None:
            lock.execute("ROLLBACK")
            lock.close()
        else:
            await proxy.start()
        after = _event()
        await receiver.deliver_until_accepted(after)
        await wait_until(
            lambda: receiver.ran[after["id"]] == 1, within=20, what="the worker to resume by itself"
        )
        assert receiver.hooks.worker.started
        await receiver.check()
