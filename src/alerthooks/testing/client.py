"""Deliver signed webhooks to an :class:`~alerthooks.AlertHooks`, or an app that mounts one,
in-process: no server, no provider.

``AlertHooksClient`` is an ``httpx.AsyncClient``; ``SyncAlertHooksClient`` runs one in a
background thread for plain (non-async) tests. Both add ``deliver(provider, payload)`` (any
provider the hooks have, signed by its own ``sign``), ``send_stripe`` and ``send_chargebee``
(built on it, with options to sign otherwise) and ``drain``, and run the app's lifespan while
open.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal
from starlette.routing import Mount

from alerthooks.hooks import AlertHooks
from alerthooks.mounting import HooksMount
from alerthooks.providers import Provider
from alerthooks.providers.stripe import SIGNATURE_HEADER
from alerthooks.testing.signing import chargebee_auth_headers, stripe_signature_header

logger = logging.getLogger(__name__)

Payload = Mapping[str, Any] | str | bytes
DEFAULT_DRAIN_TIMEOUT = 30.0


def find_hooks(app: Any) -> tuple[AlertHooks, str]:
    """The one :class:`AlertHooks` inside ``app`` and the path it is mounted at.

    ``app`` is an ``AlertHooks`` (mounted at ``""``), one wrapped by :meth:`AlertHooks.wrap`
    (Django, Quart: also as a Quart app's ``asgi_app``), a Starlette/FastAPI app whose routes
    ``Mount`` one, or a Litestar app with an ``asgi(path, is_mount=True)(hooks)`` route; possibly
    nested or behind middleware. Raises ``LookupError`` when there is none, or several.
    """
    found = list(_mounted(app, "", depth=0))
    if not found:
        raise LookupError(f"no AlertHooks is mounted in {app!r}; pass hooks= and prefix=")
    if len({id(hooks) for hooks, _ in found}) > 1:
        where = ", ".join(repr(prefix or "/") for _, prefix in found)
        raise LookupError(f"several AlertHooks are mounted ({where}); pass hooks= to choose one")
    return found[0]


def _mounted(app: Any, prefix: str, *, depth: int) -> Iterator[tuple[AlertHooks, str]]:
    if depth > 16:
        return
    if isinstance(app, AlertHooks):
        yield app, prefix
        return
    if isinstance(app, HooksMount):
        yield from _mounted(app.hooks, prefix + app.prefix, depth=depth + 1)
        yield from _mounted(app.app, prefix, depth=depth + 1)
        return
    routes = getattr(app, "routes", None)
    if routes is None:
        # Middleware wraps the app it was given as ``.app``; Quart serves ``.asgi_app``.
        for attribute in ("app", "asgi_app"):
            inner = getattr(app, attribute, None)
            if inner is not None and inner is not app:
                yield from _mounted(inner, prefix, depth=depth + 1)
        return
    for route in routes:
        if isinstance(route, Mount):
            yield from _mounted(route.app, prefix + route.path, depth=depth + 1)
        else:
            # Litestar: an ``asgi(path, is_mount=True)`` route handler around the hooks.
            handler = getattr(getattr(route, "route_handler", None), "fn", None)
            path = getattr(route, "path", None)
            if isinstance(handler, AlertHooks) and isinstance(path, str):
                yield handler, prefix + path.rstrip("/")


def _locate(app: Any, hooks: AlertHooks | None, prefix: str | None) -> tuple[AlertHooks, str]:
    if hooks is None:
        found, at = find_hooks(app)
        return found, at if prefix is None else prefix.rstrip("/")
    if prefix is not None:
        return hooks, prefix.rstrip("/")
    if app is hooks:
        return hooks, ""
    for candidate, at in _mounted(app, "", depth=0):
        if candidate is hooks:
            return hooks, at
    raise LookupError("the given hooks are not mounted in the app; pass prefix= too")


def _encode(payload: Payload) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload).encode()


def _provider(hooks: AlertHooks, name: str) -> Provider:
    try:
        return hooks.providers[name]
    except KeyError:
        known = ", ".join(sorted(hooks.providers)) or "none"
        raise LookupError(f"no provider {name!r} in these hooks; they have: {known}") from None


def _signed(provider: Provider, body: bytes) -> dict[str, str]:
    """``provider.sign(body)``, or no headers when it has no credentials to sign with."""
    try:
        return provider.sign(body)
    except ValueError as exc:
        # Unconfigured: the delivery goes unsigned, as a misconfigured sender's would.
        logger.debug("sending an unsigned delivery to %s: %s", provider.name, exc)
        return {}


class _Lifespan:
    """Drive an ASGI app's lifespan protocol: startup on enter, shutdown on exit.

    An app that does not speak the protocol (raises before answering) is used without it.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self._to_app: asyncio.Queue[dict[str, Any]] | None = None
        self._from_app: asyncio.Queue[dict[str, Any]] | None = None
        self._task: asyncio.Task[None] | None = None

    async def _exchange(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Send ``message``; the app's answer, or None when the app returned without one."""
        assert self._task is not None and self._to_app is not None and self._from_app is not None
        await self._to_app.put(message)
        answer = asyncio.ensure_future(self._from_app.get())
        await asyncio.wait({answer, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if answer.done():
            return answer.result()
        answer.cancel()
        return None

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._to_app, self._from_app = asyncio.Queue(), asyncio.Queue()
        self._task = asyncio.create_task(self.app(scope, self._to_app.get, self._from_app.put))
        answer = await self._exchange({"type": "lifespan.startup"})
        if answer is None:
            with contextlib.suppress(Exception):
                self._task.result()
            logger.debug("%r does not support the lifespan protocol", self.app)
            self._task = None
        elif answer["type"] == "lifespan.startup.failed":
            task, self._task = self._task, None
            await asyncio.wait({task}, timeout=1.0)
            error = task.exception() if task.done() and not task.cancelled() else None
            if error is not None:
                raise error
            raise RuntimeError(f"app startup failed: {answer.get('message', '')}")

    async def shutdown(self) -> None:
        if self._task is None:
            return
        answer = await self._exchange({"type": "lifespan.shutdown"})
        task, self._task = self._task, None
        if answer is not None and answer["type"] == "lifespan.shutdown.failed":
            raise RuntimeError(f"app shutdown failed: {answer.get('message', '')}")
        with contextlib.suppress(asyncio.CancelledError):
            await task


class AlertHooksClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` bound to ``app`` in-process, which sends signed deliveries.

    ``app`` is an :class:`AlertHooks` or a Starlette/FastAPI app mounting one; the hooks and
    their mount prefix are found by walking its routes, or given as ``hooks=`` and ``prefix=``.
    Use it as ``async with AlertHooksClient(app) as client:``, which runs the app's lifespan.
    In queued mode each send waits until the worker is idle (``drain=False`` to not wait).
    """

    def __init__(
        self,
        app: Any,
        *,
        hooks: AlertHooks | None = None,
        prefix: str | None = None,
        base_url: str = "http://testserver",
        lifespan: bool = True,
        drain: bool = True,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        self.hooks, self.prefix = _locate(app, hooks, prefix)
        self.auto_drain = drain
        self.drain_timeout = drain_timeout
        self._lifespan = _Lifespan(app) if lifespan else None
        super().__init__(transport=httpx.ASGITransport(app=app), base_url=base_url, **kwargs)

    async def __aenter__(self) -> AlertHooksClient:
        await super().__aenter__()
        if self._lifespan is not None:
            try:
                await self._lifespan.startup()
            except BaseException:
                await super().__aexit__(None, None, None)
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        try:
            if self._lifespan is not None:
                await self._lifespan.shutdown()
        finally:
            await super().__aexit__(exc_type, exc_value, traceback)

    async def deliver(
        self, provider: str, payload: Payload, *, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """POST ``payload`` to ``provider``'s route (``{prefix}/{provider}``), signed by that
        provider's :meth:`~alerthooks.providers.Provider.sign` with the hooks' credentials.

        A dict is sent as JSON, str and bytes as they are; ``headers`` are added and replace
        the signed ones of the same name. A provider without credentials gets the delivery
        unsigned. Returns the response (after draining the queue in queued mode). An unknown
        ``provider`` is a ``LookupError`` naming the hooks' providers.
        """
        chosen = _provider(self.hooks, provider)
        body = _encode(payload)
        sent = httpx.Headers({"content-type": "application/json"})
        sent.update(_signed(chosen, body))
        sent.update(headers or {})
        response = await self.post(f"{self.prefix}/{chosen.name}", content=body, headers=sent)
        await self._settle()
        return response

    async def send_stripe(
        self,
        payload: Payload,
        *,
        secret: str | None = None,
        timestamp: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """POST ``payload`` to the Stripe endpoint with a valid ``Stripe-Signature``.

        Signed with the hooks' first secret unless ``secret`` is given; ``timestamp`` (Unix
        seconds, default now) backdates the signature. A dict is sent as JSON, str and bytes as
        they are. Returns the response (after draining the queue in queued mode).
        """
        body = _encode(payload)
        extra = httpx.Headers()
        if secret is None and timestamp is not None:
            secret = next(iter(getattr(_provider(self.hooks, "stripe"), "secrets", ())), None)
        if secret is not None:
            extra[SIGNATURE_HEADER] = stripe_signature_header(body, secret, timestamp)
        extra.update(headers or {})
        return await self.deliver("stripe", body, headers=extra)

    async def send_chargebee(
        self,
        payload: Payload,
        *,
        auth: tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """POST ``payload`` to the Chargebee endpoint with the hooks' first Basic credentials
        (or ``auth``). Returns the response (after draining the queue in queued mode)."""
        extra = httpx.Headers(chargebee_auth_headers(*auth) if auth is not None else None)
        extra.update(headers or {})
        return await self.deliver("chargebee", payload, headers=extra)

    async def drain(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - as hooks.drain
        """In queued mode, return once the worker has no due work; otherwise return at once."""
        if self.hooks.mode == "queued":
            await self.hooks.drain(self.drain_timeout if timeout is None else timeout)

    async def _settle(self) -> None:
        if self.auto_drain:
            await self.drain()


class SyncAlertHooksClient:
    """The blocking twin of :class:`AlertHooksClient`: the same arguments and methods, run on an
    event loop in a background thread.

    Use it as ``with SyncAlertHooksClient(app) as client:`` so the lifespan (and in queued mode
    the worker) runs for the whole block; used without ``with``, it opens on first use and
    :meth:`close` ends it.
    """

    __test__ = False

    def __init__(self, app: Any, **kwargs: Any) -> None:
        self._client = AlertHooksClient(app, **kwargs)
        self.hooks, self.prefix = self._client.hooks, self._client.prefix
        self._stack: contextlib.ExitStack | None = None
        self._portal: BlockingPortal | None = None

    def __enter__(self) -> SyncAlertHooksClient:
        self._open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _open(self) -> BlockingPortal:
        if self._portal is None:
            with contextlib.ExitStack() as stack:
                portal = stack.enter_context(start_blocking_portal())
                portal.call(self._client.__aenter__)
                stack.callback(lambda: portal.call(self._client.__aexit__))
                self._stack, self._portal = stack.pop_all(), portal
        return self._portal

    def close(self) -> None:
        """Run the app's shutdown and stop the background event loop."""
        stack, self._stack, self._portal = self._stack, None, None
        if stack is not None:
            stack.close()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Any request to the app, as ``httpx.AsyncClient.request`` takes it."""
        return self._open().call(functools.partial(self._client.request, method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        """GET ``url`` from the app."""
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        """POST to ``url`` in the app."""
        return self.request("POST", url, **kwargs)

    def deliver(
        self, provider: str, payload: Payload, *, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """Like :meth:`AlertHooksClient.deliver`, blocking."""
        send = functools.partial(self._client.deliver, provider, payload, headers=headers)
        return self._open().call(send)

    def send_stripe(
        self,
        payload: Payload,
        *,
        secret: str | None = None,
        timestamp: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Like :meth:`AlertHooksClient.send_stripe`, blocking."""
        send = functools.partial(
            self._client.send_stripe, payload, secret=secret, timestamp=timestamp, headers=headers
        )
        return self._open().call(send)

    def send_chargebee(
        self,
        payload: Payload,
        *,
        auth: tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Like :meth:`AlertHooksClient.send_chargebee`, blocking."""
        send = functools.partial(self._client.send_chargebee, payload, auth=auth, headers=headers)
        return self._open().call(send)

    def drain(self, timeout: float | None = None) -> None:
        """In queued mode, return once the worker has no due work; otherwise return at once."""
        self._open().call(self._client.drain, timeout)
