"""How ``alerthooks serve`` (and ``make run``) runs uvicorn: request headers bounded in size and
in time, connections bounded in number (the bound derived from the process's fd limit), and the
health checks mounted beside the app.

uvicorn's h11 parser checks only an *incomplete* header block against
``h11_max_incomplete_event_size`` (its httptools parser, picked when installed, has no bound at
all and reparses a growing header, so it is never used here): the protocol below counts the
header block itself, from the request line's first byte to the end of the blank line, and
answers 431 (closing the connection) the moment it is over ``max_header_bytes``, whether it came
in one write or in pieces. Neither parser times out a header sent byte by byte: the protocol
closes a connection whose request headers are not complete ``header_timeout`` seconds after it
opened or after the previous response.

Connections: at most ``limit_concurrency`` are open. A connection beyond it closes the one that
has waited longest for its request headers (a slow or idle client) rather than itself, so a flood
of slow connections churns among itself while a client that sends its request at once is served;
a connection whose request is under way is never closed for another. Bodies are bounded by the
app itself (``max_body_bytes``, ``body_timeout``).

Under such a churn, what a real delivery waits for is the event loop: :func:`run` (what ``serve``
runs) accepts at most :data:`ACCEPT_BATCH` connections per turn of the loop whatever the listen
backlog, and freezes the objects the app made at start out of the garbage collector's full
passes; the protocol breaks the reference cycle asyncio's socket transport keeps to itself, so a
closed connection is freed at once instead of piling up for a full collection (see
docs/performance.md, "A connection flood").
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import os
import re
import socket
from typing import Any, ClassVar

import h11
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)

DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_TIMEOUT_KEEP_ALIVE = 5
HEALTH_PREFIX = "/_alerthooks"

FD_RESERVE = 128
"""File descriptors kept out of the connection limit for the store, logs and the app."""
MAX_LIMIT_CONCURRENCY = 10_000
"""The largest connection limit derived from the fd limit."""
MAX_FDS = 1 << 20
"""How far the soft fd limit is raised when the hard limit is unlimited."""
ACCEPT_BATCH = 16
"""Connections :func:`run` accepts per turn of the event loop. asyncio accepts up to the listen
backlog at once, so with a backlog of thousands a flood's reconnects fill whole turns of the loop
(hundreds of milliseconds) before a delivery already accepted is read; the kernel's backlog stays
what :func:`backlog_for` says."""

_BLANK_LINE = re.compile(rb"\n\r?\n")
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: 32\r\n\r\n"
    b"Request header block too large.\n"
)


def fd_limit(*, raise_soft: bool = False) -> int:
    """The soft limit on open files (``RLIMIT_NOFILE``) this process has, or — ``raise_soft`` —
    has once it is raised to the hard limit (at most :data:`MAX_FDS`), which it then is.
    Where there are no rlimits (Windows), 1024."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = MAX_FDS if hard == resource.RLIM_INFINITY else min(hard, MAX_FDS)
    if soft != resource.RLIM_INFINITY and soft >= target:
        return int(soft)
    if not raise_soft:
        return int(target)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError) as exc:  # pragma: no cover - a sandbox that forbids it
        logger.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
        return int(soft)
    return int(target)


def somaxconn() -> int:
    """The kernel's cap on a listen backlog (``net.core.somaxconn``; 4096 where unreadable)."""
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return max(16, int(f.read()))
    except (OSError, ValueError):
        return 4096


def backlog_for(fds: int) -> int:
    """The listen backlog for a process allowed ``fds`` open files: half of them after
    :data:`FD_RESERVE`, at most :func:`somaxconn`.

    Under a flood of reconnecting clients beyond the connection limit, every client the server
    has closed is connecting again at once: when they outnumber the kernel's accept queue, it
    stays full, and a delivery's SYN is dropped and retried a second later. asyncio accepts up
    to the backlog at once before any can be closed, so it comes out of the fd budget."""
    return max(16, min(somaxconn(), (fds - FD_RESERVE) // 2))


def limit_for(fds: int) -> int:
    """The connection limit for a process allowed ``fds`` open files: the listen backlog
    (:func:`backlog_for`), at most :data:`MAX_LIMIT_CONCURRENCY`. Open connections and the
    backlog then fit the fd budget, so a flood never runs the process out of file descriptors
    (which would stop it accepting anyone), and a flood of twice the limit fits too: the limit's
    worth of connections open, the rest in the accept queue."""
    return min(MAX_LIMIT_CONCURRENCY, backlog_for(fds))


DEFAULT_LIMIT_CONCURRENCY = limit_for(fd_limit())
"""``--limit-concurrency``'s default on this machine: :func:`limit_for` the fd limit that
``serve`` raises the soft limit to."""


class _Waiting(collections.OrderedDict["BoundedH11Protocol", float]):
    """The connections of one server waiting for request headers, each with its deadline, longest
    waiting first; and the one timer, set for the first deadline, that closes those past theirs.
    (One timer for all: a timer per connection is three more objects for the garbage collector
    to walk per connection, and a push on the event loop's heap per request.)"""

    timer: asyncio.TimerHandle | None = None

    def wait(
        self, conn: BoundedH11Protocol, loop: asyncio.AbstractEventLoop, timeout: float
    ) -> None:
        self.pop(conn, None)
        self[conn] = deadline = loop.time() + timeout
        if self.timer is None:
            self.timer = loop.call_at(deadline, self._close_late, loop)

    def stop(self, conn: BoundedH11Protocol) -> None:
        if self.pop(conn, None) is not None and not self and self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _close_late(self, loop: asyncio.AbstractEventLoop) -> None:
        self.timer = None
        now = loop.time()
        while self:
            conn, deadline = next(iter(self.items()))
            if deadline > now:
                self.timer = loop.call_at(deadline, self._close_late, loop)
                return
            del self[conn]
            conn._headers_too_slow()


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with each request's header block bounded in bytes
    (``max_header_bytes``, exactly) and in time (``header_timeout``), and open connections in
    number (``limit_concurrency``): beyond it a new connection closes the one that has waited
    longest for its request headers, or itself when every other is busy with a request.

    :func:`bounded_h11` makes one with its bounds; the connections waiting for headers are
    shared by the instances of that class (one server).
    """

    header_timeout: ClassVar[float] = DEFAULT_HEADER_TIMEOUT
    max_header_bytes: ClassVar[int] = DEFAULT_MAX_HEADER_BYTES
    _waiting: ClassVar[_Waiting] = _Waiting()
    _head_bytes = 0
    _head_tail = b""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn answers 503 whenever as many connections as the limit are open, which a flood
        # of idle connections keeps true; here the limit is kept by closing connections, and
        # requests are answered 503 only when that many are in flight (see data_received).
        self._limit: int | None = self.limit_concurrency
        self.limit_concurrency = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Accept the connection, closing the one that has waited longest for its headers (or
        this one) when more than the limit are open, and start its header deadline."""
        super().connection_made(transport)
        self._await_headers()
        limit = self._limit
        if limit is None or len(self.connections) <= limit:
            return
        victim = next(iter(self._waiting))
        if victim is self:  # every other connection is busy with a request
            logger.debug(
                "connection from %s refused: %d open, limit_concurrency %d, none idle",
                self.client,
                len(self.connections),
                limit,
            )
        else:
            logger.debug(
                "connection from %s closed for a new one: %d open, limit_concurrency %d",
                victim.client,
                len(self.connections),
                limit,
            )
        victim._drop()

    def data_received(self, data: bytes) -> None:
        """Parse ``data``, refusing a header block over ``max_header_bytes``; once a request's
        headers are complete, it no longer waits (nor can be closed for another connection)."""
        if self.conn.their_state is h11.IDLE and not self._head_fits(data):
            return
        if self._limit is not None:
            self.limit_concurrency = 0 if len(self.tasks) >= self._limit else None
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._stop_waiting()

    def on_response_complete(self) -> None:
        """After a response, the next request's headers get a deadline and a size of their
        own (counting what the client sent ahead already)."""
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self._head_bytes, self._head_tail = 0, b""
            ahead, _ = self.conn.trailing_data
            if ahead and not self._head_fits(ahead):
                return
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the deadline with the connection, and free its transport at once."""
        self._stop_waiting()
        super().connection_lost(exc)
        # CPython's selector socket transport (3.11) refers to itself through a bound method
        # kept in _read_ready_cb, so every closed connection waits for a full collection, which
        # under a flood of churning connections takes tens of milliseconds of the event loop.
        # The transport has stopped reading by now; uvloop's transports have no such attribute.
        if getattr(self.transport, "_read_ready_cb", None) is not None:
            self.transport._read_ready_cb = None  # type: ignore[attr-defined]

    def _await_headers(self) -> None:
        self._waiting.wait(self, self.loop, self.header_timeout)

    def _stop_waiting(self) -> None:
        self._waiting.stop(self)

    def _close(self) -> None:
        self._stop_waiting()
        self.transport.close()

    def _drop(self) -> None:
        """Close at once, with a reset: nothing is owed to a connection dropped for another."""
        self._stop_waiting()
        self.transport.abort()

    def _head_fits(self, data: bytes) -> bool:
        """Count ``data`` into the header block; answer 431 and close when it is over the
        bound (the block ends with the blank line, wherever in ``data`` that is)."""
        window = self._head_tail + data
        end = _BLANK_LINE.search(window)
        size = self._head_bytes + (end.end() if end else len(window)) - len(self._head_tail)
        if size > self.max_header_bytes:
            logger.info(
                "connection from %s closed: request header block over %d bytes",
                self.client,
                self.max_header_bytes,
            )
            self.transport.write(_TOO_LARGE)
            self._close()
            return False
        if end is None:
            self._head_bytes, self._head_tail = size, window[-2:]
        else:
            self._head_bytes, self._head_tail = 0, b""
        return True

    def _headers_too_slow(self) -> None:
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            logger.debug(
                "connection from %s closed: request headers not complete after %g s",
                self.client,
                self.header_timeout,
            )
            self._close()


def bounded_h11(
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
) -> type[BoundedH11Protocol]:
    """The protocol class to give uvicorn as ``http=`` (one per server): h11, headers due
    within ``header_timeout`` seconds and at most ``max_header_bytes`` long."""
    return type(
        "BoundedH11Protocol",
        (BoundedH11Protocol,),
        {
            "header_timeout": header_timeout,
            "max_header_bytes": max_header_bytes,
            "_waiting": _Waiting(),
        },
    )


def server_settings(
    *,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    limit_concurrency: int | None = None,
    timeout_keep_alive: int = DEFAULT_TIMEOUT_KEEP_ALIVE,
) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` that bound what one client
    can hold: the header block's size and time, open connections and requests in flight
    (``limit_concurrency``, by default :func:`limit_for` this process's fd limit; beyond it a
    new connection closes the one waiting longest for headers, a request is answered 503), and
    idle keep-alive. The listen backlog comes out of the same fd budget.

    Like ``alerthooks serve``, it raises this process's soft fd limit to the hard limit (see
    :func:`fd_limit`): the limits are derived from what the server will have."""
    fds = fd_limit(raise_soft=True)
    return {
        "http": bounded_h11(header_timeout, max_header_bytes),
        "h11_max_incomplete_event_size": max_header_bytes,
        "limit_concurrency": limit_for(fds) if limit_concurrency is None else limit_concurrency,
        "backlog": backlog_for(fds),
        "timeout_keep_alive": timeout_keep_alive,
    }


class Server(uvicorn.Server):
    """uvicorn's server, with the kernel's listen ``backlog`` apart from what asyncio accepts per
    turn of the event loop (the ``backlog`` of its ``config``, :data:`ACCEPT_BATCH` when made
    by :func:`server`), and what the app made at start frozen out of the garbage collector's
    passes (``gc.freeze``) once it has started: under a churn of connections, those passes walk
    only what the connections made."""

    def __init__(self, config: uvicorn.Config, backlog: int) -> None:
        super().__init__(config)
        self.backlog = backlog

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start as uvicorn does, then listen with the whole backlog and freeze."""
        await super().startup(sockets)
        for started in getattr(self, "servers", ()):
            for listener in started.sockets:
                # listen() again, on a duplicate of the descriptor asyncio owns.
                try:
                    with socket.socket(fileno=os.dup(listener.fileno())) as sock:
                        sock.listen(self.backlog)
                except OSError as exc:  # pragma: no cover - no dup() of a socket (Windows)
                    logger.warning(
                        "listen backlog left at %d, not %d: %s",
                        self.config.backlog,
                        self.backlog,
                        exc,
                    )
        gc.collect()
        gc.freeze()


def server(app: Any, **options: Any) -> Server:
    """The :class:`Server` that ``uvicorn.run(app, **options)`` would run in one process (no
    reload, no workers), ``options`` usually including :func:`server_settings`: it listens with
    their ``backlog`` and accepts at most :data:`ACCEPT_BATCH` connections per turn."""
    backlog = int(options.pop("backlog", 2048))
    return Server(uvicorn.Config(app, backlog=min(backlog, ACCEPT_BATCH), **options), backlog)


def run(app: Any, **options: Any) -> None:
    """Serve ``app`` as ``uvicorn.run(app, **options)`` does in one process, with the
    :func:`server` it makes (what ``alerthooks serve`` runs); exit with uvicorn's status 3 when
    it could not start."""
    started = server(app, **options)
    # uvicorn shuts down on SIGINT, then raises it again once done: as uvicorn.run, that ends
    # the serving quietly.
    with contextlib.suppress(KeyboardInterrupt):
        started.run()
    if not started.started:
        raise SystemExit(3)  # uvicorn's STARTUP_FAILURE, as uvicorn.run exits


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
