"""The SQLite group-commit engine alone, on a plain table: batching, one fsync per batch, errors
handed to each waiter, shutdown, and the WAL checkpoints."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from alerthooks.store import StoreError
from alerthooks.store._sqlite_writer import GroupCommitWriter


class Traced:
    """Opens the test database and records every statement the writer's connection runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.statements: list[str] = []
        self.opened = 0

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=0.2, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT UNIQUE)")
        conn.set_trace_callback(self.statements.append)
        self.opened += 1
        return conn

    def commits(self) -> list[str]:
        """The synchronous mode of each COMMIT so far (FULL: it waited for the fsync)."""
        mode, modes = "FULL", []
        for statement in self.statements:
            if statement.startswith("PRAGMA synchronous="):
                mode = statement.split("=", 1)[1]
            elif statement == "COMMIT":
                modes.append(mode)
        return modes


@pytest.fixture
def traced(tmp_path: Path) -> Traced:
    return Traced(tmp_path / "engine.db")


@pytest.fixture
async def writer(traced: Traced) -> AsyncIterator[GroupCommitWriter]:
    engine = GroupCommitWriter(traced.connect, label=str(traced.path), idle_checkpoint=3600)
    yield engine
    await engine.close()


def insert(value: str) -> Callable[[sqlite3.Connection], int]:
    def op(conn: sqlite3.Connection) -> int:
        cur = conn.execute("INSERT INTO t (v) VALUES (?)", (value,))
        assert cur.lastrowid is not None
        return cur.lastrowid

    return op


def wal_size(wal: Path) -> int:
    return wal.stat().st_size


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def rows(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [v for (v,) in conn.execute("SELECT v FROM t ORDER BY k")]
    finally:
        conn.close()


async def hold_writer(writer: GroupCommitWriter) -> tuple[asyncio.Future[None], threading.Event]:
    """Occupy the writer thread with an operation until the returned event is set, so what is
    queued meanwhile forms the next batch."""
    started, release = threading.Event(), threading.Event()

    def blocking(conn: sqlite3.Connection) -> None:
        started.set()
        release.wait(10)

    held = asyncio.ensure_future(writer.submit(blocking))
    assert await asyncio.to_thread(started.wait, 10)
    return held, release


async def test_operations_queued_together_share_one_commit(
    writer: GroupCommitWriter, traced: Traced
) -> None:
    await writer.submit(lambda conn: None)
    traced.statements.clear()
    held, release = await hold_writer(writer)
    pending = [asyncio.ensure_future(writer.submit(insert(f"v{i}"))) for i in range(20)]
    await asyncio.sleep(0)  # every submit has queued its operation
    release.set()
    await held
    keys = await asyncio.gather(*pending)
    assert len(set(keys)) == 20
    assert traced.commits() == ["FULL", "FULL"]  # the held batch, then all twenty at once
    assert rows(traced.path) == [f"v{i}" for i in range(20)]


async def test_only_non_durable_operations_skip_the_fsync(
    writer: GroupCommitWriter, traced: Traced
) -> None:
    await writer.submit(lambda conn: None)
    held, release = await hold_writer(writer)
    light = asyncio.ensure_future(writer.submit(insert("light"), durable=False))
    durable = asyncio.ensure_future(writer.submit(insert("durable")))
    await asyncio.sleep(0)
    traced.statements.clear()
    release.set()
    await asyncio.gather(held, light, durable)
    # The held batch commits while the mode is FULL; then the light one alone, unsynced, first.
    assert traced.commits() == ["FULL", "NORMAL", "FULL"]
    assert rows(traced.path) == ["light", "durable"]


async def test_a_failing_operation_fails_alone_and_the_rest_commit(
    writer: GroupCommitWriter, traced: Traced
) -> None:
    await writer.submit(insert("taken"))

    def boom(conn: sqlite3.Connection) -> None:
        raise ValueError("not this one")

    held, release = await hold_writer(writer)
    ok1 = asyncio.ensure_future(writer.submit(insert("a")))
    bad = asyncio.ensure_future(writer.submit(boom))
    dup = asyncio.ensure_future(writer.submit(insert("taken")))  # a constraint violation
    ok2 = asyncio.ensure_future(writer.submit(insert("b")))
    await asyncio.sleep(0)
    release.set()
    await held
    results = await asyncio.gather(ok1, bad, dup, ok2, return_exceptions=True)
    assert isinstance(results[0], int) and isinstance(results[3], int)
    assert isinstance(results[1], ValueError) and str(results[1]) == "not this one"
    assert isinstance(results[2], StoreError) and "UNIQUE constraint failed" in str(results[2])
    assert rows(traced.path) == ["taken", "a", "b"]


async def test_a_database_failure_reaches_every_waiter_and_the_writer_recovers(
    writer: GroupCommitWriter, traced: Traced
) -> None:
    await writer.submit(lambda conn: None)
    blocker = sqlite3.connect(traced.path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        results = await asyncio.gather(
            *(writer.submit(insert(f"v{i}")) for i in range(5)), return_exceptions=True
        )
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert all(isinstance(r, StoreError) and "locked" in str(r) for r in results), results
    assert await writer.submit(insert("after")) > 0
    assert rows(traced.path) == ["after"]
    assert traced.opened == 1  # a lock is not a broken connection


async def test_an_unexpected_failure_of_the_engine_fails_the_batch_not_the_thread(
    writer: GroupCommitWriter, traced: Traced
) -> None:
    await writer.submit(lambda conn: None)
    original = writer._run_batch

    def broken(batch: list) -> None:  # type: ignore[type-arg]
        writer._run_batch = original  # type: ignore[method-assign]
        raise RuntimeError("bug")

    writer._run_batch = broken  # type: ignore[method-assign]
    with pytest.raises(StoreError, match="RuntimeError: bug"):
        await asyncio.wait_for(writer.submit(insert("lost")), 5)
    assert await asyncio.wait_for(writer.submit(insert("kept")), 5) > 0
    assert rows(traced.path) == ["kept"]


async def test_close_finishes_queued_work_then_stops_and_a_submit_restarts(
    traced: Traced,
) -> None:
    writer = GroupCommitWriter(traced.connect, label="t", idle_checkpoint=3600)
    queued = [asyncio.ensure_future(writer.submit(insert(f"v{i}"))) for i in range(50)]
    await asyncio.sleep(0)
    thread = writer._thread
    await writer.close()
    assert all(f.done() and not f.cancelled() and f.exception() is None for f in queued)
    assert thread is not None and not thread.is_alive() and writer.conn is None
    assert len(rows(traced.path)) == 50
    await writer.close()  # idempotent
    assert await writer.submit(insert("again")) > 0
    await writer.close()
    assert rows(traced.path)[-1] == "again"


async def test_an_idle_writer_checkpoints_and_truncates_the_wal(traced: Traced) -> None:
    writer = GroupCommitWriter(traced.connect, label="t", idle_checkpoint=0.05)
    try:
        await asyncio.gather(*(writer.submit(insert("x" * 500 + str(i))) for i in range(200)))
        wal = Path(f"{traced.path}-wal")
        assert wal_size(wal) > 0
        assert await asyncio.to_thread(wait_until, lambda: wal_size(wal) == 0)
        assert "PRAGMA wal_checkpoint(TRUNCATE)" in traced.statements
        assert len(rows(traced.path)) == 200
    finally:
        await writer.close()
