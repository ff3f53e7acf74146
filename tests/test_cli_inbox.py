"""The inbox CLI: serve, worker, events, replay — real processes on loopback, real stores."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from click.testing import CliRunner

from alerthooks import AlertEvent, AlertHooks
from alerthooks.cli import cli
from alerthooks.providers import Chargebee, Stripe
from alerthooks.store import Delivery, open_store
from alerthooks.testing import stripe_alert_triggered, stripe_signature_header

from .conftest import CB_PASSWORD, CB_USER, STRIPE_SECRET, free_port
from .stores import POSTGRES_URL, postgres_schema, store_url

ROOT = Path(__file__).resolve().parent.parent


class Proc:
    """An ``alerthooks`` subprocess with its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.handle = log.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-c", "from alerthooks.cli import main; main()", *args],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self.handle,
            stderr=subprocess.STDOUT,
        )

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            code = self.popen.wait(15)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            code = self.popen.wait()
        self.handle.close()
        return code


def serve(
    port: int,
    env: dict[str, str],
    log: Path,
    target: str = "tests.inbox_app:hooks",
    *options: str,
) -> Proc:
    proc = Proc(["serve", target, "--port", str(port), *options], env, log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.05)
    proc.stop()
    raise AssertionError(f"server not ready: {log.read_text()}")


def signed(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {"Stripe-Signature": stripe_signature_header(body, STRIPE_SECRET)}


def handled(out: Path) -> Counter[str]:
    return Counter(out.read_text().split()) if out.exists() else Counter()


def wait_handled(out: Path, expected: set[str], timeout: float = 30) -> Counter[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = handled(out)
        if expected <= set(counts):
            return counts
        time.sleep(0.05)
    missing = expected - set(handled(out))
    raise AssertionError(f"{len(missing)} acknowledged event(s) never handled")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def inbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.chdir(ROOT)
    env = {
        "ALERTHOOKS_STORE": f"sqlite:///{tmp_path}/inbox.db",
        "ALERTHOOKS_TEST_OUT": str(tmp_path / "handled.txt"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sys.modules.pop("tests.inbox_app", None)  # its AlertHooks reads the env when imported
    yield env
    sys.modules.pop("tests.inbox_app", None)


# -- crash safety and replicas ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "mode"),
    [("sqlite", "queued"), ("postgres", "queued"), ("postgres", "inline")],
)
async def test_sigkill_mid_stream_loses_no_acknowledged_event(
    tmp_path: Path, inbox: dict[str, str], backend: str, mode: str
) -> None:
    # 32 deliveries in flight: both stores commit them in batches (SQLite's writer thread,
    # Postgres' group commit, whose inline leases commit without waiting for the WAL flush).
    async with store_url(backend, tmp_path) as url:
        port = free_port()
        env = {
            **inbox,
            "ALERTHOOKS_STORE": url,
            "ALERTHOOKS_TEST_LEASE": "1",
            "ALERTHOOKS_TEST_MODE": mode,
        }
        server = serve(port, env, tmp_path / "serve.log")
        payloads = [stripe_alert_triggered() for _ in range(300)]
        acked: set[str] = set()
        gate = asyncio.Semaphore(32)

        async def deliver(client: httpx.AsyncClient, payload: dict[str, Any]) -> None:
            async with gate:
                body, headers = signed(payload)
                try:
                    response = await client.post("/stripe", content=body, headers=headers)
                except httpx.TransportError:
                    return
                if response.status_code == 200:
                    acked.add(payload["id"])
                    if len(acked) == 100:
                        server.popen.kill()

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await asyncio.gather(*(deliver(client, p) for p in payloads))
        assert server.stop() == -signal.SIGKILL
        assert 100 <= len(acked) < len(payloads)
        store = open_store(url)
        try:
            for event_id in acked:
                stored = await store.get("stripe", event_id)
                assert stored is not None, f"acknowledged {event_id} is not stored"
                assert [o.handler for o in stored.outcomes] == ["record"]
                if mode == "inline":  # answered after its outcome was recorded
                    assert stored.outcomes[0].status == "done"
        finally:
            await store.close()
        if backend == "postgres":
            return  # what a restarted worker does with stored work is the same on every store
        restarted = serve(port, env, tmp_path / "restart.log")
        try:
            counts = wait_handled(Path(inbox["ALERTHOOKS_TEST_OUT"]), acked)
        finally:
            restarted.stop()
        # Only work in flight at the kill may run twice.
        assert sum(1 for n in counts.values() if n > 1) <= 32


async def test_two_servers_on_one_postgres_handle_each_event_once(tmp_path: Path) -> None:
    async with postgres_schema() as url:
        out = tmp_path / "handled.txt"
        env = {"ALERTHOOKS_STORE": url, "ALERTHOOKS_TEST_OUT": str(out)}
        ports = [free_port(), free_port()]
        servers = [serve(p, env, tmp_path / f"serve{p}.log") for p in ports]
        try:
            payloads = [stripe_alert_triggered() for _ in range(80)]
            sends = [
                (payload, random.choice(ports))
                for payload in payloads
                for _ in range(random.choice((1, 2)))
            ]
            random.shuffle(sends)
            gate = asyncio.Semaphore(32)

            async def deliver(client: httpx.AsyncClient, payload: dict[str, Any], port: int) -> int:
                body, headers = signed(payload)
                for _ in range(100):  # retry like a provider does on 5xx
                    async with gate:
                        response = await client.post(
                            f"http://127.0.0.1:{port}/stripe", content=body, headers=headers
                        )
                    if response.status_code == 200:
                        return 200
                    await asyncio.sleep(0.05)
                return response.status_code

            async with httpx.AsyncClient(timeout=10) as client:
                codes = await asyncio.gather(*(deliver(client, p, port) for p, port in sends))
            assert set(codes) == {200}
            wait_handled(out, {p["id"] for p in payloads})
            assert POSTGRES_URL
            schema = url.rsplit("schema=", 1)[1]
            conn = await asyncpg.connect(POSTGRES_URL)
            try:
                for _ in range(100):
                    left = await conn.fetchval(
                        f'SELECT count(*) FROM "{schema}".alerthooks_outcomes'
                        " WHERE status <> 'done'"
                    )
                    if left == 0:
                        break
                    await asyncio.sleep(0.05)
                assert left == 0, f"{left} outcome(s) never recorded as done"
            finally:
                await conn.close()
        finally:
            for server in servers:
                server.stop()
        counts = handled(out)
        assert set(counts) == {p["id"] for p in payloads}
        assert set(counts.values()) == {1}


def test_serve_a_host_app_runs_the_worker_through_its_lifespan(
    tmp_path: Path, inbox: dict[str, str]
) -> None:
    port = free_port()
    server = serve(port, inbox, tmp_path / "host.log", target="tests.inbox_app:host")
    try:
        payload = stripe_alert_triggered()
        body, headers = signed(payload)
        url = f"http://127.0.0.1:{port}/webhooks/stripe"
        assert httpx.post(url, content=body, headers=headers).status_code == 200
        assert wait_handled(Path(inbox["ALERTHOOKS_TEST_OUT"]), {payload["id"]}, timeout=10)
    finally:
        server.stop()
    log = (tmp_path / "host.log").read_text()
    assert "Application shutdown complete" in log and "Traceback" not in log
    assert f"stripe event {payload['id']} queued" in log  # alerthooks' own log lines show


def test_split_web_and_worker_processes(tmp_path: Path, inbox: dict[str, str]) -> None:
    port = free_port()
    web = serve(port, {**inbox, "ALERTHOOKS_TEST_WORKER": "0"}, tmp_path / "web.log")
    worker = Proc(["worker", "tests.inbox_app:hooks"], inbox, tmp_path / "worker.log")
    try:
        payloads = [stripe_alert_triggered() for _ in range(10)]
        for payload in payloads:
            body, headers = signed(payload)
            response = httpx.post(f"http://127.0.0.1:{port}/stripe", content=body, headers=headers)
            assert response.status_code == 200
        counts = wait_handled(Path(inbox["ALERTHOOKS_TEST_OUT"]), {p["id"] for p in payloads})
        assert set(counts.values()) == {1}
    finally:
        web.stop()
        code = worker.stop(signal.SIGTERM)
    assert code == 0, (tmp_path / "worker.log").read_text()
    assert "Traceback" not in (tmp_path / "worker.log").read_text()


# -- events and replay ------------------------------------------------------------------------


def exhaust(url: str, out: str) -> tuple[str, str]:
    """Store one event whose handler is dead after its attempts, and one that was handled."""
    hooks = AlertHooks(
        providers=[Stripe(STRIPE_SECRET), Chargebee((CB_USER, CB_PASSWORD))],
        store=url,
        mode="queued",
        max_attempts=2,
        retry_backoff=0.001,
        retry_backoff_max=0.001,
    )
    failing = {"on": True}

    @hooks.on("*", name="record")
    def record(event: AlertEvent) -> None:
        if failing["on"]:
            raise RuntimeError("told to fail")

    dead, done = stripe_alert_triggered(), stripe_alert_triggered()

    async def run() -> None:
        transport = httpx.ASGITransport(app=hooks)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            body, headers = signed(dead)
            assert (await client.post("/stripe", content=body, headers=headers)).status_code == 200
            for _ in range(100):
                await hooks.drain()
                if await hooks.store.events(status="dead"):
                    break
                await asyncio.sleep(0.005)
            failing["on"] = False
            body, headers = signed(done)
            assert (await client.post("/stripe", content=body, headers=headers)).status_code == 200
            await hooks.drain()
        await hooks.shutdown()

    asyncio.run(run())
    return dead["id"], done["id"]


def test_events_lists_outcomes_and_replay_dead_runs_them_again(
    runner: CliRunner, inbox: dict[str, str]
) -> None:
    dead_id, done_id = exhaust(inbox["ALERTHOOKS_STORE"], inbox["ALERTHOOKS_TEST_OUT"])
    listed = runner.invoke(cli, ["events"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split("\t") == [
        "received",
        "provider",
        "event",
        "type",
        "kind",
        "handler",
        "status",
        "attempts",
        "next attempt",
        "error",
    ]
    assert [line.split("\t")[2] for line in lines[1:]] == [done_id, dead_id]
    dead_rows = runner.invoke(cli, ["events", "--status", "dead", "--limit", "5"])
    (row,) = dead_rows.output.splitlines()[1:]
    assert row.split("\t")[1:] == [
        "stripe",
        dead_id,
        "alert.triggered",  # normalized from the stored body
        "usage",
        "record",
        "dead",
        "2",
        "",
        "RuntimeError: told to fail",
    ]
    replayed = runner.invoke(cli, ["replay", "--dead", "--app", "tests.inbox_app:hooks"])
    assert replayed.exit_code == 0, replayed.output
    assert replayed.output == "1 handler(s) ran again: 1 done, 0 failed again\n"
    assert handled(Path(inbox["ALERTHOOKS_TEST_OUT"])) == Counter({dead_id: 1})
    assert runner.invoke(cli, ["events", "--status", "dead"]).output.count("\n") == 1


@pytest.mark.parametrize("env", [{}, {"FORCE_COLOR": "1"}], ids=["not-a-terminal", "terminal"])
def test_replay_with_app_shows_progress_only_on_a_terminal(
    runner: CliRunner, inbox: dict[str, str], env: dict[str, str]
) -> None:
    dead_id, _ = exhaust(inbox["ALERTHOOKS_STORE"], inbox["ALERTHOOKS_TEST_OUT"])
    replayed = runner.invoke(
        cli, ["replay", "--dead", "--app", "tests.inbox_app:hooks"], env={**env, "COLUMNS": "200"}
    )
    assert replayed.exit_code == 0, replayed.output
    assert ("replaying" in replayed.stdout) is bool(env)  # the bar, cleared when done
    assert replayed.stdout.rstrip().endswith("1 handler(s) ran again: 1 done, 0 failed again")
    assert handled(Path(inbox["ALERTHOOKS_TEST_OUT"])) == Counter({dead_id: 1})


def test_replay_by_id_leaves_work_to_the_worker(runner: CliRunner, inbox: dict[str, str]) -> None:
    dead_id, _ = exhaust(inbox["ALERTHOOKS_STORE"], inbox["ALERTHOOKS_TEST_OUT"])
    result = runner.invoke(cli, ["replay", dead_id, "--store", inbox["ALERTHOOKS_STORE"]])
    assert (result.exit_code, result.output) == (
        0,
        "1 handler(s) queued again; a running worker runs them\n",
    )
    pending = runner.invoke(cli, ["events", "--status", "pending"])
    assert dead_id in pending.output


def test_events_table_on_a_terminal(
    runner: CliRunner, inbox: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    exhaust(inbox["ALERTHOOKS_STORE"], inbox["ALERTHOOKS_TEST_OUT"])
    from alerthooks.cli import core

    monkeypatch.setattr(core, "is_terminal", lambda: True)
    result = runner.invoke(cli, ["events", "--status", "dead"], color=True)
    assert result.exit_code == 0, result.output
    assert "1 event(s)" in result.output and "dead" in result.output


def test_prune_deletes_old_handled_events_only(runner: CliRunner, inbox: dict[str, str]) -> None:
    async def seed() -> None:
        store = open_store(inbox["ALERTHOOKS_STORE"])
        now = datetime.now(timezone.utc)
        for event_id, received, error in [
            ("evt_old_done", now - timedelta(days=40), None),
            ("evt_old_failed", now - timedelta(days=40), "boom"),
            ("evt_recent_done", now - timedelta(days=2), None),
        ]:
            delivery = Delivery(
                "stripe", event_id, "billing.alert.triggered", b"{}", received, ("h",)
            )
            await store.begin(delivery, owner="w", lease=60)
            await store.finish("stripe", event_id, {"h": error}, owner="w")
        await store.close()

    asyncio.run(seed())
    result = runner.invoke(cli, ["prune", "--older-than", "30"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("pruned 1 event(s) and 0 rejected deliveries received before ")
    listed = runner.invoke(cli, ["events"]).output
    assert "evt_old_done" not in listed
    assert "evt_old_failed" in listed and "evt_recent_done" in listed


def test_events_show_when_a_failed_handler_runs_next(
    runner: CliRunner, inbox: dict[str, str]
) -> None:
    async def seed() -> None:
        store = open_store(inbox["ALERTHOOKS_STORE"])
        now = datetime.now(timezone.utc)
        delivery = Delivery("stripe", "evt_later", "billing.alert.triggered", b"{}", now, ("h",))
        await store.begin(delivery, owner="w", lease=60)
        await store.finish("stripe", "evt_later", {"h": "boom"}, owner="w", retry_in={"h": 3600})
        await store.close()

    asyncio.run(seed())
    (row,) = runner.invoke(cli, ["events", "--status", "failed"]).output.splitlines()[1:]
    next_attempt = datetime.strptime(row.split("\t")[8], "%Y-%m-%d %H:%M:%S%z")  # "…Z": UTC
    assert row.split("\t")[0].endswith("Z")
    delay = next_attempt - datetime.now(timezone.utc)
    assert timedelta(minutes=58) < delay <= timedelta(hours=1)


# -- every error is one line ------------------------------------------------------------------


async def create_store(url: str) -> None:
    store = open_store(url)
    await store.open()
    await store.close()


def closed_port_url() -> str:
    return f"postgresql://postgres@127.0.0.1:{free_port()}/test"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["serve", "no_colon"], 2, "expected MODULE:ATTR"),
        (
            ["serve", "no_such_module_xyz:app"],
            1,
            "cannot import 'no_such_module_xyz': no such module",
        ),
        (["serve", "tests.inbox_app:missing"], 1, "has no attribute 'missing'"),
        (["serve", "tests.inbox_app:not_an_app"], 1, "is a int, not an ASGI app"),
        (["serve", "tests.broken_app:hooks"], 1, "unsupported store URL scheme 'redis'"),
        (
            ["serve", "tests.inbox_app:hooks", "--store", "redis://x"],
            1,
            "--store: unsupported store URL scheme 'redis'",
        ),
        (["events", "--app", "tests.inbox_app:nope"], 1, "has no attribute 'nope'"),
        (
            ["events", "--app", "tests.inbox_app:hooks", "--store", "sqlite:///nowhere/none.db"],
            1,
            "no store at nowhere/none.db",
        ),
        (
            ["worker", "tests.inbox_app:not_an_app"],
            1,
            "is a int: neither an AlertHooks nor an app that mounts one",
        ),
        (["worker", "tests.broken_app:hooks"], 1, "cannot import 'tests.broken_app'"),
        (["events", "--store", "redis://x"], 1, "unsupported store URL scheme 'redis'"),
        (["events", "--store", "sqlite:///nowhere/none.db"], 1, "no store at nowhere/none.db"),
        (["events", "--status", "exploded"], 2, "Invalid value for '--status'"),
        (["events", "--limit", "0"], 2, "Invalid value for '--limit'"),
        (["events", "--store", "CLOSED"], 1, "store unavailable: postgres"),
        (["prune", "--older-than", "0"], 2, "Invalid value for '--older-than'"),
        (["prune", "--store", "sqlite:///nowhere/none.db"], 1, "no store at nowhere/none.db"),
        (["prune", "--store", "CLOSED"], 1, "store unavailable: postgres"),
        (["replay"], 2, "give EVENT_ID... or --dead"),
        (["replayy"], 2, "No such command 'replayy'"),
        (["replay", "evt_1", "--dead"], 2, "give EVENT_ID... or --dead"),
        (
            ["replay", "evt_unknown"],
            1,
            "unknown event evt_unknown: the store has no event with that id",
        ),
        (["replay", "--dead"], 1, "nothing to replay: no dead handlers"),
        (["replay", "--dead", "--app", "tests.inbox_app:nope"], 1, "has no attribute 'nope'"),
    ],
)
def test_errors_are_one_line_without_traceback(
    runner: CliRunner, inbox: dict[str, str], args: list[str], code: int, message: str
) -> None:
    asyncio.run(create_store(inbox["ALERTHOOKS_STORE"]))
    args = [closed_port_url() if a == "CLOSED" else a for a in args]
    result = runner.invoke(cli, args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output.count("\n") == 1
    assert result.output.startswith("error: ")
    if code == 2:  # a usage error says where help is, on the same line
        assert result.output.rstrip().endswith(" --help')")


def test_an_app_failing_at_import_is_named_with_its_file_and_line(
    runner: CliRunner, inbox: dict[str, str]
) -> None:
    result = runner.invoke(cli, ["serve", "tests.broken_app:hooks"])
    assert result.exit_code == 1
    assert result.output == (
        "error: cannot import 'tests.broken_app': ValueError: unsupported store URL scheme "
        "'redis'; use memory://, sqlite:///PATH or postgresql://… (tests/broken_app.py, line 5)\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "tests.broken_app:hooks"],
        ["worker", "tests.broken_app:hooks"],
        ["replay", "--dead", "--app", "tests.broken_app:hooks"],
    ],
    ids=["serve", "worker", "replay"],
)
def test_debug_prints_the_traceback_before_the_error_line(
    runner: CliRunner, inbox: dict[str, str], args: list[str]
) -> None:
    result = runner.invoke(cli, [*args, "--debug"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Traceback (most recent call last):\n")
    assert f'File "{ROOT / "tests" / "broken_app.py"}", line 5' in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: cannot import 'tests.broken_app': ValueError: ")
    assert runner.invoke(cli, args).stderr.count("\n") == 1  # and without --debug, one line


def test_store_option_replaces_the_apps_store_and_leaves_the_environment_alone(
    runner: CliRunner, inbox: dict[str, str], tmp_path: Path
) -> None:
    other = f"sqlite:///{tmp_path}/other.db"
    dead_id, _ = exhaust(other, inbox["ALERTHOOKS_TEST_OUT"])
    replayed = runner.invoke(
        cli, ["replay", "--dead", "--app", "tests.inbox_app:hooks", "--store", other]
    )
    assert replayed.exit_code == 0, replayed.output
    assert "1 handler(s) ran again: 1 done, 0 failed again" in replayed.output
    assert handled(Path(inbox["ALERTHOOKS_TEST_OUT"])) == Counter({dead_id: 1})
    assert sys.modules["tests.inbox_app"].hooks.store.url == other
    assert os.environ["ALERTHOOKS_STORE"] == inbox["ALERTHOOKS_STORE"]


def test_serve_a_host_app_with_store_records_into_that_store(
    runner: CliRunner, tmp_path: Path, inbox: dict[str, str]
) -> None:
    other = f"sqlite:///{tmp_path}/other.db"
    port = free_port()
    log = tmp_path / "host.log"
    server = serve(port, inbox, log, "tests.inbox_app:host", "--store", other)
    try:
        payload = stripe_alert_triggered()
        body, headers = signed(payload)
        url = f"http://127.0.0.1:{port}/webhooks/stripe"
        assert httpx.post(url, content=body, headers=headers).status_code == 200
        wait_handled(Path(inbox["ALERTHOOKS_TEST_OUT"]), {payload["id"]}, timeout=10)
    finally:
        server.stop()
    listed = runner.invoke(cli, ["events", "--store", other])
    assert payload["id"] in listed.output
    assert not Path(inbox["ALERTHOOKS_STORE"].removeprefix("sqlite:///")).exists()


def test_help_and_version_are_not_errors(runner: CliRunner) -> None:
    bare = runner.invoke(cli, [])  # the help, as click shows it (exit 2 from click 8.2 on)
    assert bare.exit_code in (0, 2) and "Commands:" in bare.output and "error:" not in bare.output
    for args in (["--help"], ["events", "--help"], ["--version"]):
        shown = runner.invoke(cli, args)
        assert shown.exit_code == 0, shown.output
        assert "error:" not in shown.output
    assert runner.invoke(cli, ["--version"]).output.startswith("alerthooks, version ")


def test_serve_on_a_taken_port_fails_with_one_error_line(
    tmp_path: Path, inbox: dict[str, str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = Proc(
            ["serve", "tests.inbox_app:hooks", "--port", str(port)], inbox, tmp_path / "p.log"
        )
        code = proc.popen.wait(30)
        proc.stop()
    log = (tmp_path / "p.log").read_text()
    assert code != 0
    (error,) = [line for line in log.splitlines() if line.startswith("ERROR")]
    assert f"('127.0.0.1', {port})" in error and "address already in use" in error
    assert "Traceback" not in log
