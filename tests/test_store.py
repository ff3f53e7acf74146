"""One behavioural suite for every store backend: memory, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest

from alerthooks.store import SCHEMA_VERSION, Delivery, Rejection, Store, StoreError, open_store
from alerthooks.store.memory import MemoryStore
from alerthooks.store.postgres import PostgresStore
from alerthooks.store.sqlite import SQLiteStore

from .conftest import free_port
from .stores import BACKENDS, DURABLE, POSTGRES_URL, postgres_schema, store_url

Factory = Callable[[], Store]


@pytest.fixture(params=BACKENDS)
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    """Makes store instances on one fresh backend: several instances act as several replicas
    (the memory store has only one, shared)."""
    async with store_url(request.param, tmp_path) as url:
        made: list[Store] = []
        shared = MemoryStore() if request.param == "memory" else None

        def make() -> Store:
            if shared is not None:
                return shared
            made.append(open_store(url))
            return made[-1]

        yield make
        for store in made:
            await store.close()


@pytest.fixture
async def store(stores: Factory) -> Store:
    store = stores()
    await store.open()
    return store


def delivery(event_id: str = "evt_1", *handlers: str, body: bytes = b'{"id": 1}') -> Delivery:
    return Delivery(
        provider="stripe",
        event_id=event_id,
        event_type="billing.alert.triggered",
        body=body,
        received_at=datetime.now(timezone.utc),
        handlers=handlers or ("a", "b"),
    )


def statuses(stored: object) -> dict[str, tuple[str, int]]:
    return {o.handler: (o.status, o.attempts) for o in stored.outcomes}  # type: ignore[attr-defined]


async def test_new_event_is_recorded_and_every_handler_claimed(store: Store) -> None:
    begun = await store.begin(delivery(body=b'{"raw": true}'), owner="w1", lease=60)
    assert (begun.new, sorted(begun.claimed), begun.busy) == (True, ["a", "b"], ())
    stored = await store.get("stripe", "evt_1")
    assert stored is not None
    assert (stored.body, stored.event_type) == (b'{"raw": true}', "billing.alert.triggered")
    assert statuses(stored) == {"a": ("running", 0), "b": ("running", 0)}
    assert await store.get("stripe", "evt_missing") is None
    assert await store.get("chargebee", "evt_1") is None


async def test_duplicate_under_a_live_lease_is_busy(store: Store) -> None:
    await store.begin(delivery(), owner="w1", lease=60)
    again = await store.begin(delivery(), owner="w2", lease=60)
    assert (again.new, again.claimed, sorted(again.busy)) == (False, (), ["a", "b"])


async def test_redelivery_after_success_claims_nothing(store: Store) -> None:
    await store.begin(delivery(), owner="w1", lease=60)
    await store.finish("stripe", "evt_1", {"a": None, "b": None}, owner="w1")
    again = await store.begin(delivery(), owner="w2", lease=60)
    assert (again.new, again.claimed, again.busy) == (False, (), ())
    assert statuses(await store.get("stripe", "evt_1")) == {"a": ("done", 1), "b": ("done", 1)}


async def test_failed_handler_alone_is_claimed_again(store: Store) -> None:
    await store.begin(delivery(), owner="w1", lease=60)
    await store.finish("stripe", "evt_1", {"a": None, "b": "RuntimeError: down"}, owner="w1")
    stored = await store.get("stripe", "evt_1")
    assert stored is not None
    failed = next(o for o in stored.outcomes if o.handler == "b")
    assert (failed.status, failed.attempts, failed.last_error) == (
        "failed",
        1,
        "RuntimeError: down",
    )
    again = await store.begin(delivery(), owner="w2", lease=60)
    assert (again.new, again.claimed, again.busy) == (False, ("b",), ())


async def test_expired_lease_is_claimed_again(store: Store) -> None:
    await store.begin(delivery(), owner="dead-worker", lease=0)
    again = await store.begin(delivery(), owner="w2", lease=60)
    assert sorted(again.claimed) == ["a", "b"]


async def test_failure_from_a_worker_that_lost_its_lease_is_ignored(store: Store) -> None:
    await store.begin(delivery(), owner="slow", lease=0)
    await store.begin(delivery(), owner="w2", lease=60)
    # Taking over the expired lease counted the slow run as one that died.
    assert statuses(await store.get("stripe", "evt_1"))["a"] == ("running", 1)
    await store.finish("stripe", "evt_1", {"a": "late failure"}, owner="slow")
    assert statuses(await store.get("stripe", "evt_1"))["a"] == ("running", 1)
    await store.finish("stripe", "evt_1", {"a": None}, owner="slow")
    assert statuses(await store.get("stripe", "evt_1"))["a"] == ("done", 2)


async def test_extend_renews_only_the_owners_running_leases(store: Store) -> None:
    await store.begin(delivery("evt_1"), owner="w1", lease=0)
    await store.extend("stripe", "evt_1", ["a"], owner="w1", lease=60)
    await store.extend("stripe", "evt_1", ["b"], owner="someone-else", lease=60)
    again = await store.begin(delivery("evt_1"), owner="w2", lease=60)
    assert (again.claimed, again.busy) == (("b",), ("a",))
    await store.finish("stripe", "evt_1", {"a": None}, owner="w1")
    await store.extend("stripe", "evt_1", ["a"], owner="w1", lease=60)
    assert statuses(await store.get("stripe", "evt_1"))["a"] == ("done", 1)


async def test_new_handler_on_redelivery_gets_an_outcome(store: Store) -> None:
    await store.begin(delivery("evt_1", "a"), owner="w1", lease=60)
    await store.finish("stripe", "evt_1", {"a": None}, owner="w1")
    again = await store.begin(delivery("evt_1", "a", "c"), owner="w1", lease=60)
    assert again.claimed == ("c",)


async def test_unclaimed_begin_leaves_work_for_claim(store: Store) -> None:
    begun = await store.begin(delivery(body=b"payload"), owner="web", lease=60, claim=False)
    assert (begun.new, begun.claimed, begun.busy) == (True, (), ())
    assert statuses(await store.get("stripe", "evt_1")) == {
        "a": ("pending", 0),
        "b": ("pending", 0),
    }
    assert await store.next_due() == 0
    claims = await store.claim(owner="w1", lease=60, limit=10)
    assert sorted((c.event_id, c.handler, c.body, c.attempts) for c in claims) == [
        ("evt_1", "a", b"payload", 0),
        ("evt_1", "b", b"payload", 0),
    ]
    assert await store.claim(owner="w2", lease=60, limit=10) == []
    duplicate = await store.begin(delivery(), owner="web", lease=60, claim=False)
    assert (duplicate.new, duplicate.claimed) == (False, ())


async def test_claim_respects_limit_and_oldest_due_first(store: Store) -> None:
    for i in range(5):
        await store.begin(delivery(f"evt_{i}", "a"), owner="web", lease=60, claim=False)
    first = await store.claim(owner="w1", lease=60, limit=2)
    assert [c.event_id for c in first] == ["evt_0", "evt_1"]
    rest = await store.claim(owner="w1", lease=60, limit=10)
    assert [c.event_id for c in rest] == ["evt_2", "evt_3", "evt_4"]


async def test_failure_waits_for_its_backoff(store: Store) -> None:
    await store.begin(delivery("evt_1", "a"), owner="web", lease=60, claim=False)
    assert len(await store.claim(owner="w1", lease=60, limit=10)) == 1
    await store.finish("stripe", "evt_1", {"a": "boom"}, owner="w1", retry_in={"a": 60})
    assert await store.claim(owner="w1", lease=60, limit=10) == []
    due = await store.next_due()
    assert due is not None and 55 < due <= 60
    stored = await store.get("stripe", "evt_1")
    assert stored is not None and stored.outcomes[0].due_at is not None
    assert stored.outcomes[0].due_at > datetime.now(timezone.utc)
    await store.finish("stripe", "evt_1", {"a": "x"}, owner="w1")  # no lease: ignored
    assert statuses(await store.get("stripe", "evt_1")) == {"a": ("failed", 1)}


async def test_due_failure_is_claimed_with_its_attempts(store: Store) -> None:
    await store.begin(delivery("evt_1", "a"), owner="web", lease=60, claim=False)
    await store.claim(owner="w1", lease=60, limit=10)
    await store.finish("stripe", "evt_1", {"a": "boom"}, owner="w1", retry_in={"a": 0})
    (claim,) = await store.claim(owner="w1", lease=60, limit=10)
    assert claim.attempts == 1


async def test_expired_claims_are_claimed_again(store: Store) -> None:
    await store.begin(delivery("evt_1", "a"), owner="web", lease=60, claim=False)
    assert len(await store.claim(owner="crashed", lease=0, limit=10)) == 1
    (again,) = await store.claim(owner="w2", lease=60, limit=10)
    assert (again.event_id, again.handler) == ("evt_1", "a")


async def test_dead_is_listed_and_replayed(store: Store) -> None:
    for event_id in ("evt_1", "evt_2", "evt_3"):
        await store.begin(delivery(event_id, "a"), owner="web", lease=60, claim=False)
    await store.claim(owner="w1", lease=60, limit=10)
    await store.finish("stripe", "evt_1", {"a": "gone"}, owner="w1", dead=["a"])
    await store.finish("stripe", "evt_2", {"a": "gone"}, owner="w1", dead=["a"])
    await store.finish("stripe", "evt_3", {"a": None}, owner="w1")
    dead = await store.events(status="dead")
    assert [e.event_id for e in dead] == ["evt_2", "evt_1"]
    assert dead[0].outcomes[0].last_error == "gone"
    assert await store.claim(owner="w1", lease=60, limit=10) == []
    assert await store.next_due() is None
    assert await store.replay(dead=True) == 2
    assert await store.events(status="dead") == []
    claims = await store.claim(owner="w1", lease=60, limit=10)
    assert sorted((c.event_id, c.attempts) for c in claims) == [("evt_1", 0), ("evt_2", 0)]


async def test_replay_by_event_id_resets_only_failed_and_dead(store: Store) -> None:
    await store.begin(delivery("evt_1", "a", "b", "c"), owner="w1", lease=60)
    await store.finish(
        "stripe",
        "evt_1",
        {"a": None, "b": "x", "c": "y"},
        owner="w1",
        retry_in={"b": 600},
        dead=["c"],
    )
    await store.begin(delivery("evt_2", "a"), owner="w1", lease=60)
    await store.finish("stripe", "evt_2", {"a": "z"}, owner="w1", dead=["a"])
    assert await store.replay(["evt_1", "evt_unknown"]) == 2
    assert statuses(await store.get("stripe", "evt_1")) == {
        "a": ("done", 1),
        "b": ("pending", 0),
        "c": ("pending", 0),
    }
    assert statuses(await store.get("stripe", "evt_2")) == {"a": ("dead", 1)}
    assert await store.replay(["evt_1"]) == 0


async def test_prune_removes_only_old_events_whose_handlers_are_done(store: Store) -> None:
    now = datetime.now(timezone.utc)
    old = now - timedelta(days=40)
    for event_id in ("evt_old_done", "evt_old_failed", "evt_new_done"):
        received = old if event_id.startswith("evt_old") else now
        await store.begin(
            delivery(event_id, "a")._replace(received_at=received), owner="w", lease=60
        )
    none = delivery("evt_old_none")._replace(received_at=old, handlers=())
    await store.begin(none, owner="w", lease=60)
    await store.finish("stripe", "evt_old_done", {"a": None}, owner="w")
    await store.finish("stripe", "evt_old_failed", {"a": "x"}, owner="w")
    await store.finish("stripe", "evt_new_done", {"a": None}, owner="w")
    assert await store.prune(before=now - timedelta(days=30)) == 2
    assert await store.get("stripe", "evt_old_done") is None
    assert await store.get("stripe", "evt_old_none") is None
    assert [e.event_id for e in await store.events()] == ["evt_new_done", "evt_old_failed"]
    assert await store.prune(before=now - timedelta(days=30)) == 0
    again = await store.begin(delivery("evt_old_done", "a"), owner="w", lease=60)
    assert (again.new, again.claimed) == (True, ("a",))


async def test_prune_goes_in_batches(store: Store) -> None:
    old = datetime.now(timezone.utc) - timedelta(days=40)
    for i in range(3):
        no_handlers = delivery(f"evt_{i}")._replace(received_at=old, handlers=())
        await store.begin(no_handlers, owner="w", lease=60)
    cutoff = datetime.now(timezone.utc)
    assert [await store.prune(before=cutoff, limit=2) for _ in range(3)] == [2, 1, 0]


async def test_events_are_newest_first_with_limit_and_status(store: Store) -> None:
    for i in range(4):
        await store.begin(delivery(f"evt_{i}", "a"), owner="w1", lease=60)
    await store.finish("stripe", "evt_1", {"a": "boom"}, owner="w1")
    assert [e.event_id for e in await store.events()] == ["evt_3", "evt_2", "evt_1", "evt_0"]
    assert [e.event_id for e in await store.events(limit=2)] == ["evt_3", "evt_2"]
    assert [e.event_id for e in await store.events(status="failed")] == ["evt_1"]
    assert await store.events(status="pending") == []


async def test_event_without_handlers_is_recorded(store: Store) -> None:
    begun = await store.begin(delivery("evt_1", *()), owner="w1", lease=60)
    assert begun.new
    empty = Delivery("chargebee", "ev_9", None, b"{}", datetime.now(timezone.utc), ())
    assert (await store.begin(empty, owner="w1", lease=60)).claimed == ()
    assert not (await store.begin(empty, owner="w1", lease=60)).new
    stored = await store.get("chargebee", "ev_9")
    assert stored is not None and stored.outcomes == () and stored.event_type is None


async def test_concurrent_duplicates_on_two_replicas_claim_once(stores: Factory) -> None:
    one, two = stores(), stores()
    for attempt in range(10):
        d = delivery(f"evt_{attempt}")
        results = await asyncio.gather(
            one.begin(d, owner="r1", lease=60), two.begin(d, owner="r2", lease=60)
        )
        claimed = [name for begun in results for name in begun.claimed]
        assert sorted(claimed) == ["a", "b"]
        assert [b.new for b in results].count(True) == 1


async def test_concurrent_claims_on_two_replicas_never_overlap(stores: Factory) -> None:
    one, two = stores(), stores()
    for i in range(30):
        await one.begin(delivery(f"evt_{i}", "a", "b"), owner="web", lease=60, claim=False)

    async def drain(store: Store, owner: str) -> list[tuple[str, str]]:
        got: list[tuple[str, str]] = []
        while batch := await store.claim(owner=owner, lease=60, limit=4):
            got += [(c.event_id, c.handler) for c in batch]
        return got

    results = await asyncio.gather(*(drain(s, f"w{i}") for i, s in enumerate([one, two] * 2)))
    everything = [pair for got in results for pair in got]
    assert len(everything) == len(set(everything)) == 60


@pytest.mark.parametrize("backend", DURABLE)
async def test_events_survive_reopening(backend: str, tmp_path: Path) -> None:
    async with store_url(backend, tmp_path) as url:
        first = open_store(url)
        await first.begin(delivery(), owner="w1", lease=60)
        await first.close()
        second = open_store(url)
        try:
            stored = await second.get("stripe", "evt_1")
            assert stored is not None and statuses(stored) == {
                "a": ("running", 0),
                "b": ("running", 0),
            }
        finally:
            await second.close()


def test_open_store_picks_the_backend_from_the_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    sqlite_store = open_store(f"sqlite:///{tmp_path}/x.db")
    assert isinstance(sqlite_store, SQLiteStore) and sqlite_store.path == f"{tmp_path}/x.db"
    assert open_store("sqlite:///relative.db").path == "relative.db"  # type: ignore[attr-defined]
    pg = open_store("postgresql://u@h/db?schema=s1&sslmode=disable")
    assert isinstance(pg, PostgresStore) and pg.schema == "s1"
    monkeypatch.delenv("ALERTHOOKS_STORE", raising=False)
    assert open_store().path == "alerthooks.db"  # type: ignore[attr-defined]
    monkeypatch.setenv("ALERTHOOKS_STORE", "memory://")
    assert isinstance(open_store(), MemoryStore)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://localhost", "unsupported store URL scheme 'redis'"),
        ("sqlite://relative.db", "must look like sqlite:///path.db"),
        ("sqlite:///", "has no file path"),
        ("sqlite:///x.db?busy_timeout=soon", "busy_timeout must be seconds"),
        ("postgresql://h/db?schema=a;drop", "not a plain identifier"),
        ("postgresql://h/db?pool_size=many", "pool_size must be a whole number"),
    ],
)
def test_bad_store_url_is_one_clear_error(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_store(url)


async def test_sqlite_uses_wal_with_full_sync(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path}/w.db")
    await store.open()
    modes = await store._submit(
        lambda conn: (
            conn.execute("PRAGMA journal_mode").fetchone()[0],
            conn.execute("PRAGMA synchronous").fetchone()[0],
        )
    )
    await store.close()
    assert modes == ("wal", 2)  # 2 = FULL: every commit is fsynced


async def test_sqlite_locked_database_is_a_store_error_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    store = SQLiteStore(f"sqlite:///{path}?busy_timeout=0.1")
    await store.open()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    with pytest.raises(StoreError, match="locked"):
        await store.begin(delivery(), owner="w1", lease=60)
    blocker.execute("ROLLBACK")
    blocker.close()
    assert (await store.begin(delivery(), owner="w1", lease=60)).new
    await store.close()


async def test_sqlite_unopenable_file_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    store = SQLiteStore(f"sqlite:///{tmp_path}/dir.db")
    with pytest.raises(StoreError):
        await store.open()
    await store.close()


@pytest.mark.parametrize("backend", DURABLE)
async def test_newer_schema_version_is_refused(backend: str, tmp_path: Path) -> None:
    async with store_url(backend, tmp_path) as url:
        store = open_store(url)
        await store.open()
        await store.close()
        if backend == "sqlite":
            conn = sqlite3.connect(tmp_path / "inbox.db")
            conn.execute("UPDATE alerthooks_schema SET version = 99")
            conn.commit()
            conn.close()
        else:
            assert isinstance(store, PostgresStore) and POSTGRES_URL
            pg = await asyncpg.connect(POSTGRES_URL)
            await pg.execute(f'UPDATE "{store.schema}".alerthooks_schema SET version = 99')
            await pg.close()
        again = open_store(url)
        with pytest.raises(StoreError, match="schema version 99"):
            await again.open()
        await again.close()


async def test_postgres_unreachable_is_a_store_error() -> None:
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{free_port()}/test")
    started = time.monotonic()
    with pytest.raises(StoreError, match="postgres"):
        await store.begin(delivery(), owner="w1", lease=60)
    assert time.monotonic() - started < 5
    await store.close()


async def test_postgres_reconnects_after_its_connections_are_terminated() -> None:
    async with postgres_schema() as url:
        app_name = url.rsplit("=", 1)[-1]
        store = PostgresStore(f"{url}&application_name={app_name}")
        await store.begin(delivery("evt_1"), owner="w1", lease=60)
        assert POSTGRES_URL
        admin = await asyncpg.connect(POSTGRES_URL)
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1",
            app_name,
        )
        await admin.close()
        assert killed >= 1
        outcomes = []
        for i in range(5):
            try:
                outcomes.append(
                    (await store.begin(delivery(f"evt_{i + 2}"), owner="w", lease=60)).new
                )
            except StoreError:
                outcomes.append(False)
        assert outcomes[-1] is True and outcomes.count(True) >= 4
        await store.close()


def _hold_write_lock(path: Path, seconds: float) -> threading.Event:
    """Hold a write lock on ``path`` (still in rollback-journal mode, as while another process
    switches a fresh file to WAL) for ``seconds`` from a thread; the event is set once held."""
    held = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(seconds)
        conn.execute("ROLLBACK")
        conn.close()

    threading.Thread(target=hold, daemon=True).start()
    assert held.wait(5)
    return held


async def test_sqlite_fresh_file_being_switched_to_wal_by_another_process_waits(
    tmp_path: Path,
) -> None:
    path = tmp_path / "fresh.db"
    _hold_write_lock(path, 0.3)
    store = SQLiteStore(f"sqlite:///{path}?busy_timeout=5")
    try:
        await store.open()  # without the retry: "database is locked" at once
        assert (await store.begin(delivery(), owner="w1", lease=60)).new
    finally:
        await store.close()


def test_sqlite_many_stores_opening_one_fresh_file_at_once_all_succeed(tmp_path: Path) -> None:
    for attempt in range(25):
        url = f"sqlite:///{tmp_path}/fresh{attempt}.db"
        start = threading.Barrier(8)
        errors: list[BaseException] = []

        def open_one(
            url: str = url, start: threading.Barrier = start, errors: list[BaseException] = errors
        ) -> None:
            store = SQLiteStore(url)

            async def go() -> None:
                try:
                    await store.open()
                    await store.begin(delivery(f"evt_{threading.get_ident()}"), owner="w", lease=1)
                finally:
                    await store.close()

            start.wait()
            try:
                asyncio.run(go())
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_one) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [], f"attempt {attempt}: {errors[0]!r}"


def _open_message(url: str) -> str:
    """The StoreError message opening ``url`` gives."""
    store = SQLiteStore(url)
    try:
        asyncio.run(store.open())
    except StoreError as exc:
        return str(exc)
    finally:
        asyncio.run(store.close())
    return "opened"


def _open_message_as_nobody(url: str) -> str:
    """:func:`_open_message` in a forked child that dropped root, which may write anywhere."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgid(65534)
            os.setuid(65534)
            os.write(write, _open_message(url).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        message = pipe.read()
    os.waitpid(pid, 0)
    return message


def test_sqlite_unwritable_directory_names_the_path_and_permission() -> None:
    base = Path(tempfile.mkdtemp())
    try:
        base.chmod(0o755)
        locked = base / "locked"
        locked.mkdir(mode=0o555)
        url = f"sqlite:///{locked}/inbox.db"
        message = _open_message_as_nobody(url) if os.geteuid() == 0 else _open_message(url)
        assert message == (
            f"sqlite store {locked}/inbox.db: cannot open the database file: permission denied"
        )
    finally:
        shutil.rmtree(base)


async def test_sqlite_directory_in_place_of_the_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    store = SQLiteStore(f"sqlite:///{tmp_path}/dir.db")
    with pytest.raises(StoreError) as caught:
        await store.open()
    await store.close()
    assert str(caught.value) == (
        f"sqlite store {tmp_path}/dir.db: cannot open the database file: is a directory"
    )


def history(stored: object, handler: str) -> list[tuple[int, str | None]]:
    outcome = next(o for o in stored.outcomes if o.handler == handler)  # type: ignore[attr-defined]
    return [(a.number, a.error) for a in outcome.history]


async def test_history_keeps_every_attempt_across_replays(store: Store) -> None:
    started = datetime.now(timezone.utc) - timedelta(seconds=5)
    await store.begin(delivery("evt_1", "a"), owner="w1", lease=60)
    await store.finish("stripe", "evt_1", {"a": "first"}, owner="w1")
    await store.begin(delivery("evt_1", "a"), owner="w1", lease=60)
    await store.finish("stripe", "evt_1", {"a": "second"}, owner="w1", dead=["a"])
    assert await store.replay(dead=True) == 1
    stored = await store.get("stripe", "evt_1")
    assert statuses(stored) == {"a": ("pending", 0)}  # max_attempts counts from the replay
    assert history(stored, "a") == [(1, "first"), (2, "second")]
    (claim,) = await store.claim(owner="w2", lease=60, limit=10)
    assert claim.attempts == 0
    await store.finish("stripe", "evt_1", {"a": None}, owner="w2")
    await store.finish("stripe", "evt_1", {"a": None}, owner="w2")  # already done: not counted
    await store.finish("stripe", "evt_1", {"a": "late"}, owner="w1")  # lost its lease: ignored
    stored = await store.get("stripe", "evt_1")
    assert stored is not None and statuses(stored) == {"a": ("done", 1)}
    assert history(stored, "a") == [(1, "first"), (2, "second"), (3, None)]
    moments = [a.finished_at for a in stored.outcomes[0].history]
    assert moments == sorted(moments)
    assert started < moments[0] and moments[-1] < datetime.now(timezone.utc) + timedelta(seconds=5)
    (listed,) = await store.events(limit=1)
    assert listed.outcomes == stored.outcomes


async def test_replay_failed_resets_every_failed_handler_but_not_dead_or_done(store: Store) -> None:
    await store.begin(delivery("evt_1", "a", "b", "c"), owner="w1", lease=60)
    await store.finish(
        "stripe", "evt_1", {"a": None, "b": "x", "c": "y"}, owner="w1", retry_in={"b": 600}
    )
    await store.begin(delivery("evt_2", "a", "b"), owner="w1", lease=60)
    await store.finish("stripe", "evt_2", {"a": "z", "b": "gone"}, owner="w1", dead=["b"])
    assert await store.replay(failed=True) == 3
    assert statuses(await store.get("stripe", "evt_1")) == {
        "a": ("done", 1),
        "b": ("pending", 0),
        "c": ("pending", 0),
    }
    assert statuses(await store.get("stripe", "evt_2")) == {"a": ("pending", 0), "b": ("dead", 1)}
    assert await store.replay(failed=True) == 0
    assert sorted(
        (c.event_id, c.handler) for c in await store.claim(owner="w", lease=60, limit=9)
    ) == [
        ("evt_1", "b"),
        ("evt_1", "c"),
        ("evt_2", "a"),
    ]
    await store.finish("stripe", "evt_1", {"b": "again"}, owner="w")
    assert await store.replay(failed=True, dead=True) == 2  # evt_1/b failed, evt_2/b dead


_V1_SQLITE = """
CREATE TABLE alerthooks_schema (version INTEGER NOT NULL);
INSERT INTO alerthooks_schema VALUES (1);
CREATE TABLE alerthooks_events (seq INTEGER PRIMARY KEY, provider TEXT NOT NULL,
    event_id TEXT NOT NULL, event_type TEXT, body BLOB NOT NULL, received_at REAL NOT NULL,
    UNIQUE (event_id, provider));
CREATE TABLE alerthooks_outcomes (seq INTEGER NOT NULL REFERENCES alerthooks_events (seq),
    handler TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT, owner TEXT, lease_until REAL NOT NULL DEFAULT 0, due_at REAL NOT NULL,
    PRIMARY KEY (seq, handler)) WITHOUT ROWID;
CREATE INDEX alerthooks_outcomes_status ON alerthooks_outcomes (status, due_at);
INSERT INTO alerthooks_events VALUES (1, 'stripe', 'evt_old', 't', X'7B7D', 1700000000);
INSERT INTO alerthooks_outcomes VALUES (1, 'a', 'failed', 2, 'old error', NULL, 0, 1700000000);
"""

_V1_POSTGRES = [
    "CREATE TABLE alerthooks_schema (version integer NOT NULL)",
    "INSERT INTO alerthooks_schema VALUES (1)",
    "CREATE TABLE alerthooks_events (seq bigserial PRIMARY KEY, provider text NOT NULL,"
    " event_id text NOT NULL, event_type text, body bytea NOT NULL,"
    " received_at timestamptz NOT NULL, UNIQUE (provider, event_id))",
    "CREATE TABLE alerthooks_outcomes (provider text NOT NULL, event_id text NOT NULL,"
    " handler text NOT NULL, status text NOT NULL, attempts integer NOT NULL DEFAULT 0,"
    " last_error text, owner text, lease_until timestamptz,"
    " due_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (provider, event_id, handler))",
    "CREATE INDEX alerthooks_outcomes_status ON alerthooks_outcomes (status, due_at)",
    "CREATE INDEX alerthooks_outcomes_event ON alerthooks_outcomes (event_id)",
    "INSERT INTO alerthooks_events (provider, event_id, event_type, body, received_at)"
    " VALUES ('stripe', 'evt_old', 't', '\\x7b7d', now())",
    "INSERT INTO alerthooks_outcomes (provider, event_id, handler, status, attempts, last_error)"
    " VALUES ('stripe', 'evt_old', 'a', 'failed', 2, 'old error')",
]


@pytest.mark.parametrize("backend", DURABLE)
async def test_a_version_1_database_is_migrated_and_keeps_its_outcomes(
    backend: str, tmp_path: Path
) -> None:
    async with store_url(backend, tmp_path) as url:
        if backend == "sqlite":
            conn = sqlite3.connect(tmp_path / "inbox.db")
            conn.executescript(_V1_SQLITE)
            conn.close()
        else:
            assert POSTGRES_URL
            schema = url.rsplit("schema=", 1)[1]
            pg = await asyncpg.connect(POSTGRES_URL)
            await pg.execute(f'CREATE SCHEMA "{schema}"')
            await pg.execute(f'SET search_path = "{schema}"')
            for statement in _V1_POSTGRES:
                await pg.execute(statement)
            await pg.close()
        store = open_store(url)
        try:
            stored = await store.get("stripe", "evt_old")
            assert stored is not None and stored.body == b"{}"
            (old,) = stored.outcomes
            assert (old.status, old.attempts, old.last_error, old.history) == (
                "failed",
                2,
                "old error",
                (),
            )
            assert await store.replay(["evt_old"]) == 1
            (claim,) = await store.claim(owner="w", lease=60, limit=1)
            await store.finish("stripe", "evt_old", {"a": None}, owner="w")
            assert history(await store.get("stripe", "evt_old"), "a") == [(1, None)]
            assert claim.body == b"{}"
        finally:
            await store.close()
        if backend == "sqlite":
            conn = sqlite3.connect(tmp_path / "inbox.db")
            (version,) = conn.execute("SELECT version FROM alerthooks_schema").fetchone()
            conn.close()
        else:
            pg = await asyncpg.connect(POSTGRES_URL)
            version = await pg.fetchval(f'SELECT version FROM "{schema}".alerthooks_schema')
            await pg.close()
        assert version == SCHEMA_VERSION == 3


# -- searching and paging events ------------------------------------------------------------------


async def test_events_search_filter_and_page_by_cursor(store: Store) -> None:
    base = datetime.now(timezone.utc)
    for i in range(5):
        body = f'{{"id": "evt_{i}", "customer": "cus_{i % 2}"}}'.encode()
        await store.begin(
            Delivery(
                "chargebee" if i == 4 else "stripe",
                f"evt_{i}",
                "t",
                body,
                base + timedelta(seconds=i),
                ("a",),
            ),
            owner="w1",
            lease=60,
        )
    ids = [e.event_id for e in await store.events()]
    assert ids == ["evt_4", "evt_3", "evt_2", "evt_1", "evt_0"]
    assert [e.event_id for e in await store.events(search="cus_1")] == ["evt_3", "evt_1"]
    assert [e.event_id for e in await store.events(search="evt_2")] == ["evt_2"]
    assert [e.event_id for e in await store.events(provider="chargebee")] == ["evt_4"]
    window = await store.events(
        since=base + timedelta(seconds=1), until=base + timedelta(seconds=3)
    )
    assert [e.event_id for e in window] == ["evt_2", "evt_1"]
    first = await store.events(limit=2)
    older = await store.events(limit=2, before=first[-1].cursor)
    assert [e.event_id for e in older] == ["evt_2", "evt_1"]
    assert all(a.cursor > b.cursor for a, b in zip(first, older, strict=True))
    rest = await store.events(limit=2, before=older[-1].cursor, search="cus_0")
    assert [e.event_id for e in rest] == ["evt_0"]


# -- rejected deliveries --------------------------------------------------------------------------


def rejection(n: int, provider: str = "stripe", **fields: object) -> Rejection:
    return Rejection(
        received_at=fields.pop("received_at", datetime.now(timezone.utc)),  # type: ignore[arg-type]
        provider=provider,
        status=401,
        reason=f"bad signature {n}",
        source="203.0.113.7",
        body_bytes=100 + n,
        **fields,  # type: ignore[arg-type]
    )


async def test_rejections_are_kept_newest_first_and_by_provider(store: Store) -> None:
    assert list(await store.rejections()) == []
    await store.record_rejections([rejection(1), rejection(2, "orb", event_id="ev", dropped=3)])
    await store.record_rejections([rejection(3)])
    found = await store.rejections()
    assert [r.reason for r in found] == ["bad signature 3", "bad signature 2", "bad signature 1"]
    orb = found[1]
    assert (orb.provider, orb.status, orb.source, orb.body_bytes) == (
        "orb",
        401,
        "203.0.113.7",
        102,
    )
    assert (orb.event_id, orb.event_type, orb.dropped) == ("ev", None, 3)
    assert orb.received_at.tzinfo is not None
    assert [r.reason for r in await store.rejections(provider="stripe", limit=1)] == [
        "bad signature 3"
    ]


async def test_rejections_are_bounded_in_number_and_age(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import alerthooks.store.memory as memory
    import alerthooks.store.postgres as postgres
    import alerthooks.store.sqlite as sqlite

    for module in (memory, postgres, sqlite):
        monkeypatch.setattr(module, "REJECTIONS_KEPT", 5)
    if isinstance(store, MemoryStore):  # its ring was sized when it was made
        store._rejections = type(store._rejections)(maxlen=5)
    old = datetime.now(timezone.utc) - timedelta(days=31)
    await store.record_rejections([rejection(0, received_at=old)])
    await store.record_rejections([rejection(1)])
    assert [r.reason for r in await store.rejections()] == ["bad signature 1"]
    await store.record_rejections([rejection(n) for n in range(2, 9)])
    assert [r.reason for r in await store.rejections()] == [
        f"bad signature {n}" for n in range(8, 3, -1)
    ]
    assert (
        await store.prune_rejections(before=datetime.now(timezone.utc) + timedelta(seconds=1)) == 5
    )
    assert list(await store.rejections()) == []
