"""The ASGI adapter: routes ``POST /{provider.name}`` to the :class:`~alerthooks.receiver.Receiver`,
reads bodies within size and time limits, sends the answers, and speaks the lifespan protocol.

It only reads bytes, routes and sends; everything a delivery means is decided by the receiver
(:meth:`~alerthooks.receiver.Receiver.receive`, and the refusals it gives before a body is read).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.types import Receive, Scope, Send

from alerthooks.observe import Observers
from alerthooks.providers import Provider
from alerthooks.receiver import Answer, Receiver, answer
from alerthooks.sources import SourceFilter

logger = logging.getLogger(__name__)

_NOT_FOUND = answer(404, error="not found")
_METHOD_NOT_ALLOWED = answer(405, error="method not allowed")
_TOO_LARGE = answer(413, error="body too large")
_BAD_LENGTH = answer(400, error="invalid Content-Length")
_TIMEOUT = answer(408, error="body not received in time")
_DISCONNECTED = answer(400, error="client disconnected")
_JSON_HEADERS = [(b"content-type", b"application/json")]
# Answers given before the whole body was read close the connection, so the server stops reading.
_EXTRA_HEADERS: dict[int, list[tuple[bytes, bytes]]] = {
    400: [(b"connection", b"close")],
    403: [(b"connection", b"close")],
    404: [(b"connection", b"close")],
    405: [(b"allow", b"POST"), (b"connection", b"close")],
    408: [(b"connection", b"close")],
    413: [(b"connection", b"close")],
}
_EXPIRED = -1.0
# The response headers of each fixed answer, built once; see _response_headers.
_HEADERS_BY_ANSWER: dict[tuple[int, bytes], list[tuple[bytes, bytes]]] = {}


def _response_headers(result: Answer) -> list[tuple[bytes, bytes]]:
    extra = result.headers
    headers = None if extra else _HEADERS_BY_ANSWER.get(result)
    if headers is None:
        status, body = result
        headers = [
            *_JSON_HEADERS,
            (b"content-length", str(len(body)).encode()),
            *_EXTRA_HEADERS.get(status, ()),
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()),
        ]
        if not extra and len(_HEADERS_BY_ANSWER) < 256:
            _HEADERS_BY_ANSWER[result] = headers  # answers carrying a reason vary a little
    return headers


class _BodyTooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


def route_path(scope: Scope) -> str:
    """The request path relative to where this app is mounted."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        if path == root_path:
            return ""
        if path[len(root_path)] == "/":
            return path[len(root_path) :]
    return path


async def acknowledge_lifespan(receive: Receive, send: Send) -> None:
    """Answer an ASGI lifespan for an app with nothing to start or stop (the health and metrics
    apps, served alone)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class ASGIApp:
    """Serves ``receiver`` over ASGI: ``POST /{name}`` for each of ``providers``.

    ``sources`` (when given) has the receiver refuse sources a provider does not allow; bodies
    over ``max_body_bytes`` are 413, bodies not received within ``body_timeout`` seconds 408.
    ``observers`` (when any) see each delivery from its first byte to its answer. ``startup``
    and ``shutdown`` run on the lifespan protocol's messages.
    """

    def __init__(
        self,
        receiver: Receiver,
        providers: Iterable[Provider],
        *,
        observers: Observers,
        sources: SourceFilter | None,
        max_body_bytes: int,
        body_timeout: float,
        startup: Callable[[], Awaitable[None]],
        shutdown: Callable[[], Awaitable[None]],
    ) -> None:
        self.receiver = receiver
        self.observers = observers
        self.sources = sources
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.startup = startup
        self.shutdown = shutdown
        self.routes: dict[str, Provider] = {f"/{p.name}": p for p in providers}
        # Requests reading their body, by task, with their deadline (see _sweep).
        self._reading: dict[asyncio.Task[Any], float] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweeper_loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if self.observers:
                result = await self._observed_http(scope, receive)
            else:
                result = await self._http(scope, receive)
            await send(
                {
                    "type": "http.response.start",
                    "status": result[0],
                    "headers": _response_headers(result),
                }
            )
            await send({"type": "http.response.body", "body": result[1]})
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            # Anyone may try an upgrade; refuse it (the server answers 403) rather than erroring.
            await receive()
            await send({"type": "websocket.close", "code": 1008})
        else:
            raise RuntimeError(f"AlertHooks does not serve {kind!r} connections")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _observed_http(self, scope: Scope, receive: Receive) -> Answer:
        path = route_path(scope)
        provider = self.routes.get(path.rstrip("/") if len(path) > 1 else path)
        if provider is None:
            return await self._http(scope, receive)
        with self.observers.delivery(provider.name) as seen:
            result = await self._http(scope, receive)
            seen.answered(result[0], result[1])
        return result

    async def _http(self, scope: Scope, receive: Receive) -> Answer:
        path = route_path(scope)
        provider = self.routes.get(path.rstrip("/") if len(path) > 1 else path)
        if provider is None:
            return _NOT_FOUND
        if scope["method"] != "POST":
            return _METHOD_NOT_ALLOWED
        if self.sources is not None and not self.sources.allows(provider.name, scope):
            return self.receiver.refuse_source(provider, self.sources.client_address(scope))
        refused = self.receiver.refusal(provider, source=lambda: self._source(scope))
        if refused is not None:
            return refused
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):
                return self.receiver.reject(
                    provider, _BAD_LENGTH, source=lambda: self._source(scope)
                )
            digits = length.lstrip("0")
            if len(digits) > 18 or int(digits or "0") > self.max_body_bytes:
                logger.info("%s delivery rejected: body of %s bytes", provider.name, length)
                return self.receiver.reject(
                    provider,
                    _TOO_LARGE,
                    source=lambda: self._source(scope),
                    body_bytes=int(digits) if len(digits) <= 18 else 0,
                )
        try:
            body = await self._read_body_in_time(receive)
        except _BodyTooLarge:
            logger.info(
                "%s delivery rejected: body over %d bytes", provider.name, self.max_body_bytes
            )
            return self.receiver.reject(provider, _TOO_LARGE, source=lambda: self._source(scope))
        except TimeoutError:
            logger.info("%s delivery rejected: body timed out", provider.name)
            return self.receiver.reject(provider, _TIMEOUT, source=lambda: self._source(scope))
        except _Disconnected:
            return _DISCONNECTED
        return await self.receiver.receive(
            provider, body, headers, source=lambda: self._source(scope)
        )

    def _source(self, scope: Scope) -> object:
        """The client's address (behind trusted proxies, the one they forwarded for)."""
        if self.sources is not None:
            return self.sources.client_address(scope)
        client = scope.get("client")
        return client[0] if client else None

    async def _read_body_in_time(self, receive: Receive) -> bytes:
        """Read the body; raise TimeoutError when it is not complete within ``body_timeout``.

        One timer per app (``_sweep``) cancels reads past their deadline, so a request pays a
        dict entry rather than a timer of its own, and a client that sends the headers and then
        nothing is cut off like one that stalls mid-body.
        """
        task = asyncio.current_task()
        if task is None:
            return await self._read_body(receive)
        loop = task.get_loop()
        reading = self._reading
        reading[task] = loop.time() + self.body_timeout
        if self._sweeper is None or self._sweeper_loop is not loop:
            self._sweeper_loop = loop
            self._sweeper = loop.call_later(self._sweep_period(), self._sweep)
        try:
            return await self._read_body(receive)
        except asyncio.CancelledError:
            if reading.get(task) != _EXPIRED:
                raise
            if hasattr(task, "uncancel"):
                task.uncancel()
            raise TimeoutError from None
        finally:
            reading.pop(task, None)

    def _sweep_period(self) -> float:
        return min(max(self.body_timeout / 4, 0.01), 1.0)

    def _sweep(self) -> None:
        loop = self._sweeper_loop
        assert loop is not None
        now = loop.time()
        for task, deadline in list(self._reading.items()):
            if deadline != _EXPIRED and deadline <= now and task.get_loop() is loop:
                self._reading[task] = _EXPIRED
                task.cancel()
        self._sweeper = (
            loop.call_later(self._sweep_period(), self._sweep) if self._reading else None
        )

    async def _read_body(self, receive: Receive) -> bytes:
        message = await receive()
        if message["type"] != "http.request":
            raise _Disconnected
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > self.max_body_bytes:
                raise _BodyTooLarge
            return body
        chunks = [body]
        size = len(body)
        while True:
            if size > self.max_body_bytes:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] != "http.request":
                raise _Disconnected
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if not message.get("more_body", False):
                if size > self.max_body_bytes:
                    raise _BodyTooLarge
                return b"".join(chunks)
