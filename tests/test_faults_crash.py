"""A handler that takes its process down is not retried forever: taking over its expired lease
counts the run that died as an attempt, so it becomes ``dead`` after ``max_attempts``, with the
error saying the process died. A lease held by a process of this host that no longer exists is
taken over at once instead of waiting for it to expire."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from alerthooks.store import (
    PROCESS_DIED,
    PROCESS_GONE,
    Claim,
    Delivery,
    Store,
    open_store,
    owner_gone,
)
from alerthooks.testing import stripe_alert_triggered

from .conftest import free_port
from .helpers import make_hooks
from .hostile import asgi_call
from .stores import BACKENDS, store_url
from .test_cli_inbox import ROOT, Proc, serve, signed


def delivery(event_id: str = "evt_crash", *handlers: str) -> Delivery:
    from datetime import datetime, timezone

    return Delivery(
        provider="stripe",
        event_id=event_id,
        event_type="billing.alert.triggered",
        body=b'{"id": 1}',
        received_at=datetime.now(timezone.utc),
        handlers=handlers or ("a",),
    )


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with store_url(request.param, tmp_path) as url:
        opened = open_store(url)
        await opened.open()
        try:
            yield opened
        finally:
            await opened.close()


async def outcome(store: Store, event_id: str = "evt_crash") -> tuple[str, int, str | None]:
    stored = await store.get("stripe", event_id)
    assert stored is not None
    (o,) = stored.outcomes
    return o.status, o.attempts, o.last_error


def gone_pid() -> int:
    """The pid of a process of this host that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


async def claim_and_start(store: Store, owner: str, **options: float) -> list[Claim]:
    """Claim as a worker does and mark every claim started, as it does before running them."""
    claims = await store.claim(
        owner=owner,
        lease=options.get("lease", 0),
        limit=10,
        **{k: int(v) for k, v in options.items() if k == "max_attempts"},
    )
    for claim in claims:
        await store.start(claim.provider, claim.event_id, [claim.handler], owner=owner)
    return list(claims)


async def test_claiming_an_expired_lease_counts_the_run_that_died(store: Store) -> None:
    await store.begin(delivery(), owner="crashed", lease=60, claim=False)
    (first,) = await claim_and_start(store, "w1", max_attempts=3)
    assert first.attempts == 0
    (second,) = await claim_and_start(store, "w2", max_attempts=3)
    assert second.attempts == 1
    assert await outcome(store) == ("running", 1, PROCESS_DIED)
    (third,) = await claim_and_start(store, "w3", max_attempts=3)
    assert third.attempts == 2
    # The third run died too: that makes max_attempts, so it is dead, not claimed again.
    assert await store.claim(owner="w4", lease=60, limit=10, max_attempts=3) == []
    assert await outcome(store) == ("dead", 3, PROCESS_DIED)
    stored = await store.get("stripe", "evt_crash")
    assert stored is not None
    assert [a.error for a in stored.outcomes[0].history] == [PROCESS_DIED] * 3
    assert await store.next_due() is None
    # A replay gives it a fresh start, as for any dead handler.
    assert await store.replay(["evt_crash"]) == 1
    (again,) = await store.claim(owner="w5", lease=60, limit=10, max_attempts=3)
    assert again.attempts == 0


async def test_a_live_lease_is_not_taken_over_or_counted(store: Store) -> None:
    await store.begin(delivery(), owner="w1", lease=0, claim=False)
    await store.claim(owner="w1", lease=60, limit=10, max_attempts=3)
    assert await store.claim(owner="w2", lease=60, limit=10, max_attempts=3) == []
    await store.finish("stripe", "evt_crash", {"a": None}, owner="w1")
    assert await outcome(store) == ("done", 1, None)


async def test_claim_without_max_attempts_counts_but_never_kills(store: Store) -> None:
    await store.begin(delivery(), owner="w", lease=0, claim=False)
    for expected in range(5):
        (claim,) = await claim_and_start(store, "w")
        assert claim.attempts == expected
    assert await outcome(store) == ("running", 4, PROCESS_DIED)


async def test_a_claim_that_never_started_is_taken_over_without_counting(store: Store) -> None:
    await store.begin(delivery(), owner="w0", lease=60, claim=False)
    # Claimed again and again by workers that die before starting it: nothing ran, nothing
    # counts, and it is never dead for it, however small max_attempts.
    for owner in ("w1", "w2", "w3", "w4"):
        (claim,) = await store.claim(owner=owner, lease=0, limit=10, max_attempts=1)
        assert claim.attempts == 0
        assert await outcome(store) == ("running", 0, None)
    # Started by w5, which dies: that run counts, once.
    (claim,) = await store.claim(owner="w5", lease=0, limit=10, max_attempts=3)
    await store.start("stripe", "evt_crash", ["a"], owner="w5")
    (claim,) = await store.claim(owner="w6", lease=60, limit=10, max_attempts=3)
    assert claim.attempts == 1
    assert await outcome(store) == ("running", 1, PROCESS_DIED)
    stored = await store.get("stripe", "evt_crash")
    assert stored is not None and [a.error for a in stored.outcomes[0].history] == [PROCESS_DIED]
    # A start by an owner that no longer holds the lease marks nothing.
    await store.start("stripe", "evt_crash", ["a"], owner="w5")
    await store.finish("stripe", "evt_crash", {"a": None}, owner="w6")
    assert await outcome(store) == ("done", 2, None)


async def test_a_worker_claim_taken_over_by_an_inline_redelivery_counts_only_if_started(
    store: Store,
) -> None:
    for started in (False, True):
        event_id = f"evt_{started}"
        await store.begin(delivery(event_id), owner="w0", lease=60, claim=False)
        await store.claim(owner="w1", lease=0, limit=10)
        if started:
            await store.start("stripe", event_id, ["a"], owner="w1")
        again = await store.begin(delivery(event_id), owner="w2", lease=60)
        assert again.claimed == ("a",)
        expected = ("running", 1, PROCESS_DIED) if started else ("running", 0, None)
        assert await outcome(store, event_id) == expected


async def test_inline_redelivery_after_an_expired_lease_counts_the_run_that_died(
    store: Store,
) -> None:
    await store.begin(delivery(), owner="crashed", lease=0)
    again = await store.begin(delivery(), owner="w2", lease=60)
    assert again.claimed == ("a",) and again.busy == ()
    assert await outcome(store) == ("running", 1, PROCESS_DIED)


async def test_lease_of_a_gone_process_on_this_host_is_taken_over_at_once(store: Store) -> None:
    gone = f"{socket.gethostname()}:{gone_pid()}:deadbeef"
    assert owner_gone(gone)
    await store.begin(delivery(), owner=gone, lease=300)
    again = await store.begin(delivery(), owner="w2", lease=60)
    assert again.claimed == ("a",) and again.busy == ()
    assert await outcome(store) == ("running", 1, PROCESS_GONE)


async def test_lease_of_a_live_or_remote_process_is_left_to_run(store: Store) -> None:
    host = socket.gethostname()
    live = f"{host}:{os.getppid()}:cafe0001"  # pytest's parent: alive
    remote = f"not-{host}:{gone_pid()}:cafe0002"  # a pid of this host, but another host's owner
    this = f"{host}:{os.getpid()}:cafe0003"  # this process (another AlertHooks in it)
    for n, owner in enumerate((live, remote, this)):
        await store.begin(delivery(f"evt_{n}"), owner=owner, lease=300)
        again = await store.begin(delivery(f"evt_{n}"), owner="w2", lease=60)
        assert again.claimed == () and again.busy == ("a",), owner
        assert await outcome(store, f"evt_{n}") == ("running", 0, None)


async def test_expire_gone_ends_only_the_leases_of_gone_processes(store: Store) -> None:
    host = socket.gethostname()
    gone = f"{host}:{gone_pid()}:deadbeef"
    await store.begin(delivery("evt_gone"), owner=gone, lease=300)
    await store.begin(delivery("evt_live"), owner=f"{host}:{os.getppid()}:cafe0001", lease=300)
    assert await store.claim(owner="w2", lease=60, limit=10, max_attempts=3) == []
    assert await store.expire_gone() == 1
    assert await store.expire_gone() == 0
    (claim,) = await store.claim(owner="w2", lease=60, limit=10, max_attempts=3)
    assert (claim.event_id, claim.attempts) == ("evt_gone", 1)
    assert await outcome(store, "evt_gone") == ("running", 1, PROCESS_DIED)
    assert await outcome(store, "evt_live") == ("running", 0, None)


def test_owner_gone_reads_only_owners_of_this_host() -> None:
    host = socket.gethostname()
    pid = gone_pid()
    assert owner_gone(f"{host}:{pid}:0123abcd")
    assert not owner_gone(f"{host}:{os.getpid()}:0123abcd")
    assert not owner_gone(f"{host}:1:0123abcd")  # init: alive (or another user's)
    assert not owner_gone(f"elsewhere:{pid}:0123abcd")
    for odd in ("", "w1", "slow", f"{host}:notapid:x", f"{host}:-5:x", None):
        assert not owner_gone(odd)


# -- a real process that dies in its handler, restarted by a supervisor (this test) ---------------


async def supervise(restart: Callable[[], Proc], first: Proc, store: Store, event_id: str) -> Proc:
    """Restart the process each time its handler takes it down, as systemd or Kubernetes
    would, until the event's handler is dead; return the last process (still running)."""
    proc, deaths = first, 0
    deadline = time.monotonic() + 60
    while (await outcome(store, event_id))[0] != "dead":
        assert time.monotonic() < deadline, f"not dead after {deaths} crashes"
        if proc.popen.poll() is not None:  # the handler took it down: restart it
            assert proc.stop() == 70
            deaths += 1
            assert deaths <= 3, "restarted more often than max_attempts allows"
            proc = restart()
        await asyncio.sleep(0.05)
    assert await outcome(store, event_id) == ("dead", 3, PROCESS_DIED)
    stored = await store.get("stripe", event_id)
    assert stored is not None
    assert [a.error for a in stored.outcomes[0].history] == [PROCESS_DIED] * 3
    return proc


async def test_a_handler_that_exits_its_process_under_serve_is_dead_after_max_attempts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    url = f"sqlite:///{tmp_path}/inbox.db"
    out = tmp_path / "handled.txt"
    env = {"ALERTHOOKS_STORE": url, "ALERTHOOKS_TEST_OUT": str(out), "ALERTHOOKS_TEST_LEASE": "1"}
    port = free_port()
    log = tmp_path / "serve.log"
    payload = stripe_alert_triggered()
    body, headers = signed(payload)
    server = serve(port, env, log, "tests.crash_app:hooks")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.post("/stripe", content=body, headers=headers)
        assert response.status_code == 200, response.text
        store = open_store(url)
        await store.open()
        try:
            # Not waited for: its worker may take the work and die before it answers.
            server = await supervise(
                lambda: Proc(["serve", "tests.crash_app:hooks", "--port", str(port)], env, log),
                server,
                store,
                payload["id"],
            )
        finally:
            await store.close()
        assert out.read_text().split() == [payload["id"]] * 3
        # Dead work is not claimed again: the last server stays up and serves.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            deadline = time.monotonic() + 20
            while True:
                try:
                    assert (await client.get("/_alerthooks/ready")).status_code == 200
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the last server never answered"
                    await asyncio.sleep(0.05)
        assert server.popen.poll() is None
    finally:
        server.stop()
    assert "is dead after 3 attempts: the process running it died" in log.read_text()


async def test_a_restarted_worker_takes_over_at_once_from_its_dead_predecessor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the default 300 s lease: each restarted ``alerthooks worker`` sees that the process
    holding the lease is gone from this host, so the handler is dead after three crashes in
    well under one lease."""
    monkeypatch.chdir(ROOT)
    url = f"sqlite:///{tmp_path}/inbox.db"
    out = tmp_path / "handled.txt"
    env = {"ALERTHOOKS_STORE": url, "ALERTHOOKS_TEST_OUT": str(out), "ALERTHOOKS_TEST_LEASE": "300"}
    web = make_hooks(url, mode="queued", worker=False)
    web.add_handler(lambda event: None, "*", name="poison")  # as crash_app names it
    payload = stripe_alert_triggered()
    body, headers = signed(payload)
    status, _, _ = await asgi_call(
        web,
        path="/stripe",
        headers=[(k.lower().encode(), v.encode()) for k, v in headers.items()],
        chunks=[body],
    )
    assert status == 200
    await web.shutdown()
    log = tmp_path / "worker.log"

    def start() -> Proc:
        return Proc(["worker", "tests.crash_app:hooks"], env, log)

    started = time.monotonic()
    store = open_store(url)
    await store.open()
    worker = start()
    try:
        worker = await supervise(start, worker, store, payload["id"])
        assert worker.popen.poll() is None
    finally:
        worker.stop()
        await store.close()
    assert time.monotonic() - started < 60  # far less than one 300 s lease
    assert out.read_text().split() == [payload["id"]] * 3


async def test_after_kill_9_attempts_equal_the_runs_the_handler_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed (SIGKILL) three times while it holds both started and claimed-but-not-
    started pairs, then left to finish: every outcome's ``attempts`` is the number of times its
    handler ran, as the handler itself recorded them."""
    monkeypatch.chdir(ROOT)
    url = f"sqlite:///{tmp_path}/inbox.db"
    out = tmp_path / "runs.txt"
    env = {"ALERTHOOKS_STORE": url, "ALERTHOOKS_TEST_OUT": str(out), "ALERTHOOKS_TEST_LEASE": "1"}
    web = make_hooks(url, mode="queued", worker=False)
    web.add_handler(lambda event: None, "*", name="work")  # as attempts_app names it
    ids = []
    for _ in range(30):
        payload = stripe_alert_triggered()
        body, headers = signed(payload)
        status, _, _ = await asgi_call(
            web,
            path="/stripe",
            headers=[(k.lower().encode(), v.encode()) for k, v in headers.items()],
            chunks=[body],
        )
        assert status == 200
        ids.append(payload["id"])
    await web.shutdown()
    log = tmp_path / "worker.log"

    def runs() -> list[str]:
        return out.read_text().split() if out.exists() else []

    store = open_store(url)
    await store.open()
    try:
        for kill in range(3):
            worker = Proc(["worker", "tests.attempts_app:hooks"], env, log)
            seen = len(runs())
            deadline = time.monotonic() + 30
            while len(runs()) < seen + 3:  # it is well into its work, and mid-run
                assert worker.popen.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"kill {kill}: no progress"
                await asyncio.sleep(0.01)
            assert worker.stop(signal.SIGKILL) == -signal.SIGKILL
        worker = Proc(["worker", "tests.attempts_app:hooks"], env, log)
        try:
            deadline = time.monotonic() + 60
            while True:
                stored = [await store.get("stripe", event_id) for event_id in ids]
                if all(s is not None and s.outcomes[0].status == "done" for s in stored):
                    break
                assert time.monotonic() < deadline, "the backlog was never finished"
                await asyncio.sleep(0.1)
        finally:
            worker.stop()
    finally:
        await store.close()
    counted = Counter(runs())
    attempts = {s.event_id: s.outcomes[0].attempts for s in stored if s is not None}
    mismatched = {i: (attempts[i], counted[i]) for i in ids if attempts[i] != counted[i]}
    assert mismatched == {}, f"(attempts, runs) differ for {len(mismatched)}: {mismatched}"
    # The kills did leave runs that died mid-way: some handler ran more than once.
    assert max(counted.values()) >= 2
