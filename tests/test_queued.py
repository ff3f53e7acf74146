"""The receiver over durable stores: queued mode, the worker, retries, dead, replay, 503s."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import Message

from alerthooks import AlertEvent, AlertHooks
from alerthooks.store.sqlite import SQLiteStore
from alerthooks.testing import stripe_alert_triggered
from alerthooks.worker import backoff

from . import helpers
from .conftest import free_port, post_stripe
from .helpers import logged, wait_until
from .stores import BACKENDS, POSTGRES_URL, postgres_schema, store_url


def make_hooks(url: str, **options: Any) -> AlertHooks:
    options.setdefault("retry_backoff", 0.01)
    options.setdefault("retry_backoff_max", 0.02)
    return helpers.make_hooks(url, **options)


@pytest.fixture(params=BACKENDS)
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with store_url(request.param, tmp_path) as found:
        yield found


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_queued_answers_before_handlers_and_drain_runs_them(url: str) -> None:
    hooks = make_hooks(url, mode="queued", worker=False)  # only drain() runs handlers
    seen: list[str] = []

    @hooks.on("alert.triggered")
    async def record(event: AlertEvent) -> None:
        seen.append(event.id)

    payload = stripe_alert_triggered()
    async with client_for(hooks) as client:
        response = await post_stripe(client, payload)
        assert (response.status_code, response.json()) == (200, {"status": "accepted"})
        assert seen == []
        await hooks.drain()
        assert seen == [payload["id"]]
        again = await post_stripe(client, payload)
        assert again.json() == {"status": "duplicate"}
        await hooks.drain()
    assert seen == [payload["id"]]
    stored = await hooks.store.get("stripe", payload["id"])
    assert stored is not None and [(o.status, o.attempts) for o in stored.outcomes] == [("done", 1)]
    await hooks.shutdown()


async def test_fail_twice_then_succeed(url: str) -> None:
    hooks = make_hooks(url, mode="queued")
    calls = 0

    @hooks.on("alert.triggered")
    def flaky(event: AlertEvent) -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise ConnectionError("downstream unavailable")

    payload = stripe_alert_triggered()
    async with client_for(hooks) as client:
        assert (await post_stripe(client, payload)).status_code == 200
    for _ in range(50):
        await hooks.drain()
        stored = await hooks.store.get("stripe", payload["id"])
        assert stored is not None
        if stored.outcomes[0].status == "done":
            break
        await asyncio.sleep(0.01)
    assert calls == 3
    assert stored is not None
    assert (stored.outcomes[0].status, stored.outcomes[0].attempts) == ("done", 3)
    await hooks.shutdown()


async def test_exhausted_attempts_are_dead_until_replayed(url: str) -> None:
    hooks = make_hooks(url, mode="queued", max_attempts=3, worker=False)
    calls = 0
    healthy = False

    @hooks.on("alert.triggered")
    async def broken(event: AlertEvent) -> None:
        nonlocal calls
        calls += 1
        if not healthy:
            raise RuntimeError("still broken")

    payload = stripe_alert_triggered()
    async with client_for(hooks) as client:
        assert (await post_stripe(client, payload)).status_code == 200
    for _ in range(50):
        await hooks.drain()
        if await hooks.store.events(status="dead"):
            break
        await asyncio.sleep(0.01)
    (dead,) = await hooks.store.events(status="dead")
    assert (dead.outcomes[0].attempts, dead.outcomes[0].last_error) == (
        3,
        "RuntimeError: still broken",
    )
    assert calls == 3
    await asyncio.sleep(0.05)
    await hooks.drain()
    assert calls == 3
    healthy = True
    assert await hooks.store.replay(dead=True) == 1
    await hooks.drain()
    assert calls == 4
    stored = await hooks.store.get("stripe", payload["id"])
    assert stored is not None and stored.outcomes[0].status == "done"
    await hooks.shutdown()


@pytest.mark.parametrize("mode", ["queued", "inline"])
async def test_a_handler_outliving_its_lease_keeps_it(url: str, mode: str) -> None:
    # Renewed first at one to two thirds of a lease: a renewal may come 0.5 s late (a loaded CI
    # machine) before another replica could take the work over.
    hooks = make_hooks(url, mode=mode, lease_seconds=1.5, worker=False)
    started, release = asyncio.Event(), asyncio.Event()

    @hooks.on("alert.triggered")
    async def slow(event: AlertEvent) -> None:
        started.set()
        await release.wait()

    payload = stripe_alert_triggered()
    async with client_for(hooks) as client:
        running: asyncio.Task[Any]
        if mode == "queued":
            assert (await post_stripe(client, payload)).status_code == 200
            running = asyncio.create_task(hooks.drain())
        else:
            running = asyncio.create_task(post_stripe(client, payload))
        await asyncio.wait_for(started.wait(), 5)
        await asyncio.sleep(3.2)  # more than two leases
        assert await hooks.store.claim(owner="another-replica", lease=10, limit=10) == []
        release.set()
        answer = await running
        assert answer is None or answer.status_code == 200
    stored = await hooks.store.get("stripe", payload["id"])
    assert stored is not None and [(o.status, o.attempts) for o in stored.outcomes] == [("done", 1)]
    await hooks.shutdown()


async def test_handler_cancelled_at_stop_is_due_again_at_once(url: str) -> None:
    hooks = make_hooks(url, mode="queued", lease_seconds=300, worker=False)
    started = asyncio.Event()

    @hooks.on("alert.triggered", name="stuck")
    async def stuck(event: AlertEvent) -> None:
        started.set()
        await asyncio.Event().wait()

    payload = stripe_alert_triggered()
    async with client_for(hooks) as client:
        assert (await post_stripe(client, payload)).status_code == 200
    await hooks.worker.start()
    await asyncio.wait_for(started.wait(), 5)
    await hooks.worker.stop(grace=0.05)
    stored = await hooks.store.get("stripe", payload["id"])
    assert stored is not None
    (outcome,) = stored.outcomes
    assert (outcome.status, outcome.attempts, outcome.last_error) == (
        "failed",
        1,
        "interrupted: the worker stopped",
    )
    (claim,) = await hooks.store.claim(owner="next-worker", lease=60, limit=10)
    assert (claim.event_id, claim.attempts) == (payload["id"], 1)
    await hooks.shutdown()


async def test_work_claimed_ahead_waits_for_a_slot_and_is_handed_back_at_stop(url: str) -> None:
    hooks = make_hooks(url, mode="queued", lease_seconds=300, worker=False, worker_concurrency=1)
    started: list[str] = []
    release = asyncio.Event()

    @hooks.on("alert.triggered", name="slow")
    async def slow(event: AlertEvent) -> None:
        started.append(event.id)
        await release.wait()

    payloads = [stripe_alert_triggered() for _ in range(3)]
    async with client_for(hooks) as client:
        for payload in payloads:
            assert (await post_stripe(client, payload)).status_code == 200
    await hooks.worker.start()
    await wait_until(lambda: len(started) == 1)
    # One slot: one handler runs, one more event is claimed ahead and waits, not run; the
    # third stays pending for any worker.
    statuses = []
    for payload in payloads:
        stored = await hooks.store.get("stripe", payload["id"])
        assert stored is not None
        statuses.append(stored.outcomes[0].status)
    assert sorted(statuses) == ["pending", "running", "running"]
    await hooks.worker.stop(grace=0.05)
    assert len(started) == 1
    for payload, status in zip(payloads, statuses, strict=True):
        stored = await hooks.store.get("stripe", payload["id"])
        assert stored is not None
        (outcome,) = stored.outcomes
        if status == "running":  # the one cancelled at stop and the one that never started
            assert (outcome.status, outcome.last_error) == (
                "failed",
                "interrupted: the worker stopped",
            )
    # Due again at once for the next worker.
    claims = await hooks.store.claim(owner="next-worker", lease=60, limit=10)
    assert {c.event_id for c in claims} == {p["id"] for p in payloads}
    await hooks.shutdown()


async def test_lifespan_worker_runs_handlers_without_drain(url: str) -> None:
    hooks = make_hooks(url, mode="queued", poll_interval=30)
    done = asyncio.Event()

    @hooks.on("alert.triggered")
    async def record(event: AlertEvent) -> None:
        done.set()

    app = Starlette(routes=[Mount("/webhooks", app=hooks)], lifespan=hooks.lifespan)
    async with hooks.lifespan(app), client_for(app) as client:
        assert hooks.worker.started
        response = await post_stripe(client, stripe_alert_triggered(), path="/webhooks/stripe")
        assert response.status_code == 200
        await asyncio.wait_for(done.wait(), 5)  # woken in-process, not after the 30 s poll
    assert not hooks.worker.started


async def test_worker_picks_up_work_recorded_by_another_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    web = make_hooks(url, mode="queued", worker=False)
    worker = make_hooks(url, mode="queued", poll_interval=0.05)
    done = asyncio.Event()

    @worker.on("alert.triggered", name="record")
    async def record(event: AlertEvent) -> None:
        done.set()

    web.add_handler(record, "alert.triggered", name="record")

    async with web.lifespan(), worker.lifespan(), client_for(web) as client:
        assert not web.worker.started
        assert (await post_stripe(client, stripe_alert_triggered())).status_code == 200
        await asyncio.wait_for(done.wait(), 5)


async def test_asgi_lifespan_protocol_starts_the_worker(tmp_path: Path) -> None:
    hooks = make_hooks(f"sqlite:///{tmp_path}/l.db", mode="queued")
    messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[str] = []
    started = asyncio.Event()

    async def send(message: Message) -> None:
        sent.append(message["type"])
        started.set()

    await messages.put({"type": "lifespan.startup"})
    task = asyncio.create_task(hooks({"type": "lifespan"}, messages.get, send))
    await started.wait()
    assert hooks.worker.started
    await messages.put({"type": "lifespan.shutdown"})
    await task
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert not hooks.worker.started


async def test_handler_unknown_to_this_process_is_retried_then_dead(url: str) -> None:
    first = make_hooks(url, mode="queued", worker=False)

    @first.on("alert.triggered", name="gone")
    async def gone(event: AlertEvent) -> None:
        pass

    async with client_for(first) as client:
        assert (await post_stripe(client, stripe_alert_triggered())).status_code == 200
    if url == "memory://":
        second = make_hooks(url, mode="queued", max_attempts=1)
        second.store = first.store
    else:
        await first.shutdown()
        second = make_hooks(url, mode="queued", max_attempts=1)
    await second.drain()
    (dead,) = await second.store.events(status="dead")
    assert dead.outcomes[0].last_error == "handler is not registered in this process"
    await second.shutdown()


async def test_inline_mode_over_a_durable_store_dedups(url: str) -> None:
    hooks = make_hooks(url)
    seen: list[str] = []

    @hooks.on("alert.triggered")
    async def record(event: AlertEvent) -> None:
        seen.append(event.id)

    payload = stripe_alert_triggered()
    async with client_for(hooks) as client:
        answers = await asyncio.gather(*(post_stripe(client, payload) for _ in range(5)))
        assert {a.status_code for a in answers} == {200}
        assert (await post_stripe(client, payload)).json() == {"status": "duplicate"}
    assert seen == [payload["id"]]
    await hooks.shutdown()


async def test_locked_sqlite_answers_503_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    hooks = make_hooks(f"sqlite:///{path}?busy_timeout=0.1")
    await hooks.startup()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    payload = stripe_alert_triggered()
    async with client_for(hooks) as client:
        down = await post_stripe(client, payload)
        assert (down.status_code, down.json()) == (503, {"error": "store unavailable; retry later"})
        blocker.execute("ROLLBACK")
        blocker.close()
        assert (await post_stripe(client, payload)).json() == {"status": "accepted"}
    await hooks.shutdown()


async def test_unreachable_postgres_answers_503_and_startup_survives() -> None:
    hooks = make_hooks(f"postgresql://postgres@127.0.0.1:{free_port()}/test", mode="queued")
    async with hooks.lifespan(), client_for(hooks) as client:
        response = await post_stripe(client, stripe_alert_triggered())
        assert response.status_code == 503


async def test_two_postgres_replicas_inline_run_a_concurrent_duplicate_once() -> None:
    async with postgres_schema() as url:
        replicas = [make_hooks(url), make_hooks(url)]
        ran: list[str] = []
        started, gate = asyncio.Event(), asyncio.Event()

        for hooks in replicas:

            @hooks.on("alert.triggered", name="slow")
            async def slow(event: AlertEvent) -> None:
                ran.append(event.id)
                started.set()
                await gate.wait()

        payload = stripe_alert_triggered()
        async with client_for(replicas[0]) as one, client_for(replicas[1]) as two:
            first = asyncio.create_task(post_stripe(one, payload))
            await asyncio.wait_for(started.wait(), 5)
            second = await post_stripe(two, payload)
            assert second.status_code == 503
            gate.set()
            assert (await first).status_code == 200
            assert (await post_stripe(two, payload)).json() == {"status": "duplicate"}
        assert ran == [payload["id"]]
        for hooks in replicas:
            await hooks.shutdown()


def test_default_store_is_sqlite_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("ALERTHOOKS_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    store = AlertHooks().store
    assert isinstance(store, SQLiteStore) and store.path == "alerthooks.db"
    monkeypatch.setenv("ALERTHOOKS_STORE", f"sqlite:///{tmp_path}/env.db")
    assert AlertHooks().store.url == f"sqlite:///{tmp_path}/env.db"


@pytest.mark.parametrize(
    ("options", "message"),
    [({"mode": "later"}, "mode must be 'inline' or 'queued'"), ({"max_attempts": 0}, "at least 1")],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AlertHooks(store="memory://", **options)


def test_backoff_doubles_with_jitter_and_a_cap() -> None:
    for attempt, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (10, 60.0)]:
        delays = [backoff(attempt, 2.0, 60.0) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


async def test_only_handlers_that_outlive_a_third_of_the_lease_renew_it(url: str) -> None:
    hooks = make_hooks(url, lease_seconds=1.5)  # renewals tick every 0.5 s
    renewed: list[str] = []
    slow_renewed = asyncio.Event()
    extend = hooks.store.extend

    async def spy(provider: str, event_id: str, *args: Any, **kwargs: Any) -> None:
        renewed.append(event_id)
        if event_id == slow_id:
            slow_renewed.set()
        await extend(provider, event_id, *args, **kwargs)

    hooks.store.extend = spy  # type: ignore[method-assign]
    slow_id = "evt_slow"

    @hooks.on("alert.triggered")
    async def handler(event: AlertEvent) -> None:
        if event.id == slow_id:  # lives until its lease is renewed (two ticks, 0.5-1 s)
            await asyncio.wait_for(slow_renewed.wait(), 10)

    async with client_for(hooks) as client:
        quick = [stripe_alert_triggered() for _ in range(20)]
        for payload in quick:
            assert (await post_stripe(client, payload)).status_code == 200
        assert (await post_stripe(client, stripe_alert_triggered(id=slow_id))).status_code == 200
    assert slow_id in renewed
    assert not set(renewed) & {p["id"] for p in quick}
    await hooks.shutdown()


async def _listening_worker(url: str, ran: list[str], fail_first: bool = False) -> AlertHooks:
    """A worker alone (as `alerthooks worker` runs it) that polls only every minute, started and
    listening: its first wake-up comes once its LISTEN connection is up."""
    hooks = make_hooks(url, mode="queued", poll_interval=60, max_attempts=1)

    @hooks.on("alert.triggered", name="record")
    async def record(event: AlertEvent) -> None:
        if fail_first and not ran:
            ran.append("failed")
            raise RuntimeError("first run fails")
        ran.append(event.id)

    wakes = asyncio.Event()
    wake = hooks.worker.wake

    def counting() -> None:
        wakes.set()
        wake()

    hooks.worker.wake = counting  # type: ignore[method-assign]
    await hooks.startup()
    await asyncio.wait_for(wakes.wait(), 10)
    return hooks


async def _until(check: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_postgres_wakes_a_worker_in_another_process_at_once() -> None:
    async with postgres_schema() as url:
        ran: list[str] = []
        worker = await _listening_worker(url, ran, fail_first=True)
        receiver = make_hooks(url, mode="queued", worker=False)
        receiver.on("alert.triggered", name="record")(lambda event: None)  # the same app's
        try:
            first, second = stripe_alert_triggered(), stripe_alert_triggered()
            async with client_for(receiver) as client:
                assert (await post_stripe(client, first)).status_code == 200
                # The worker polls once a minute: only the NOTIFY can wake it this soon.
                await _until(lambda: ran == ["failed"])
                for _ in range(250):
                    stored = await receiver.store.get("stripe", first["id"])
                    assert stored is not None
                    if stored.outcomes[0].status == "dead":
                        break
                    await asyncio.sleep(0.02)
                assert stored is not None and stored.outcomes[0].status == "dead"
                # `alerthooks replay --dead` in another process: the worker hears of it too.
                assert await receiver.store.replay(dead=True) == 1
                await _until(lambda: ran == ["failed", first["id"]])
                # A lost listening connection comes back by itself.
                listening = (
                    "SELECT array_agg(pid) FROM pg_stat_activity"
                    " WHERE query LIKE 'LISTEN %alerthooks%' AND pid <> pg_backend_pid()"
                )
                admin = await asyncpg.connect(POSTGRES_URL)
                try:
                    old = await admin.fetchval(listening)
                    assert old, "no connection is listening"
                    await admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid", old
                    )
                    for _ in range(500):  # the listener reconnects a second later
                        now = await admin.fetchval(listening) or []
                        if set(now) - set(old):
                            break
                        await asyncio.sleep(0.02)
                    assert set(now) - set(old), "the listener did not reconnect"
                finally:
                    await admin.close()
                assert (await post_stripe(client, second)).status_code == 200
                await _until(lambda: ran == ["failed", first["id"], second["id"]])
        finally:
            await receiver.shutdown()
            await worker.shutdown()


async def test_queued_app_mounted_without_lifespan_starts_its_worker_on_first_delivery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hooks = make_hooks(f"sqlite:///{tmp_path / 'q.db'}", mode="queued", poll_interval=30)
    done = asyncio.Event()

    @hooks.on("alert.triggered")
    async def record(event: AlertEvent) -> None:
        done.set()

    app = Starlette(routes=[Mount("/webhooks", app=hooks)])  # no lifespan=hooks.lifespan
    caplog.set_level(logging.WARNING)
    async with client_for(app) as client:
        await hooks.drain()  # opens the store, and runs nothing: it is not a delivery
        assert not hooks.worker.started
        response = await post_stripe(client, stripe_alert_triggered(), path="/webhooks/stripe")
        assert response.json() == {"status": "accepted"}
        assert hooks.worker.started
        await asyncio.wait_for(done.wait(), 5)  # no drain(), no 30 s poll
        assert (
            await post_stripe(client, stripe_alert_triggered(), path="/webhooks/stripe")
        ).status_code == 200
    assert logged(caplog, "started by the first delivery") != []
    assert len(logged(caplog, "started by the first delivery")) == 1
    await hooks.shutdown()
    assert not hooks.worker.started


async def test_a_split_web_process_does_not_start_a_worker_on_first_delivery(
    tmp_path: Path,
) -> None:
    hooks = make_hooks(f"sqlite:///{tmp_path / 'q.db'}", mode="queued", worker=False)
    hooks.add_handler(print, "alert.triggered", name="later")
    payload = stripe_alert_triggered()
    async with client_for(hooks) as client:
        assert (await post_stripe(client, payload)).status_code == 200
    assert not hooks.worker.started  # `alerthooks worker` runs it elsewhere
    (event,) = await hooks.store.events(status="pending")
    assert event.event_id == payload["id"]
    await hooks.shutdown()


async def test_worker_stopped_is_logged_once_when_the_worker_command_is_cancelled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # What `alerthooks worker` does on SIGTERM: cancel run_forever, then shut the hooks down.
    hooks = make_hooks(f"sqlite:///{tmp_path / 'q.db'}", mode="queued")
    caplog.set_level(logging.INFO, logger="alerthooks")
    await hooks.startup()
    running = asyncio.create_task(hooks.worker.run_forever())
    await wait_until(lambda: hooks.worker.started, what="the worker")
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await hooks.shutdown()
    assert logged(caplog, "stopped") == [f"worker {hooks.owner} stopped"]
