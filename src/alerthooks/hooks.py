"""``AlertHooks``: the ASGI receiver, its configuration and the handler decorators.

Each delivery flows one way: bytes → verify → parse → normalize → record → dispatch → answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from alerthooks.dispatch import Dispatcher, F, Handler, HandlerFunc
from alerthooks.events import AlertEvent
from alerthooks.observe import Observers, ObserverT, current_delivery, run_handler
from alerthooks.providers import NotAnAlert, Provider, Rejected, Unavailable, builtin_providers
from alerthooks.sources import (
    TRUSTED_PROXIES_ENV,
    Networks,
    SourceFilter,
    networks_from_env,
    networks_setting,
)
from alerthooks.store import Delivery, Store, StoreError, open_store, redact_url
from alerthooks.worker import LeaseKeeper, LeaseRenewals, Worker

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from alerthooks.health import HealthApp
    from alerthooks.metrics import MetricsApp

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]

DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_TOLERANCE = 300


def _answer(code: int, **fields: str) -> tuple[int, bytes]:
    return code, json.dumps(fields, separators=(",", ":")).encode()


_ACCEPTED = _answer(200, status="accepted")
_DUPLICATE = _answer(200, status="duplicate")
_IGNORED = _answer(200, status="ignored")
_HANDLER_FAILED = _answer(500, error="a handler failed; retry later")
_BUSY = _answer(503, error="event is being handled elsewhere; retry later")
_STORE_DOWN = _answer(503, error="store unavailable; retry later")
_NOT_CONFIGURED = _answer(503, error="provider not configured")
_API_DOWN = _answer(503, error="provider API unavailable; retry later")
_NOT_FOUND = _answer(404, error="not found")
_FORBIDDEN = _answer(403, error="source not allowed")
_METHOD_NOT_ALLOWED = _answer(405, error="method not allowed")
_TOO_LARGE = _answer(413, error="body too large")
_INVALID_JSON = _answer(400, error="invalid JSON")
_NOT_AN_OBJECT = _answer(400, error="payload is not a JSON object")
_BAD_LENGTH = _answer(400, error="invalid Content-Length")
_TIMEOUT = _answer(408, error="body not received in time")
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


def _response_headers(answer: tuple[int, bytes]) -> list[tuple[bytes, bytes]]:
    headers = _HEADERS_BY_ANSWER.get(answer)
    if headers is None:
        status, body = answer
        headers = [
            *_JSON_HEADERS,
            (b"content-length", str(len(body)).encode()),
            *_EXTRA_HEADERS.get(status, ()),
        ]
        if len(_HEADERS_BY_ANSWER) < 256:  # answers carrying a rejection reason vary a little
            _HEADERS_BY_ANSWER[answer] = headers
    return headers


class _BodyTooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


_PROVIDER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def _legacy_providers(options: Mapping[str, Any]) -> list[Provider]:
    """The built-in providers that the facade's shortcut keyword arguments describe
    (``stripe_secret=``, ``chargebee_auth=``, …), each built as before: a credential or
    allowlist left as None is read from the environment."""
    from alerthooks.providers.chargebee import PASSWORD_ENV, USERNAME_ENV, Chargebee
    from alerthooks.providers.stripe import SECRET_ENV, Stripe

    given = {k for k, v in options.items() if v is not None}
    built: list[Provider] = []
    if any(k.startswith("stripe_") for k in given):
        secret = options["stripe_secret"]
        stripe = Stripe(
            os.environ.get(SECRET_ENV, "") if secret is None else secret,
            tolerance=options["stripe_tolerance"] or DEFAULT_TOLERANCE,
            allowed_ips=options["stripe_allowed_ips"],
        )
        if options["stripe_allowed_ips"] is None:
            stripe.allowed_ips = networks_from_env(stripe.name)
        built.append(stripe)
    if any(k.startswith("chargebee_") for k in given):
        auth = options["chargebee_auth"]
        if auth is None:
            user, password = os.environ.get(USERNAME_ENV, ""), os.environ.get(PASSWORD_ENV, "")
            auth = [(user, password)] if user or password else []
        chargebee = Chargebee(
            auth,
            allow_unauthenticated=bool(options["chargebee_allow_unauthenticated"]),
            verify=options["chargebee_verify"] or "auth",
            site=options["chargebee_site"],
            api_key=options["chargebee_api_key"],
            allowed_ips=options["chargebee_allowed_ips"],
        )
        if options["chargebee_allowed_ips"] is None:
            chargebee.allowed_ips = networks_from_env(chargebee.name)
        built.append(chargebee)
    return built


def _source_filter(
    providers: Iterable[Provider], trusted_proxies: Networks | None
) -> SourceFilter | None:
    lists = {p.name: p.allowed_ips for p in providers if p.allowed_ips is not None}
    proxies = networks_setting(trusted_proxies, setting="trusted_proxies", env=TRUSTED_PROXIES_ENV)
    return SourceFilter(lists, proxies or ()) if lists else None


def _route_path(scope: Scope) -> str:
    """The request path relative to where this app is mounted."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        if path == root_path:
            return ""
        if path[len(root_path)] == "/":
            return path[len(root_path) :]
    return path


class AlertHooks:
    """A receiver for usage-alert webhooks, and itself an ASGI app.

    Mount it (``Mount("/webhooks", app=hooks)``) to serve ``POST /{name}`` for each of
    ``providers`` (:class:`~alerthooks.providers.Provider` objects); register handlers with
    :meth:`on`. By default every built-in provider, configured from its environment
    (``Stripe.from_env()``, ``Chargebee.from_env()``). A provider without credentials accepts
    nothing.

    The ``stripe_*`` and ``chargebee_*`` keyword arguments are shortcuts that build those
    built-in providers (credentials left as None are read from the environment:
    ``STRIPE_WEBHOOK_SECRET``, ``CHARGEBEE_WEBHOOK_USERNAME`` / ``CHARGEBEE_WEBHOOK_PASSWORD``);
    giving a provider both in ``providers`` and by shortcut is a ``ValueError``.

    ``store`` is a URL (``memory://``, ``sqlite:///path.db``, ``postgresql://…``) or a
    :class:`~alerthooks.store.Store`; by default env ``ALERTHOOKS_STORE``, else SQLite at
    ``./alerthooks.db``. ``mode="inline"`` runs handlers before answering (5xx when one fails, so
    the provider retries); ``mode="queued"`` answers once the event is durably recorded and a
    worker runs the handlers, retrying with backoff (``retry_backoff`` seconds doubling up to
    ``retry_backoff_max``) until ``max_attempts``, then marks them dead. The worker runs in this
    process's lifespan unless ``worker=False`` (for web processes of a split deployment).

    ``stripe_allowed_ips`` / ``chargebee_allowed_ips`` (default: env
    ``ALERTHOOKS_STRIPE_ALLOWED_IPS`` / ``ALERTHOOKS_CHARGEBEE_ALLOWED_IPS``) restrict a provider
    to source networks, answering 403 to others; ``trusted_proxies`` (env
    ``ALERTHOOKS_TRUSTED_PROXIES``) names the proxies whose ``X-Forwarded-For`` is believed.
    Each takes CIDRs as a list, a comma-separated string or ``@path`` to a file
    (see :mod:`alerthooks.sources`).

    ``chargebee_verify="fetch"`` fetches each Chargebee event back from the API by id
    (``chargebee_site`` / ``chargebee_api_key``, default env ``CHARGEBEE_SITE`` /
    ``CHARGEBEE_API_KEY``) and dispatches what the API returns, not what was posted: an id the
    API does not know is answered 401, an API that cannot be reached 503. Basic auth, when
    configured, is checked as well.
    """

    def __init__(
        self,
        *,
        providers: Iterable[Provider] | None = None,
        store: str | Store | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        body_timeout: float = 10.0,
        lease_seconds: float = 300.0,
        mode: Literal["inline", "queued"] = "inline",
        max_attempts: int = 8,
        retry_backoff: float = 1.0,
        retry_backoff_max: float = 3600.0,
        worker: bool = True,
        worker_concurrency: int = 16,
        poll_interval: float = 1.0,
        trusted_proxies: Networks | None = None,
        stripe_secret: str | Sequence[str] | None = None,
        stripe_tolerance: int | None = None,
        stripe_allowed_ips: Networks | None = None,
        chargebee_auth: tuple[str, str] | Sequence[tuple[str, str]] | None = None,
        chargebee_allow_unauthenticated: bool | None = None,
        chargebee_verify: Literal["auth", "fetch"] | None = None,
        chargebee_site: str | None = None,
        chargebee_api_key: str | None = None,
        chargebee_allowed_ips: Networks | None = None,
    ) -> None:
        if mode not in ("inline", "queued"):
            raise ValueError(f"mode must be 'inline' or 'queued', got {mode!r}")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        shortcuts = _legacy_providers(
            {
                "stripe_secret": stripe_secret,
                "stripe_tolerance": stripe_tolerance,
                "stripe_allowed_ips": stripe_allowed_ips,
                "chargebee_auth": chargebee_auth,
                "chargebee_allow_unauthenticated": chargebee_allow_unauthenticated,
                "chargebee_verify": chargebee_verify,
                "chargebee_site": chargebee_site,
                "chargebee_api_key": chargebee_api_key,
                "chargebee_allowed_ips": chargebee_allowed_ips,
            }
        )
        if providers is None:
            by_shortcut = {p.name for p in shortcuts}
            chosen = [p for p in builtin_providers() if p.name not in by_shortcut]
            chosen = [*shortcuts, *chosen]
        else:
            chosen = list(providers)
            names = {p.name for p in chosen}
            for provider in shortcuts:
                if provider.name in names:
                    raise ValueError(
                        f"provider {provider.name!r} is given both in providers= and by "
                        f"{provider.name}_* keyword arguments; give it one way"
                    )
            chosen.extend(shortcuts)
        self.providers: dict[str, Provider] = {}
        for provider in chosen:
            if not isinstance(provider, Provider):
                raise TypeError(f"{provider!r} is not an alerthooks.providers.Provider")
            name = provider.name
            if not isinstance(name, str) or not _PROVIDER_NAME.fullmatch(name):
                raise ValueError(
                    f"provider name {name!r} must be lower-case letters, digits, '_' or '-'"
                )
            if name in self.providers:
                raise ValueError(f"two providers are named {name!r}")
            self.providers[name] = provider
        self.store: Store = store if isinstance(store, Store) else open_store(store)
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.lease_seconds = lease_seconds
        self.mode = mode
        self.max_attempts = max_attempts
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self.run_worker = worker
        self.worker = Worker(self, concurrency=worker_concurrency, poll_interval=poll_interval)
        self.lease_renewals = LeaseRenewals(self)
        self.dispatcher = Dispatcher()
        #: What watches deliveries and handler runs (metrics, traces): empty unless
        #: :meth:`metrics_app`, :meth:`trace` or :meth:`observe` added one.
        self.observers = Observers()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._routes: dict[str, Provider] = {f"/{p.name}": p for p in self.providers.values()}
        self.sources = _source_filter(self.providers.values(), trusted_proxies)
        self._warned: set[str] = set()
        # Events being delivered now, each with the futures of concurrent duplicates waiting
        # for its answer.
        self._inflight: dict[tuple[str, str], list[asyncio.Future[tuple[int, bytes]]]] = {}
        self._opened = False
        self._open_lock: asyncio.Lock | None = None
        # Requests reading their body, by task, with their deadline (see _sweep).
        self._reading: dict[asyncio.Task[Any], float] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweeper_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        providers = ", ".join(repr(p) for p in self.providers.values())
        return (
            f"AlertHooks(providers=[{providers}], "
            f"store={redact_url(self.store.url)!r}, sources={self.sources!r})"
        )

    def __getattr__(self, name: str) -> Provider:
        # hooks.stripe, hooks.chargebee, …: the provider of that name.
        providers = self.__dict__.get("providers")
        if providers is not None and name in providers:
            return providers[name]  # type: ignore[no-any-return]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -- handlers -------------------------------------------------------------------------------

    def on(
        self, event_type: str, *, name: str | None = None, **filters: str | Iterable[str]
    ) -> Callable[[F], F]:
        """Register the decorated function for ``event_type``: ``"alert.triggered"``,
        ``"alert.cleared"`` or ``"*"``.

        Filters narrow it further: ``provider``, ``alert_id``, ``meter_id``, ``customer_id`` and
        ``subscription_id``, each a string or a set of accepted strings. The function may be
        ``async def`` or plain ``def`` (run in a thread); several handlers may share a type.
        """
        return self.dispatcher.on(event_type, name=name, **filters)

    def add_handler(
        self,
        func: HandlerFunc,
        event_type: str,
        *,
        name: str | None = None,
        **filters: str | Iterable[str],
    ) -> Handler:
        """Non-decorator form of :meth:`on`."""
        return self.dispatcher.add(func, event_type, name=name, **filters)

    # -- lifecycle ------------------------------------------------------------------------------

    async def startup(self) -> None:
        """Open the store and, in queued mode, start the worker. Called by :meth:`lifespan`.

        A store that cannot be reached yet is logged, not fatal: requests answer 503 and the
        worker retries until it comes back.
        """
        try:
            await self._open()
        except StoreError as exc:
            logger.error("store %s unavailable at startup: %s", redact_url(self.store.url), exc)
        if self.mode == "queued" and self.run_worker:
            await self.worker.start()

    async def _open(self) -> None:
        if self._opened:
            return
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if not self._opened:
                await self.store.open()
                self._opened = True
                for provider in self._routes.values():
                    self._warn_unconfigured(provider)

    async def shutdown(self) -> None:
        """Stop the worker (running handlers get a short grace period), then close the store."""
        await self.worker.stop()
        self._opened = False
        await self.store.close()
        for provider in self.providers.values():
            await provider.aclose()

    async def drain(self, timeout: float = 30.0) -> None:
        """Run queued work now and return once none is due (retries scheduled for later are
        left for later); TimeoutError after ``timeout`` seconds. For tests and scripts."""
        await self._open()
        await self.worker.drain(timeout)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Lifespan for the host app: ``Starlette(lifespan=hooks.lifespan)``."""
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    # -- ASGI -----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if self.observers:
                answer = await self._observed_http(scope, receive)
            else:
                answer = await self._http(scope, receive)
            await send(
                {
                    "type": "http.response.start",
                    "status": answer[0],
                    "headers": _response_headers(answer),
                }
            )
            await send({"type": "http.response.body", "body": answer[1]})
        elif kind == "lifespan":
            await self._lifespan_protocol(receive, send)
        elif kind == "websocket":
            # Anyone may try an upgrade; refuse it (the server answers 403) rather than erroring.
            await receive()
            await send({"type": "websocket.close", "code": 1008})
        else:
            raise RuntimeError(f"AlertHooks does not serve {kind!r} connections")

    async def _lifespan_protocol(self, receive: Receive, send: Send) -> None:
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

    async def _observed_http(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        path = _route_path(scope)
        provider = self._routes.get(path.rstrip("/") if len(path) > 1 else path)
        if provider is None:
            return await self._http(scope, receive)
        with self.observers.delivery(provider.name) as seen:
            answer = await self._http(scope, receive)
            seen.answered(*answer)
        return answer

    async def _http(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        path = _route_path(scope)
        provider = self._routes.get(path.rstrip("/") if len(path) > 1 else path)
        if provider is None:
            return _NOT_FOUND
        if scope["method"] != "POST":
            return _METHOD_NOT_ALLOWED
        if self.sources is not None and not self.sources.allows(provider.name, scope):
            return _FORBIDDEN
        if not provider.configured:
            self._warn_unconfigured(provider)
            return _NOT_CONFIGURED
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):
                return _BAD_LENGTH
            digits = length.lstrip("0")
            if len(digits) > 18 or int(digits or "0") > self.max_body_bytes:
                logger.info("%s delivery rejected: body of %s bytes", provider.name, length)
                return _TOO_LARGE
        try:
            body = await self._read_body_in_time(receive)
        except _BodyTooLarge:
            logger.info(
                "%s delivery rejected: body over %d bytes", provider.name, self.max_body_bytes
            )
            return _TOO_LARGE
        except TimeoutError:
            logger.info("%s delivery rejected: body timed out", provider.name)
            return _TIMEOUT
        except _Disconnected:
            return _answer(400, error="client disconnected")
        return await self.receive(provider, body, headers)

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

    def _warn_unconfigured(self, provider: Provider) -> None:
        if not provider.configured and provider.name not in self._warned:
            self._warned.add(provider.name)
            hint = f" (set {provider.env_hint})" if provider.env_hint else ""
            logger.warning(
                "%s webhooks are refused: no credentials configured%s", provider.name, hint
            )

    # -- delivery -------------------------------------------------------------------------------

    async def receive(
        self, provider: Provider, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        """Verify, record and dispatch one delivery; return the HTTP status and body.

        ``headers`` has lower-case names. This is the whole receiver without ASGI around it.
        """
        try:
            provider.verify(body, headers)
        except Rejected as exc:
            logger.info("%s delivery rejected (%d): %s", provider.name, exc.status, exc.reason)
            return _answer(exc.status, error=exc.reason)
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            logger.info("%s delivery rejected: invalid JSON", provider.name)
            return _INVALID_JSON
        if not isinstance(payload, dict):
            logger.info("%s delivery rejected: payload is not a JSON object", provider.name)
            return _NOT_AN_OBJECT
        event_id = provider.event_id(payload)
        if self.observers and (seen := current_delivery()) is not None:
            seen.event(event_id, provider.event_type(payload))
        if event_id is None:
            logger.warning("%s event acknowledged without an id; not stored", provider.name)
            return _IGNORED
        key = (provider.name, event_id)
        waiting = self._inflight.get(key)
        if waiting is not None:
            future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
            waiting.append(future)
            return await future
        self._inflight[key] = waiting = []
        answer = _STORE_DOWN
        try:
            answer = await self._deliver(provider, event_id, payload, body)
        finally:
            del self._inflight[key]
            for future in waiting:
                if not future.done():
                    future.set_result(answer)
        return answer

    async def _deliver(
        self, provider: Provider, event_id: str, payload: dict[str, Any], body: bytes
    ) -> tuple[int, bytes]:
        if provider.confirms:
            try:
                payload = await provider.confirm(event_id, payload)
            except Rejected as exc:
                logger.info(
                    "%s event %s rejected (%d): %s", provider.name, event_id, exc.status, exc.reason
                )
                return _answer(exc.status, error=exc.reason)
            except Unavailable as exc:
                logger.error(
                    "%s event %s not confirmed, answering 503: %s", provider.name, event_id, exc
                )
                return _API_DOWN
            body = json.dumps(payload, separators=(",", ":")).encode()
        event: AlertEvent | None
        try:
            event = provider.normalize(payload)
        except NotAnAlert as exc:
            event = None
            logger.info("%s event %s is not an alert: %s", provider.name, event_id, exc.reason)
        handlers = self.dispatcher.match(event) if event is not None else []
        delivery = Delivery(
            provider=provider.name,
            event_id=event_id,
            event_type=provider.event_type(payload),
            body=body,
            received_at=datetime.now(timezone.utc),
            handlers=tuple([h.name for h in handlers]),
        )
        queued = self.mode == "queued"
        try:
            if not self._opened:
                await self._open()
            begun = await self.store.begin(
                delivery, owner=self.owner, lease=self.lease_seconds, claim=not queued
            )
        except Exception as exc:
            logger.error(
                "%s event %s not recorded, answering 503: %s",
                provider.name,
                event_id,
                exc if isinstance(exc, StoreError) else type(exc).__name__,
            )
            return _STORE_DOWN
        if event is None:
            return _IGNORED
        if queued:
            self.worker.wake()  # a redelivery may add handlers registered since
            if not begun.new:
                logger.info("%s event %s is a duplicate", provider.name, event_id)
                return _DUPLICATE
            logger.info("%s event %s queued (%s)", provider.name, event_id, event.type)
            return _ACCEPTED
        if begun.claimed:
            if begun.claimed == delivery.handlers:
                to_run = handlers
            else:
                by_name = {h.name: h for h in handlers}
                to_run = [by_name[name] for name in begun.claimed if name in by_name]
            keeper = LeaseKeeper(self, provider.name, event_id, begun.claimed)
            try:
                results = await self._run(event, to_run)
            finally:
                keeper.stop()
            try:
                await self.store.finish(provider.name, event_id, results, owner=self.owner)
            except Exception:
                logger.exception("%s event %s: outcomes not recorded", provider.name, event_id)
                return _STORE_DOWN
            failed = [name for name, error in results.items() if error is not None]
            if failed:
                logger.warning(
                    "%s event %s: %d handler(s) failed: %s",
                    provider.name,
                    event_id,
                    len(failed),
                    ", ".join(failed),
                )
                return _HANDLER_FAILED
        if begun.busy:
            logger.info("%s event %s is being handled elsewhere", provider.name, event_id)
            return _BUSY
        if not begun.new and not begun.claimed:
            logger.info("%s event %s is a duplicate", provider.name, event_id)
            return _DUPLICATE
        if logger.isEnabledFor(logging.INFO):
            logger.info("%s event %s accepted (%s)", provider.name, event_id, event.type)
        return _ACCEPTED

    async def _run(self, event: AlertEvent, handlers: list[Handler]) -> dict[str, str | None]:
        observers = self.observers
        if observers:
            if len(handlers) == 1:
                handler = handlers[0]
                return {handler.name: await run_handler(observers, handler, event, queued=False)}
            errors = await asyncio.gather(
                *(run_handler(observers, h, event, queued=False) for h in handlers)
            )
            return {h.name: error for h, error in zip(handlers, errors, strict=True)}
        if len(handlers) == 1:
            handler = handlers[0]
            return {handler.name: await handler.run(event)}
        errors = await asyncio.gather(*(h.run(event) for h in handlers))
        return {h.name: error for h, error in zip(handlers, errors, strict=True)}

    # -- operations: console, metrics, traces, health ----------------------------------------

    def observe(self, observer: ObserverT) -> ObserverT:
        """Add ``observer`` (an :class:`~alerthooks.observe.Observer`) and return it."""
        return self.observers.add(observer)

    def console(self, *, auth: Any, secret: str | bytes | None = None) -> Starlette:
        """The operator's console as an ASGI app: ``Mount("/ops", app=hooks.console(auth=…))``.

        ``auth`` is a ``(user, password)`` pair (Basic auth) or ``callable(request) -> bool``
        (may be async); without one this raises ``ValueError``. ``secret`` signs the replay
        forms' CSRF tokens: by default derived from the Basic credentials, or random per
        process with a callable (give one when several processes serve the console).
        """
        from alerthooks.console import console_app

        return console_app(self, auth=auth, secret=secret)

    def metrics_app(self) -> MetricsApp:
        """An ASGI app serving Prometheus metrics (``pip install "alerthooks[metrics]"``):
        ``Route("/metrics", hooks.metrics_app())``. See :mod:`alerthooks.metrics`."""
        from alerthooks.metrics import Metrics

        found = self.observers.find(Metrics)
        return (found or self.observe(Metrics(lambda: self.store))).app()

    def trace(self, tracer_provider: Any = None) -> None:
        """Open an OpenTelemetry span per delivery and per handler run
        (``pip install "alerthooks[otel]"``). See :mod:`alerthooks.tracing`."""
        from alerthooks.tracing import Tracing

        if self.observers.find(Tracing) is None:
            self.observe(Tracing(tracer_provider))

    def health_app(self) -> HealthApp:
        """An ASGI app with ``GET /live`` and ``GET /ready``:
        ``Mount("/_alerthooks", app=hooks.health_app())``. See :mod:`alerthooks.health`."""
        from alerthooks.health import HealthApp

        return HealthApp(self)
