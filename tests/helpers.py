"""What many tests need: hooks with the test credentials, calling an ASGI app by hand, serving
one with uvicorn on loopback, waiting for a condition, and reading captured log lines."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import uvicorn
from starlette.types import ASGIApp, Message

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import Chargebee, Stripe, builtin_providers
from alerthooks.store import Store

from .conftest import CB_PASSWORD, CB_USER, STRIPE_SECRET, free_port

__all__ = [
    "STRIPE_SECRET",
    "Sent",
    "ServedApp",
    "free_port",
    "http_scope",
    "logged",
    "make_hooks",
    "one_body",
    "recorded",
    "wait_until",
    "wait_until_sync",
]


def make_hooks(
    store: str | Store = "memory://",
    *,
    stripe: str | list[str] = STRIPE_SECRET,
    chargebee: tuple[str, str] | list[tuple[str, str]] = (CB_USER, CB_PASSWORD),
    **options: Any,
) -> AlertHooks:
    """An AlertHooks for the conftest credentials (Stripe secret, Chargebee Basic auth), and
    the other built-in providers from their environment, as ``AlertHooks()`` builds them."""
    options.setdefault(
        "providers",
        [
            Stripe(stripe),
            Chargebee(chargebee),
            *(p for p in builtin_providers() if p.name not in ("stripe", "chargebee")),
        ],
    )
    return AlertHooks(store=store, **options)


def recorded(hooks: AlertHooks, event_type: str = "*") -> list[AlertEvent]:
    """A list that every event of ``event_type`` delivered to ``hooks`` is appended to."""
    events: list[AlertEvent] = []

    async def record(event: AlertEvent) -> None:
        events.append(event)

    hooks.add_handler(record, event_type, name=f"tests.recorded.{id(events)}")
    return events


class Sent:
    """An ASGI ``send`` that keeps the messages, with the answer read back from them."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        """The status of the response started."""
        status: int = self._start()["status"]
        return status

    def header(self, name: bytes) -> bytes | None:
        """A response header's value (lower-case name), or None."""
        for key, value in self._start()["headers"]:
            if key == name:
                found: bytes = value
                return found
        return None

    @property
    def body(self) -> bytes:
        """The response body."""
        return b"".join(
            m.get("body", b"") for m in self.messages if m["type"] == "http.response.body"
        )

    def _start(self) -> Message:
        return next(m for m in self.messages if m["type"] == "http.response.start")


def http_scope(
    path: str, *, method: str = "POST", headers: Iterable[tuple[bytes, bytes]] = ()
) -> dict[str, Any]:
    """A minimal HTTP scope for calling an app directly."""
    return {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "headers": list(headers),
    }


def one_body(body: bytes) -> Callable[[], Any]:
    """An ASGI ``receive`` that delivers ``body`` in one message, then a disconnect."""
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        if messages:
            return messages.pop()
        await asyncio.sleep(0)
        return {"type": "http.disconnect"}

    return receive


class ServedApp:
    """An ASGI app served by a real uvicorn server on a free loopback port, in a thread
    (``with ServedApp(app) as served: ... served.port``); its lifespan runs."""

    def __init__(self, app: ASGIApp | Any, port: int = 0, **config: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port: int = self.sock.getsockname()[1]
        config.setdefault("log_level", "warning")
        config.setdefault("lifespan", "on")
        self.server = uvicorn.Server(uvicorn.Config(app, **config))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServedApp:
        self.thread.start()
        wait_until_sync(
            lambda: self.server.started or not self.thread.is_alive(), what="uvicorn to start"
        )
        if not self.server.started:
            raise RuntimeError("uvicorn did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


async def wait_until(
    condition: Callable[[], object], *, within: float = 10.0, what: str = "the condition"
) -> None:
    """Return once ``condition()`` is true; fail the test after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {within} s waiting for {what}"
        await asyncio.sleep(0.01)


def wait_until_sync(
    condition: Callable[[], object], *, within: float = 10.0, what: str = "the condition"
) -> None:
    """:func:`wait_until` for code outside an event loop."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {within} s waiting for {what}"
        time.sleep(0.01)


def logged(
    caplog: pytest.LogCaptureFixture, containing: str = "", *, level: int | None = None
) -> list[str]:
    """The captured log messages that contain ``containing`` (at ``level``, when given)."""
    return [
        r.getMessage()
        for r in caplog.records
        if containing in r.getMessage() and (level is None or r.levelno == level)
    ]
