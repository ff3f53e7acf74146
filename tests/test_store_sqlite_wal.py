"""The SQLite WAL on a small volume: bounded while it fills, given back once space is freed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from alerthooks.store import Delivery, StoreError
from alerthooks.store._sqlite_writer import JOURNAL_SIZE_LIMIT, WAL_AUTOCHECKPOINT_PAGES
from alerthooks.store.sqlite import SQLiteStore

BODY = 16 * 1024  # about what a queued event adds, as measured on a full volume


@pytest.fixture
def volume() -> Iterator[Path]:
    """A fresh 2 MiB tmpfs, unmounted afterwards."""
    where = Path(tempfile.mkdtemp(prefix="alerthooks-wal-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)
        where.rmdir()


def delivery(event_id: str) -> Delivery:
    body = os.urandom(BODY // 2).hex().encode()  # JSON-safe and incompressible
    return Delivery("stripe", event_id, "x", body, datetime.now(timezone.utc), ("a",))


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def wait_until(condition: Callable[[], bool], timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


async def test_wal_on_a_full_small_volume_stays_bounded_and_recovers(volume: Path) -> None:
    filler = volume / "filler"
    filler.write_bytes(b"\0" * (512 * 1024))
    wal = volume / "inbox.db-wal"
    url = f"sqlite:///{volume}/inbox.db"
    store = SQLiteStore(url)
    acknowledged: list[str] = []
    peak = 0
    full: StoreError | None = None
    try:
        await store.open()
        for i in range(1000):
            try:
                await store.begin(delivery(f"evt_{i}"), owner="web", lease=60, claim=False)
            except StoreError as exc:
                full = exc
                break
            acknowledged.append(f"evt_{i}")
            peak = max(peak, size(wal))
        assert full is not None and "full" in str(full), full
        # Bounded: the WAL never took the volume (unbounded, it grows to about 4 MiB first).
        bound = max(JOURNAL_SIZE_LIMIT, WAL_AUTOCHECKPOINT_PAGES * 4096) + 2 * BODY + 64 * 1024
        assert 0 < peak <= bound, (peak, bound)
        assert len(acknowledged) > 20

        filler.unlink()
        # Space is back: the WAL is checkpointed first, and new events are recorded again.
        for i in range(5):
            event_id = f"evt_after_{i}"
            await store.begin(delivery(event_id), owner="web", lease=60, claim=False)
            acknowledged.append(event_id)
        # Idle, the writer checkpoints and truncates the WAL.
        assert await asyncio.to_thread(wait_until, lambda: size(wal) == 0), size(wal)
    finally:
        await store.close()

    again = SQLiteStore(url)
    try:
        stored = await again.events(limit=10_000)
        assert sorted(e.event_id for e in stored) == sorted(acknowledged)
    finally:
        await again.close()
