"""Bodies over a real socket: a real uvicorn server on loopback, driven with raw sockets.

Oversized bodies are cut off while streaming without reading the rest, and a client that stalls
mid-body gets a 408 instead of holding the request open.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import Chargebee, Stripe
from alerthooks.testing import stripe_alert_triggered, stripe_signature_header

from .conftest import CB_PASSWORD, CB_USER, STRIPE_SECRET
from .helpers import ServedApp
from .hostile import read_response

LIMIT = 64 * 1024
TIMEOUT = 0.5


class _CountingApp:
    """Passes through to ``app`` and counts the body bytes the app took from the server."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.consumed = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counting_receive() -> Any:
            message = await receive()
            self.consumed += len(message.get("body", b""))
            return message

        await self.app(scope, counting_receive, send)


@pytest.fixture
def seen() -> list[AlertEvent]:
    return []


@pytest.fixture
def served(seen: list[AlertEvent]) -> Iterator[tuple[ServedApp, _CountingApp]]:
    hooks = AlertHooks(
        providers=[Stripe(STRIPE_SECRET), Chargebee((CB_USER, CB_PASSWORD))],
        store="memory://",
        max_body_bytes=LIMIT,
        body_timeout=TIMEOUT,
    )
    hooks.on("*")(seen.append)
    app = _CountingApp(hooks)
    with ServedApp(app) as server:
        yield server, app


def _connect(server: ServedApp) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def _head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_signed_delivery_over_a_real_socket_is_accepted(
    served: tuple[ServedApp, _CountingApp], seen: list[AlertEvent]
) -> None:
    server, _ = served
    body = json.dumps(stripe_alert_triggered()).encode()
    headers = {
        "Content-Length": str(len(body)),
        "Stripe-Signature": stripe_signature_header(body, STRIPE_SECRET),
    }
    with _connect(server) as sock:
        sock.sendall(_head("/stripe", headers) + body)
        assert _status(read_response(sock, 5)) == 200
    assert len(seen) == 1


@pytest.mark.parametrize("sent", [0, 100], ids=["no-body-byte", "part-of-the-body"])
def test_client_stalling_mid_body_gets_408(
    served: tuple[ServedApp, _CountingApp], seen: list[AlertEvent], sent: int
) -> None:
    server, _ = served
    body = json.dumps(stripe_alert_triggered()).encode()
    headers = {
        "Content-Length": str(len(body)),
        "Stripe-Signature": stripe_signature_header(body, STRIPE_SECRET),
    }
    with _connect(server) as sock:
        started = time.monotonic()
        sock.sendall(_head("/stripe", headers) + body[:sent])
        response = read_response(sock, TIMEOUT + 5)
        waited = time.monotonic() - started
    assert response, "the server never answered a stalled body"
    assert _status(response) == 408
    assert TIMEOUT * 0.8 <= waited < TIMEOUT + 3
    assert seen == []


def test_declared_length_over_the_limit_is_413_before_any_body_is_read(
    served: tuple[ServedApp, _CountingApp],
) -> None:
    server, app = served
    with _connect(server) as sock:
        sock.sendall(_head("/stripe", {"Content-Length": str(100 * LIMIT)}))
        response = read_response(sock, 5)
    assert _status(response) == 413
    assert app.consumed == 0


def test_chunked_body_past_the_limit_is_cut_off_and_not_read_further(
    served: tuple[ServedApp, _CountingApp], seen: list[AlertEvent]
) -> None:
    server, app = served
    chunk = b"x" * 8192
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    offered = 64 * 1024 * 1024
    pushed = 0
    with _connect(server) as sock:
        sock.sendall(_head("/chargebee", {"Transfer-Encoding": "chunked"}))
        sock.settimeout(2)
        try:
            while pushed < offered:
                sock.sendall(frame)
                pushed += len(chunk)
        except (TimeoutError, ConnectionResetError, BrokenPipeError):
            pass  # the server stopped reading (buffers full) or closed the connection
        response = read_response(sock, 5)
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    # The app read at most one message past the limit; the kernel buffers some more at most.
    assert app.consumed <= LIMIT + 2 * len(chunk) + 65536
    assert pushed < offered / 4
    assert seen == []


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("POST", "/nope", 404), ("PUT", "/stripe", 405)],
    ids=["unknown-path", "wrong-method"],
)
def test_answer_before_the_body_closes_the_connection_and_stops_reading(
    served: tuple[ServedApp, _CountingApp], method: str, path: str, status: int
) -> None:
    server, _ = served
    chunk = b"x" * 8192
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    offered = 64 * 1024 * 1024
    pushed = 0
    head = _head(path, {"Transfer-Encoding": "chunked", "Stripe-Signature": "t=1,v1=00"})
    with _connect(server) as sock:
        sock.sendall(head.replace(b"POST", method.encode(), 1))
        sock.settimeout(2)
        try:
            while pushed < offered:
                sock.sendall(frame)
                pushed += len(chunk)
        except (TimeoutError, ConnectionResetError, BrokenPipeError):
            pass
        response = read_response(sock, 5)
        assert _status(response) == status
        assert b"connection: close" in response.lower()
    assert pushed < offered / 4
