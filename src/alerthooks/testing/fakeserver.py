"""The generic fake HTTP API that each provider's fake builds on, served over real HTTP on
127.0.0.1 (a free port) in a background thread.

:class:`FakeAPI` has what every fake needs: the loopback server, call counting per endpoint,
added latency, faults (429, 500, connection reset, timeout) injected before or after a request
takes effect, replayed idempotency keys, form-encoded or JSON bodies and a webhook-endpoint
table. A
provider's fake (``alerthooks.testing.stripe.FakeStripe``, ``…chargebee.FakeChargebee``)
declares its routes, authentication and error shape, and registers itself with
:func:`register_fake` so ``python -m alerthooks.testing.fakes`` serves it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import re
import shlex
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from alerthooks.testing._kits import import_builtin_kits

FaultKind = Literal["429", "500", "reset", "timeout"]
Result = tuple[int, dict[str, Any]]
"""An answer: HTTP status and JSON body."""
Handler = Callable[[dict[str, Any], dict[str, str]], Result]
"""An endpoint: ``(params, path_params) -> Result``, called under the fake's lock."""
F = TypeVar("F", bound="FakeAPI")


@dataclass
class Fault:
    """A fault served instead of (``after=False``) or after (``after=True``: the change is made,
    then the answer is lost) the next ``times`` matching calls. ``method`` and ``path`` (a route
    template such as ``/v1/billing/alerts/{id}/archive``) narrow which calls match."""

    kind: FaultKind
    method: str | None = None
    path: str | None = None
    times: int = 1
    after: bool = False

    def matches(self, method: str, template: str) -> bool:
        """Whether a call to ``method template`` takes this fault."""
        return (self.method is None or self.method == method) and (
            self.path is None or self.path == template
        )


def _nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Decode bracket form keys (``a[b][0]=v``, ``a[]=v``) into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"^[^\[]+|(?<=\[)[^\]]*(?=\])", key)
        node = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if part == "":
                part = str(len(node))
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    listed: dict[str, Any] = _listify(root)
    return listed


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {k: _listify(v) for k, v in node.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


class _Reset:
    """An answer cut off mid-body, then the connection closed: the client sees a reset."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"512")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"id": ', "more_body": True})
        # Returning without finishing the body makes the server drop the connection.


class FakeAPI:
    """A provider's fake API: the loopback server, call counting, latency, faults, idempotency
    and the webhook-endpoint table.

    A subclass sets :attr:`provider`, implements :meth:`env` and the hooks ``_routes()`` (a
    list of ``self._route(method, template, handler)``), ``_authorized(request)``,
    ``_error(status, message, code)`` (the provider's error body) and ``_clear()`` (forget its
    own objects), and may override :meth:`exports`.
    """

    provider: str = ""
    """The provider this fake stands in for (the name its :class:`~alerthooks.providers.Provider`
    has)."""

    idempotency_header = "idempotency-key"
    replayed_header = "idempotent-replayed"

    def __init__(self, *, latency: float = 0.0, hang: float = 2.0) -> None:
        #: Seconds added to every call.
        self.latency = latency
        #: Seconds a ``timeout`` fault holds the answer (longer than the client's timeout).
        self.hang = hang
        #: Calls per endpoint, as ``"METHOD /route/{template}"``; faulted calls count too.
        self.calls: Counter[str] = Counter()
        #: The most calls that were being answered at the same time.
        self.max_in_flight = 0
        self._in_flight = 0
        self._faults: list[Fault] = []
        self._idempotent: dict[str, tuple[str, int, dict[str, Any]]] = {}
        self._lock = threading.RLock()
        self._endpoints: dict[str, dict[str, Any]] = {}
        self._closing = False
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self.app = Starlette(routes=self._routes())

    # -- lifecycle -------------------------------------------------------------------------

    def endpoints(self) -> list[dict[str, Any]]:
        """Copies of the webhook endpoints."""
        with self._lock:
            return [json.loads(json.dumps(e)) for e in self._endpoints.values()]

    def start(self) -> None:
        """Serve on a free loopback port in a background thread."""
        # proto=IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections (it checks).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        # A client that keeps a connection open (keep-alive) must not hold up stop(): a fake's
        # graceful shutdown waits at most a second for open connections.
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._closing = False
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{type(self).__name__} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving; held (``timeout``) answers are released first."""
        self._closing = True
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._server = self._thread = None

    def __enter__(self: F) -> F:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, the API base address."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def total_calls(self) -> int:
        """Every call received so far."""
        return sum(self.calls.values())

    def inject(
        self,
        kind: FaultKind,
        *,
        method: str | None = None,
        path: str | None = None,
        times: int = 1,
        after: bool = False,
    ) -> Fault:
        """Queue a :class:`Fault`; faults are taken in the order they were injected."""
        fault = Fault(kind, method, path, times, after)
        with self._lock:
            self._faults.append(fault)
        return fault

    def reset(self) -> None:
        """Forget every object, call count, fault and idempotency key."""
        with self._lock:
            self.calls.clear()
            self.max_in_flight = 0
            self._faults.clear()
            self._idempotent.clear()
            self.latency = 0.0
            self._clear()

    def env(self) -> dict[str, str]:
        """The environment variables that point :mod:`alerthooks.manager` at this fake."""
        raise NotImplementedError

    def live_alerts(self) -> list[dict[str, Any]]:
        """Copies of the alerts that watch now: not archived, deleted or disabled."""
        with self._lock:
            return [json.loads(json.dumps(a)) for a in self._live()]

    def live_duplicates(self) -> dict[tuple[Any, ...], list[str]]:
        """The live alerts that share their identifying fields (as the provider's API defines
        an alert: Stripe's meter, customer and ``gte``, and so on) with another live alert, by
        those fields: each crossing would notify once per alert. Empty when none do."""
        with self._lock:
            by_identity: dict[tuple[Any, ...], list[str]] = {}
            for alert in self._live():
                by_identity.setdefault(self._identity(alert), []).append(str(alert["id"]))
        return {identity: ids for identity, ids in by_identity.items() if len(ids) > 1}

    def _live(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _identity(self, alert: dict[str, Any]) -> tuple[Any, ...]:
        raise NotImplementedError

    def exports(self) -> dict[str, str]:
        """What ``python -m alerthooks.testing.fakes`` prints for a shell: :meth:`env`, plus
        whatever else ``alerthooks plan``/``apply`` need for this provider (such as webhook
        credentials)."""
        return self.env()

    def _clear(self) -> None:
        raise NotImplementedError

    def _routes(self) -> list[Route]:
        raise NotImplementedError

    def _authorized(self, request: Request) -> bool:
        raise NotImplementedError

    def _error(self, status: int, message: str, code: str) -> Result:
        raise NotImplementedError

    # -- request handling ------------------------------------------------------------------

    def _route(self, method: str, template: str, handler: Handler) -> Route:
        async def endpoint(request: Request) -> Any:
            return await self._handle(request, method, template, handler)

        return Route(template, endpoint, methods=[method])

    def _take_fault(self, method: str, template: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, template):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    async def _handle(self, request: Request, method: str, template: str, handler: Handler) -> Any:
        with self._lock:
            self.calls[f"{method} {template}"] += 1
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            return await self._answer(request, method, template, handler)
        finally:
            with self._lock:
                self._in_flight -= 1

    async def _answer(self, request: Request, method: str, template: str, handler: Handler) -> Any:
        if self.latency:
            await asyncio.sleep(self.latency)
        if not self._authorized(request):
            return self._json(self._error(401, "invalid API key", "api_authentication_failed"))
        fault = self._take_fault(method, template)
        if fault is not None and not fault.after:
            return await self._fault(fault)
        if method == "GET":
            params = _nest(list(request.query_params.multi_items()))
        elif request.headers.get("content-type", "").startswith("application/json"):
            # A JSON API (Orb, Metronome): the body's object, with the query's fields beside it.
            try:
                body = json.loads(await request.body() or b"{}")
            except ValueError:
                body = None
            if not isinstance(body, dict):
                return self._json(self._error(400, "the body is not a JSON object", "bad_json"))
            params = {**_nest(list(request.query_params.multi_items())), **body}
        else:
            raw = (await request.body()).decode("utf-8", "replace")
            params = _nest(parse_qsl(raw, keep_blank_values=True))
        key = request.headers.get(self.idempotency_header)
        replayed = False
        with self._lock:
            if key and method != "GET":
                fingerprint = hashlib.sha256(
                    json.dumps([template, request.url.path, params], sort_keys=True).encode()
                ).hexdigest()
                seen = self._idempotent.get(key)
                if seen is not None and seen[0] != fingerprint:
                    status, body = self._error(
                        400,
                        "Keys for idempotent requests can only be used with the same "
                        "parameters they were first used with.",
                        "idempotency_error",
                    )
                elif seen is not None:
                    status, body, replayed = seen[1], seen[2], True
                else:
                    status, body = handler(params, dict(request.path_params))
                    if status < 500:
                        self._idempotent[key] = (fingerprint, status, body)
            else:
                status, body = handler(params, dict(request.path_params))
        if fault is not None:
            return await self._fault(fault)
        response = self._json((status, body))
        if replayed:
            response.headers[self.replayed_header] = "true"
        return response

    async def _fault(self, fault: Fault) -> Any:
        if fault.kind == "429":
            response = self._json(self._error(429, "Too many requests", "rate_limit"))
            response.headers["retry-after"] = "0"
            return response
        if fault.kind == "500":
            return self._json(self._error(500, "Internal error", "internal_error"))
        if fault.kind == "reset":
            return _Reset()
        deadline = time.monotonic() + self.hang
        while time.monotonic() < deadline and not self._closing:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return self._json(self._error(504, "Timed out", "timeout"))

    @staticmethod
    def _json(result: Result) -> Response:
        status, body = result
        return JSONResponse(body, status_code=status)

    @staticmethod
    def _new_id(prefix: str) -> str:
        return f"{prefix}_{uuid.uuid4().hex[:24]}"


def as_int(value: Any) -> int | None:
    """``value`` (a form field) as an int, or None when it is not one."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def as_number(value: Any) -> float | int | None:
    """``value`` (a form field) as a number (an int when whole), or None when it is not one."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else number


_FAKES: dict[str, type[FakeAPI]] = {}


def register_fake(cls: type[F]) -> type[F]:
    """Register ``cls`` as the fake API of ``cls.provider`` (usable as a class decorator), so
    ``python -m alerthooks.testing.fakes`` serves it."""
    if not cls.provider:
        raise ValueError(f"{cls.__name__}.provider is not set")
    _FAKES[cls.provider] = cls
    return cls


def fake_apis() -> dict[str, type[FakeAPI]]:
    """The registered fake API classes by provider name: the built-in providers' in their
    route order, then the others in registration order."""
    from alerthooks.providers import BUILTIN

    import_builtin_kits()
    order = {cls.name: index for index, cls in enumerate(BUILTIN)}
    names = sorted(_FAKES, key=lambda name: order.get(name, len(order)))
    return {name: _FAKES[name] for name in names}


def main(argv: list[str] | None = None) -> None:
    """``python -m alerthooks.testing.fakes [--latency S]``: serve every registered fake until
    interrupted, printing the ``export`` lines that point ``alerthooks plan``/``apply`` at them."""
    parser = argparse.ArgumentParser(prog="python -m alerthooks.testing.fakes")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each call")
    args = parser.parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        # SIGTERM stops the fakes as Ctrl-C does, instead of killing their threads mid-answer;
        # and Ctrl-C does even when started in the background of a shell script, which leaves
        # SIGINT ignored (Python then keeps it ignored).
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        signal.signal(signal.SIGINT, signal.default_int_handler)
    with contextlib.ExitStack() as stack:
        for cls in fake_apis().values():
            fake = stack.enter_context(cls(latency=args.latency))
            for name, value in fake.exports().items():
                print(f"export {name}={shlex.quote(value)}", flush=True)
        print("# serving until interrupted (Ctrl-C)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


__all__ = [
    "FakeAPI",
    "Fault",
    "FaultKind",
    "Handler",
    "Result",
    "as_int",
    "as_number",
    "fake_apis",
    "main",
    "register_fake",
]
