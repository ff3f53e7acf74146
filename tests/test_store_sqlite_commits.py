"""Which SQLite commits wait for an fsync: every one an answer depends on."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from alerthooks.store import Delivery
from alerthooks.store.sqlite import SQLiteStore


def _delivery(event_id: str, *handlers: str) -> Delivery:
    return Delivery(
        "stripe", event_id, "billing.alert.triggered", b"{}", datetime.now(timezone.utc), handlers
    )


class _Commits:
    """The synchronous mode of each COMMIT the store's connection ran (FULL: fsynced)."""

    def __init__(self, store: SQLiteStore) -> None:
        self.statements: list[str] = []
        conn = store._writer.conn
        assert conn is not None
        # The store only switches the mode when it changes: start from the connection's own.
        (level,) = conn.execute("PRAGMA synchronous").fetchone()
        self.mode = {1: "NORMAL", 2: "FULL"}[level]
        conn.set_trace_callback(self.statements.append)

    def take(self) -> list[str]:
        modes = []
        for statement in self.statements:
            if statement.startswith("PRAGMA synchronous="):
                self.mode = statement.split("=", 1)[1]
            elif statement == "COMMIT":
                modes.append(self.mode)
        self.statements.clear()
        return modes


async def test_only_a_begin_that_leases_handlers_skips_the_fsync(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path}/commits.db")
    await store.open()
    try:
        commits = _Commits(store)
        await store.begin(_delivery("evt_1", "a"), owner="w", lease=60)
        assert commits.take() == ["NORMAL"]  # nothing is answered before finish
        await store.finish("stripe", "evt_1", {"a": None}, owner="w")
        assert commits.take() == ["FULL"]  # the answer waits for this one
        await store.begin(_delivery("evt_2", "a"), owner="w", lease=60, claim=False)
        assert commits.take() == ["FULL"]  # queued mode answers right after begin
        await store.begin(_delivery("evt_3"), owner="w", lease=60)
        assert commits.take() == ["FULL"]  # no handler: acknowledged right after begin
    finally:
        await store.close()


async def test_a_finished_event_survives_reopening(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/reopen.db"
    store = SQLiteStore(url)
    await store.open()
    await store.begin(_delivery("evt_1", "a", "b"), owner="w", lease=60)
    await store.finish("stripe", "evt_1", {"a": None, "b": "boom"}, owner="w")
    await store.close()
    again = SQLiteStore(url)
    await again.open()
    try:
        stored = await again.get("stripe", "evt_1")
        assert stored is not None
        assert {o.handler: (o.status, o.attempts) for o in stored.outcomes} == {
            "a": ("done", 1),
            "b": ("failed", 1),
        }
    finally:
        await again.close()
