"""Hostile HTTP against a real ``alerthooks serve``: a client streaming a huge header, many
clients sending their headers byte by byte, more connections than allowed. Each is cut off
(in bytes, in time, in number) while signed deliveries keep being accepted."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from uvicorn.protocols.http.h11_impl import H11Protocol

from alerthooks.cli import serving
from alerthooks.cli.serving import BoundedH11Protocol, limit_for, server_settings
from alerthooks.testing import stripe_alert_triggered

from .conftest import free_port
from .helpers import wait_until
from .test_cli_inbox import ROOT, Proc, serve, signed, wait_handled

HEADER_TIMEOUT = 2.0


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.chdir(ROOT)
    yield {
        "ALERTHOOKS_STORE": f"sqlite:///{tmp_path}/inbox.db",
        "ALERTHOOKS_TEST_OUT": str(tmp_path / "handled.txt"),
    }


@contextlib.contextmanager
def served(env: dict[str, str], log: Path, *options: str) -> Iterator[str]:
    port = free_port()
    server = serve(port, env, log, "tests.inbox_app:hooks", *options)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


async def closed_by_server(reader: asyncio.StreamReader) -> None:
    """Return once the server closes (EOF or reset), discarding anything it answers."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass


async def stream_huge_header(port: int, limit: int) -> int:
    """Send one request whose header grows until the server cuts it off; return the bytes sent
    by then (``limit`` if it never did)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    closing = asyncio.ensure_future(closed_by_server(reader))
    try:
        writer.write(b"POST /stripe HTTP/1.1\r\nHost: x\r\nX-Flood: ")
        chunk = b"a" * 65536
        while sent < limit and not closing.done():
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
    except ConnectionError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(closing, 10)
    return sent


async def slow_header(port: int, gap: float) -> float:
    """Send a request's headers one byte per ``gap`` seconds; return how long the server let
    the connection live."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    closing = asyncio.ensure_future(closed_by_server(reader))
    line = b"POST /stripe HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 10_000
    try:
        for byte in line:
            writer.write(bytes([byte]))
            await writer.drain()
            done, _ = await asyncio.wait({closing}, timeout=gap)
            if done:
                break
        await asyncio.wait_for(closing, 30)
    except ConnectionError:
        pass
    finally:
        writer.close()
    return time.monotonic() - started


async def deliver_all(base: str, count: int, gap: float) -> list[tuple[str, int, float]]:
    """Post ``count`` signed deliveries, one every ``gap`` seconds; (id, status, seconds)."""
    answers: list[tuple[str, int, float]] = []
    async with httpx.AsyncClient(base_url=base, timeout=15) as client:
        for _ in range(count):
            payload = stripe_alert_triggered()
            body, headers = signed(payload)
            started = time.monotonic()
            response = await client.post("/stripe", content=body, headers=headers)
            answers.append((payload["id"], response.status_code, time.monotonic() - started))
            await asyncio.sleep(gap)
    return answers


async def test_header_flood_and_slow_headers_are_cut_off_while_deliveries_go_on(
    env: dict[str, str], tmp_path: Path
) -> None:
    with served(env, tmp_path / "serve.log", "--header-timeout", str(HEADER_TIMEOUT)) as base:
        port = int(base.rsplit(":", 1)[1])
        started = time.monotonic()
        floods = [stream_huge_header(port, 64 << 20) for _ in range(2)]
        slow = [slow_header(port, 0.25) for _ in range(150)]
        results = await asyncio.gather(
            asyncio.gather(*floods), asyncio.gather(*slow), deliver_all(base, 20, 0.1)
        )
        flooded, lived, answers = results
        elapsed = time.monotonic() - started
    # A 64 KiB header bound: cut off after a few MiB at most (the kernel buffers some).
    assert all(sent < 16 << 20 for sent in flooded), flooded
    # Every slow client was closed by the server, about HEADER_TIMEOUT after it connected.
    assert all(HEADER_TIMEOUT / 2 <= seconds < HEADER_TIMEOUT + 10 for seconds in lived), sorted(
        lived
    )
    # Deliveries went on meanwhile: all accepted, none near the client's timeout.
    assert [status for _, status, _ in answers] == [200] * 20, answers
    assert max(seconds for _, _, seconds in answers) < 10, answers
    assert elapsed < 60
    wait_handled(Path(env["ALERTHOOKS_TEST_OUT"]), {event_id for event_id, _, _ in answers})


async def test_connections_beyond_the_limit_are_closed_at_once(
    env: dict[str, str], tmp_path: Path
) -> None:
    with served(
        env, tmp_path / "serve.log", "--limit-concurrency", "10", "--header-timeout", "60"
    ) as base:
        port = int(base.rsplit(":", 1)[1])
        opened = [await asyncio.open_connection("127.0.0.1", port) for _ in range(30)]
        try:
            closings = [asyncio.ensure_future(closed_by_server(r)) for r, _ in opened]
            done, pending = await asyncio.wait(closings, timeout=5)
            # Long before the 60 s header deadline, all but the first few were closed.
            assert len(done) >= 20, len(done)
            assert len(pending) <= 10
            for task in pending:
                task.cancel()
        finally:
            for _, writer in opened:
                writer.close()
        # Once they are gone, a delivery is accepted again.
        answers = await deliver_all(base, 1, 0)
        assert [status for _, status, _ in answers] == [200]


async def test_serve_mounts_the_health_checks_unless_told_not_to(
    env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    host = serve(port, env, tmp_path / "host.log", "tests.inbox_app:host")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            live = await client.get("/_alerthooks/live")
            ready = await client.get("/_alerthooks/ready")
            webhook = await client.get("/webhooks/stripe")
    finally:
        host.stop()
    assert (live.status_code, live.json()) == (200, {"status": "live"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert webhook.status_code == 405  # the host app still serves its routes
    port = free_port()
    bare = serve(port, env, tmp_path / "bare.log", "tests.inbox_app:hooks", "--no-health")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/_alerthooks/live")).status_code == 404
    finally:
        bare.stop()


def test_serve_settings_always_use_the_bounded_h11_parser() -> None:
    settings = server_settings(max_header_bytes=4096, header_timeout=1.5, limit_concurrency=7)
    protocol = settings["http"]
    assert issubclass(protocol, BoundedH11Protocol) and issubclass(protocol, H11Protocol)
    assert protocol.header_timeout == 1.5
    assert settings["h11_max_incomplete_event_size"] == 4096
    assert settings["limit_concurrency"] == 7


def test_serve_stops_on_ctrl_c_quietly(env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    proc = serve(free_port(), env, log)
    # uvicorn shuts down on SIGINT and raises it again once done; serve ends as uvicorn.run.
    assert proc.stop(signal.SIGINT) == 0, log.read_text()
    text = log.read_text()
    assert "Application shutdown complete" in text
    assert "Aborted" not in text and "Traceback" not in text, text


def test_serve_refuses_a_nonsense_bound(env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "bad.log"
    proc = Proc(["serve", "tests.inbox_app:hooks", "--header-timeout", "0"], env, log)
    assert proc.popen.wait(30) == 2
    proc.stop()
    text = log.read_text()
    assert "--header-timeout" in text and "Traceback" not in text


# -- the header block's exact bound -----------------------------------------------------------

HEADER_LIMIT = 8192


@pytest.fixture(scope="module")
def header_bound_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp("header-bound")
    env = {
        "ALERTHOOKS_STORE": f"sqlite:///{tmp}/inbox.db",
        "ALERTHOOKS_TEST_OUT": str(tmp / "handled.txt"),
    }
    port = free_port()
    server = serve(
        port,
        env,
        tmp / "serve.log",
        "tests.inbox_app:hooks",
        "--max-header-bytes",
        str(HEADER_LIMIT),
    )
    try:
        yield port
    finally:
        server.stop()


def header_block(size: int, *, many: bool) -> tuple[bytes, bytes]:
    """A signed delivery whose header block (request line to the blank line) is exactly ``size``
    bytes, padded with one long header or with many short ones; (head, body)."""
    body, headers = signed(stripe_alert_triggered())
    head = b"POST /stripe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\n".encode()
    head += b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
    pad = size - len(head) - 2  # the blank line
    lines: list[bytes] = []
    while pad > 0:
        # "X-Pad-NNNNN: " + value + CRLF; short lines when ``many``, one line otherwise.
        name = f"X-Pad-{len(lines):05d}: ".encode()
        room = pad - len(name) - 2
        value = min(room, 40) if many and pad > 120 else room
        if many and pad > 120 and pad - (len(name) + value + 2) < len(name) + 3:
            value = room  # never leave a remainder too short for one more header line
        lines.append(name + b"v" * value + b"\r\n")
        pad -= len(lines[-1])
    block = head + b"".join(lines) + b"\r\n"
    assert len(block) == size and pad == 0
    return block, body


async def send_in_pieces(
    port: int, data: bytes, piece: int, *, until_closed: bool = False
) -> bytes:
    """Send ``data`` in ``piece``-byte writes; return what the server answered before closing
    (or, unless ``until_closed``, until its first response was complete)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = b""
    try:
        for start in range(0, len(data), piece):
            writer.write(data[start : start + piece])
            await writer.drain()
            if piece < len(data):
                await asyncio.sleep(0.002)  # separate segments, as a slow client sends them
    except ConnectionError:
        pass
    with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
        while chunk := await asyncio.wait_for(reader.read(65536), 10):
            answer += chunk
            if not until_closed and b"\r\n\r\n" in answer:
                head, _, rest = answer.partition(b"\r\n\r\n")
                length = [
                    int(line.split(b":")[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                ]
                if length and len(rest) >= length[0]:
                    break
    writer.close()
    return answer


@pytest.mark.parametrize("many", [False, True], ids=["one-header", "many-headers"])
@pytest.mark.parametrize("piece", [0, 4096, 1000], ids=["one-write", "4KiB-pieces", "1000B-pieces"])
async def test_a_header_block_one_byte_over_the_bound_is_refused(
    header_bound_server: int, many: bool, piece: int
) -> None:
    port = header_bound_server
    block, body = header_block(HEADER_LIMIT + 1, many=many)
    answer = await send_in_pieces(port, block + body, piece or len(block + body))
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    # Exactly at the bound, the same delivery is accepted.
    block, body = header_block(HEADER_LIMIT, many=many)
    answer = await send_in_pieces(port, block + body, piece or len(block + body))
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


async def test_the_bound_applies_to_each_request_on_a_kept_alive_connection(
    header_bound_server: int,
) -> None:
    fits, fits_body = header_block(HEADER_LIMIT, many=True)
    over, over_body = header_block(HEADER_LIMIT + 1, many=False)
    # Pipelined: the second request's block sits in the buffer when the first is answered.
    pipelined = fits + fits_body + over + over_body
    answer = await send_in_pieces(header_bound_server, pipelined, len(pipelined), until_closed=True)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
    # ... and the second, one byte over, is refused (431 or closed), not accepted.
    assert answer.count(b"HTTP/1.1 200 ") == 1, answer[:600]


# -- a reconnecting slow-header flood of twice the connection limit ---------------------------

FLOOD_FDS = 1024  # the common default fd limit; serve derives its connection limit from it
FLOOD_SECONDS = 4.0


def serve_with_fd_limit(
    port: int, env: dict[str, str], log: Path, fds: int
) -> subprocess.Popen[bytes]:
    """``alerthooks serve`` with its defaults, in a process whose fd limit (soft and hard) is
    ``fds``."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (fds, fds))

    handle = log.open("ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from alerthooks.cli import main; main()",
            "serve",
            "tests.inbox_app:hooks",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=handle,
        stderr=subprocess.STDOUT,
        preexec_fn=limit,
    )
    handle.close()
    return proc


def start_flood(port: int, count: int, seconds: float, sources: int = 1) -> subprocess.Popen[str]:
    """Start tests/flood_client.py against 127.0.0.1:``port`` and return once all its clients
    have connected (it stops by itself after ``seconds``)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.flood_client",
            str(port),
            str(count),
            str(seconds),
            str(sources),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "started\n"
    return proc


def flood_report(proc: subprocess.Popen[str]) -> dict[str, float]:
    """Wait for the flood to stop by itself and return what it counted."""
    out, _ = proc.communicate(timeout=60)
    report: dict[str, float] = json.loads(out)
    return report


def answers_at(base: str) -> bool:
    try:
        httpx.get(base + "/", timeout=1)
    except httpx.TransportError:
        return False
    return True


def deliver_timed(base: str, seconds: float) -> list[tuple[int, float]]:
    """Signed deliveries one after another, each on a new connection as a provider's would be,
    for ``seconds``; (status or 0 when it failed, seconds it took)."""
    answers: list[tuple[int, float]] = []
    client = httpx.Client(
        base_url=base, timeout=5, limits=httpx.Limits(max_keepalive_connections=0)
    )
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body, headers = signed(stripe_alert_triggered())
        started = time.monotonic()
        try:
            status = client.post("/stripe", content=body, headers=headers).status_code
        except httpx.TransportError:
            status = 0
        answers.append((status, time.monotonic() - started))
        time.sleep(0.01)  # about 100 deliveries a second, not a benchmark
    client.close()
    return answers


async def test_a_reconnecting_slow_header_flood_of_twice_the_limit_does_not_lock_out_deliveries(
    env: dict[str, str], tmp_path: Path
) -> None:
    limit = limit_for(FLOOD_FDS)
    port = free_port()
    log = tmp_path / "serve.log"
    server = serve_with_fd_limit(port, env, log, FLOOD_FDS)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while not await asyncio.to_thread(answers_at, base):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.05)
        flood = start_flood(port, 2 * limit, FLOOD_SECONDS + 1)
        answers = deliver_timed(base, FLOOD_SECONDS)
        report = flood_report(flood)
    finally:
        server.terminate()
        server.wait(15)
    statuses = [status for status, _ in answers]
    latencies = sorted(seconds for _, seconds in answers)
    ok = statuses.count(200) / len(statuses)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    assert len(answers) >= 20, len(answers)
    assert ok >= 0.99, (ok, [s for s in statuses if s != 200][:20])
    # None waited anywhere near a timeout or a SYN retransmission (the p99 under 100 ms that
    # the issue asks for is measured by benchmarks/connection_flood.py, not timed here).
    assert p99 < 1.0, (p99, latencies[-10:])
    # The flood was real: the server held its limit and kept closing flood connections.
    assert report["peak"] >= limit and report["closed"] >= limit, (report, limit)
    # The limit serve chose from the fd limit (and printed), and so the flood's size.
    assert f"limit-concurrency {limit}, fd limit {FLOOD_FDS})" in log.read_text()


# -- what serve's event loop spends under a churn of connections -----------------------------


async def answer_ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The least ASGI app: 200 to every request."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@contextlib.asynccontextmanager
async def in_process(**options: Any) -> AsyncIterator[tuple[serving.Server, int]]:
    """:func:`serving.server` over :func:`answer_ok` with ``options`` (by default
    :func:`server_settings`), started in this event loop on a free port; the garbage collector's
    freeze is undone afterwards."""
    port = free_port()
    options = options or server_settings()
    started = serving.server(answer_ok, host="127.0.0.1", port=port, lifespan="off", **options)
    task = asyncio.ensure_future(started.serve())
    try:
        while not started.started:
            assert not task.done(), task
            await asyncio.sleep(0.01)
        yield started, port
    finally:
        started.should_exit = True
        await asyncio.wait_for(task, 15)
        gc.unfreeze()


def listen_backlog(port: int) -> int:
    """The kernel's listen backlog of the socket listening on 127.0.0.1:``port`` (``ss``)."""
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[2])  # State Recv-Q Send-Q ...: a listener's Send-Q is its backlog


def connect_raw(port: int, count: int) -> list[socket.socket]:
    """``count`` blocking connections whose handshakes the kernel completes on its own (they
    wait in the accept queue until the server's loop runs), each with half a request head."""
    clients = []
    for _ in range(count):
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        clients.append(client)
    return clients


async def test_serve_keeps_the_whole_backlog_but_accepts_a_batch_per_turn_of_the_loop() -> None:
    async with in_process(**{**server_settings(), "backlog": 448}) as (started, port):
        assert listen_backlog(port) == 448
        assert gc.get_freeze_count() > 0  # what the app made at start is out of the passes
        clients = connect_raw(port, 200)
        try:
            # Turn by turn, the loop takes in at most a batch of them (asyncio alone would take
            # all 200 in one turn) and runs everything else in between.
            seen, steps = [0], []
            for _ in range(200):
                await asyncio.sleep(0)
                seen.append(len(started.server_state.connections))
                steps.append(seen[-1] - seen[-2])
                if seen[-1] == 200:
                    break
            assert seen[-1] == 200, seen
            assert max(steps) <= 2 * serving.ACCEPT_BATCH < len(clients), steps
        finally:
            for client in clients:
                client.close()


async def test_a_closed_connection_is_freed_without_the_garbage_collector() -> None:
    async with in_process() as (started, port):
        gc.collect()
        gc.disable()
        try:
            clients = connect_raw(port, 50)
            await wait_until(lambda: len(started.server_state.connections) == 50)
            transports = [weakref.ref(conn.transport) for conn in started.server_state.connections]
            for client in clients:
                client.close()
            # asyncio's selector transport refers to itself: without the protocol breaking that
            # cycle, each one waits for a full collection (tens of ms of the loop in a flood).
            await wait_until(
                lambda: all(ref() is None for ref in transports),
                within=5,
                what="the closed connections' transports to be freed",
            )
        finally:
            gc.enable()


async def test_each_connection_waiting_for_headers_is_closed_at_its_own_deadline() -> None:
    timeout = 0.6
    async with in_process(**server_settings(header_timeout=timeout)) as (started, port):
        opened = []
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            # (the writer kept too: a StreamWriter closes its connection when it is collected)
            closing = asyncio.ensure_future(closed_by_server(reader))
            opened.append((time.monotonic(), closing, writer))
            await asyncio.sleep(timeout / 3)
        # One that sends its request in time is answered, not closed.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
        lived = []
        for began, closing, _ in opened:
            await asyncio.wait_for(closing, 10)
            lived.append(time.monotonic() - began)
        # Each lived its own timeout (not less, and not the last one's deadline for all).
        assert all(timeout <= life < timeout + 2 for life in lived), lived
        assert not writer.is_closing() and not reader.at_eof()
        writer.close()
        await wait_until(lambda: not started.server_state.connections)
        protocol = started.config.http_protocol_class
        assert isinstance(protocol, type) and issubclass(protocol, BoundedH11Protocol)
        waiting = protocol._waiting
        assert not waiting and waiting.timer is None  # nothing left scheduled for a stopped server
