"""How ``alerthooks serve`` (and ``make run``) runs uvicorn: request headers bounded in size and
in time, connections bounded in number, and the health checks mounted beside the app.

uvicorn's h11 parser refuses a header block over ``h11_max_incomplete_event_size`` at once (its
httptools parser, picked when installed, has no such bound and reparses a growing header, so
it is never used here), but neither parser times out a header sent byte by byte: the protocol
below closes a connection whose request headers are not complete ``header_timeout`` seconds
after it opened or after the previous response. Bodies are bounded by the app itself
(``max_body_bytes``, ``body_timeout``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)

DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_LIMIT_CONCURRENCY = 1000
DEFAULT_TIMEOUT_KEEP_ALIVE = 5
HEALTH_PREFIX = "/_alerthooks"


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request's headers, and connections beyond
    ``limit_concurrency`` closed as they are accepted rather than held open.

    :func:`bounded_h11` makes one with its ``header_timeout``.
    """

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Accept the connection (or close it when too many are open) and start its header
        deadline."""
        super().connection_made(transport)
        limit = self.config.limit_concurrency
        if limit is not None and len(self.connections) > limit:
            logger.debug(
                "connection refused: %d open, limit_concurrency %d", len(self.connections), limit
            )
            transport.close()
            return
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        """Parse ``data``; once a request's headers are complete, its deadline is off."""
        super().data_received(data)
        if self._header_timer is not None and self.conn.their_state is not h11.IDLE:
            self._header_timer.cancel()
            self._header_timer = None

    def on_response_complete(self) -> None:
        """After a response, the next request's headers get a deadline of their own."""
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the deadline with the connection."""
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            logger.debug(
                "connection from %s closed: request headers not complete after %g s",
                self.client,
                self.header_timeout,
            )
            self.transport.close()


def bounded_h11(header_timeout: float = DEFAULT_HEADER_TIMEOUT) -> type[BoundedH11Protocol]:
    """The protocol class to give uvicorn as ``http=``: h11, headers due within
    ``header_timeout`` seconds."""
    return type("BoundedH11Protocol", (BoundedH11Protocol,), {"header_timeout": header_timeout})


def server_settings(
    *,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    limit_concurrency: int = DEFAULT_LIMIT_CONCURRENCY,
    timeout_keep_alive: int = DEFAULT_TIMEOUT_KEEP_ALIVE,
) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` that bound what one client
    can hold: the header block's size and time, open connections (beyond ``limit_concurrency``
    a request is answered 503, a connection closed), and idle keep-alive."""
    return {
        "http": bounded_h11(header_timeout),
        "h11_max_incomplete_event_size": max_header_bytes,
        "limit_concurrency": limit_concurrency,
        "timeout_keep_alive": timeout_keep_alive,
    }


class WithHealth:
    """``app`` with ``health`` (an ASGI app, such as ``hooks.health_app()``) mounted at
    ``prefix``: ``GET /_alerthooks/live`` and ``/_alerthooks/ready``. The lifespan goes to
    ``app`` alone."""

    def __init__(self, app: ASGIApp, health: ASGIApp, prefix: str = HEALTH_PREFIX) -> None:
        self.app = app
        self.health = health
        self.prefix = prefix.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            local = path[len(root) :] if root and path.startswith(root) else path
            if local == self.prefix or local.startswith(self.prefix + "/"):
                await self.health({**scope, "root_path": root + self.prefix}, receive, send)
                return
        await self.app(scope, receive, send)
