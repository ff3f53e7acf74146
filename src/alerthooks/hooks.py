"""``AlertHooks``: a small facade that wires the parts below and keeps the public API.

Each delivery flows one way: bytes → verify → parse → normalize → record → dispatch → answer.
:mod:`alerthooks.asgi` moves the bytes, :mod:`alerthooks.receiver` does the rest,
:mod:`alerthooks.dispatch` holds and runs the handlers, :mod:`alerthooks.runtime` is what inline
and queued mode share, :mod:`alerthooks.worker` runs queued work, :mod:`alerthooks.catchup` and
:mod:`alerthooks.state` read the providers' APIs and the alert states.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from starlette.types import Receive, Scope, Send

from alerthooks.asgi import ASGIApp
from alerthooks.catchup import CatchUpResult, CatchUpSchedule, catch_up
from alerthooks.dispatch import Dispatcher, F, Handler, HandlerFunc
from alerthooks.events import AlertState
from alerthooks.mounting import HooksMount
from alerthooks.observe import Observers, ObserverT
from alerthooks.providers import Provider
from alerthooks.providers._keywords import with_keyword_providers
from alerthooks.receiver import Answer, Receiver
from alerthooks.runtime import LeaseRenewals, Runtime
from alerthooks.sources import TRUSTED_PROXIES_ENV, Networks, SourceFilter, networks_setting
from alerthooks.state import StateReader
from alerthooks.store import Store, StoreError, open_store, redact_url
from alerthooks.worker import Worker

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from typing_extensions import Unpack

    from alerthooks.health import HealthApp
    from alerthooks.metrics import MetricsApp
    from alerthooks.providers._keywords import ProviderKeywords

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 1 << 20

_PROVIDER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def _by_name(chosen: Iterable[Provider]) -> dict[str, Provider]:
    """The providers to serve, by name; ``TypeError`` / ``ValueError`` for what cannot be."""
    found: dict[str, Provider] = {}
    for provider in chosen:
        if not isinstance(provider, Provider):
            raise TypeError(f"{provider!r} is not an alerthooks.providers.Provider")
        name = provider.name
        if not isinstance(name, str) or not _PROVIDER_NAME.fullmatch(name):
            raise ValueError(
                f"provider name {name!r} must be lower-case letters, digits, '_' or '-'"
            )
        if name in found:
            raise ValueError(f"two providers are named {name!r}")
        found[name] = provider
    return found


def _source_filter(
    providers: Iterable[Provider], trusted_proxies: Networks | None
) -> SourceFilter | None:
    lists = {p.name: p.allowed_ips for p in providers if p.allowed_ips is not None}
    proxies = networks_setting(trusted_proxies, setting="trusted_proxies", env=TRUSTED_PROXIES_ENV)
    return SourceFilter(lists, proxies or ()) if lists else None


def _dispatcher(given: Dispatcher | None, providers: Mapping[str, Provider]) -> Dispatcher:
    """``given`` (its ``provider=`` filters checked against ``providers`` now and, unless it
    names its own, for every handler added later), else a new dispatcher for ``providers``."""
    if given is None:
        return Dispatcher(providers=providers)
    if not isinstance(given, Dispatcher):
        raise TypeError(f"dispatcher={given!r} is not an alerthooks.dispatch.Dispatcher")
    for handler in given.handlers:
        unknown = sorted(handler.filters.get("provider", frozenset()) - providers.keys())
        if unknown:
            raise ValueError(
                f"handler {handler.name!r} filters on provider={unknown[0]!r}, which this app "
                f"does not serve (serving: {', '.join(providers) or 'none'})"
            )
    if given.providers is None:
        given.providers = frozenset(providers)
    return given


T = TypeVar("T")


class _Setting(Generic[T]):
    """An attribute of the facade that reads and writes the same attribute of one of its parts
    (``_Setting("_runtime", "lease_seconds")``), so there is one value, not two."""

    def __init__(self, part: str, name: str) -> None:
        self.part, self.name = part, name

    def __get__(self, obj: object, owner: type | None = None) -> T:
        value: T = getattr(getattr(obj, self.part), self.name)
        return value

    def __set__(self, obj: object, value: T) -> None:
        setattr(getattr(obj, self.part), self.name, value)


class AlertHooks:
    """A receiver for usage-alert webhooks, and itself an ASGI app.

    Mount it (``Mount("/webhooks", app=hooks)``) to serve ``POST /{name}`` for each of
    ``providers`` (:class:`~alerthooks.providers.Provider` objects, such as
    ``[Stripe(secret), Chargebee((user, password))]``); register handlers with :meth:`on`. By
    default every built-in provider, configured from its environment (``Stripe.from_env()``,
    ``Chargebee.from_env()``, …). A provider without credentials accepts nothing (503).

    ``dispatcher`` is the handler registry to route events with (default: a new one); give your
    own :class:`~alerthooks.dispatch.Dispatcher` to register handlers in other modules and
    compose them (``Dispatcher(billing, ops)``), as routers compose. Its ``provider=`` filters
    must name providers of this app.

    ``store`` is a URL (``memory://``, ``sqlite:///path.db``, ``postgresql://…``) or a
    :class:`~alerthooks.store.Store`; by default env ``ALERTHOOKS_STORE``, else SQLite at
    ``./alerthooks.db``. ``mode="inline"`` runs handlers before answering (5xx when one fails, so
    the provider retries); ``mode="queued"`` answers once the event is durably recorded and a
    worker runs the handlers, retrying with backoff (``retry_backoff`` seconds doubling up to
    ``retry_backoff_max``) until ``max_attempts``, then marks them dead. The worker runs in this
    process's lifespan unless ``worker=False`` (for web processes of a split deployment).

    ``trusted_proxies`` (env ``ALERTHOOKS_TRUSTED_PROXIES``) names the proxies whose
    ``X-Forwarded-For`` is believed when a provider has an allowlist (``allowed_ips=``); CIDRs
    as a list, a comma-separated string or ``@path`` to a file (see :mod:`alerthooks.sources`).

    ``catch_up_every`` (seconds, queued mode) has the worker run :meth:`catch_up` that often
    (first when it starts), one replica at a time where the store is shared: the first run
    reads the last 72 hours, later ones back to a period before the last complete run.

    Deprecated: the ``stripe_*`` and ``chargebee_*`` keyword arguments (``stripe_secret=``,
    ``chargebee_auth=``, …) still build those providers, with a ``DeprecationWarning`` naming
    the ``providers=[...]`` to write instead; giving a provider both ways is a ``ValueError``.
    """

    def __init__(
        self,
        *,
        providers: Iterable[Provider] | None = None,
        store: str | Store | None = None,
        dispatcher: Dispatcher | None = None,
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
        catch_up_every: float | None = None,
        trusted_proxies: Networks | None = None,
        **deprecated: Unpack[ProviderKeywords],
    ) -> None:
        if mode not in ("inline", "queued"):
            raise ValueError(f"mode must be 'inline' or 'queued', got {mode!r}")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if catch_up_every is not None:
            if mode != "queued":
                raise ValueError("catch_up_every needs mode='queued' (the worker runs it)")
            if isinstance(catch_up_every, bool) or not catch_up_every > 0:
                raise ValueError(
                    f"catch_up_every must be a positive number of seconds, got {catch_up_every!r}"
                )
        self.providers: dict[str, Provider] = _by_name(
            with_keyword_providers(providers, deprecated)
        )
        runtime = Runtime(
            store=store if isinstance(store, Store) else open_store(store),
            dispatcher=_dispatcher(dispatcher, self.providers),
            providers=self.providers,
            owner=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            lease_seconds=lease_seconds,
            max_attempts=max_attempts,
            retry_backoff=retry_backoff,
            retry_backoff_max=retry_backoff_max,
        )
        self._runtime = runtime
        self._mode: Literal["inline", "queued"] = mode
        #: Whether this process runs the queued-mode worker (``worker=`` of the constructor).
        self.run_worker = worker
        self.worker = Worker(runtime, concurrency=worker_concurrency, poll_interval=poll_interval)
        self._receiver = Receiver(
            runtime,
            queued=mode == "queued",
            wake=self.worker.wake,
            first_use=self._start_worker_on_first_use,
        )
        self._states = StateReader(self.providers)
        self.catch_up_every = catch_up_every
        self._catch_up_schedule: CatchUpSchedule | None = None
        if catch_up_every is not None:
            self._catch_up_schedule = CatchUpSchedule(
                self._receiver, self.providers.values(), catch_up_every
            )
            self.worker.every(catch_up_every, self._catch_up_schedule, name="catch-up")
        self._asgi = ASGIApp(
            self._receiver,
            self.providers.values(),
            observers=runtime.observers,
            sources=_source_filter(self.providers.values(), trusted_proxies),
            max_body_bytes=max_body_bytes,
            body_timeout=body_timeout,
            startup=self.startup,
            shutdown=self.shutdown,
        )

    lease_seconds: _Setting[float] = _Setting("_runtime", "lease_seconds")
    max_attempts: _Setting[int] = _Setting("_runtime", "max_attempts")
    retry_backoff: _Setting[float] = _Setting("_runtime", "retry_backoff")
    retry_backoff_max: _Setting[float] = _Setting("_runtime", "retry_backoff_max")
    max_body_bytes: _Setting[int] = _Setting("_asgi", "max_body_bytes")
    body_timeout: _Setting[float] = _Setting("_asgi", "body_timeout")

    @property
    def store(self) -> Store:
        """Where deliveries and handler outcomes are recorded."""
        return self._runtime.store

    @store.setter
    def store(self, store: Store) -> None:
        self.replace_store(store)

    def replace_store(self, store: str | Store) -> None:
        """Record into ``store`` (a URL or a :class:`~alerthooks.store.Store`) instead of the
        one given at construction; call it before startup (the CLI's ``--store`` does)."""
        self._runtime.store = store if isinstance(store, Store) else open_store(store)

    @property
    def mode(self) -> Literal["inline", "queued"]:
        """``"inline"`` or ``"queued"``."""
        return self._mode

    @property
    def dispatcher(self) -> Dispatcher:
        """The handler registry (what :meth:`on` registers into)."""
        return self._runtime.dispatcher

    @property
    def runtime(self) -> Runtime:
        """What the receiver and the worker share (store, handlers, providers, settings)."""
        return self._runtime

    @property
    def owner(self) -> str:
        """This process's name in the store's leases (host:pid:random)."""
        return self._runtime.owner

    @property
    def lease_renewals(self) -> LeaseRenewals:
        """The timer renewing the leases of running handlers."""
        return self._runtime.renewals

    @property
    def sources(self) -> SourceFilter | None:
        """The source-network filter, or None when no provider has an allowlist."""
        return self._asgi.sources

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

        Filters narrow it further: ``provider`` (one of :attr:`providers`; another name is a
        ``ValueError``), ``kind`` (``"usage"``, ``"spend"``, ``"credit_balance"`` or
        ``"other"``; another value is a ``ValueError``), ``alert_id``, ``meter_id``,
        ``customer_id``, ``subscription_id`` and ``alert_type``, each a string or a set of
        accepted strings. The function may be ``async def`` or plain
        ``def`` (run in a thread); several handlers may share a type.
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
        worker retries until it comes back. Without a lifespan, the first delivery does both.
        """
        try:
            await self._receiver.open()
        except StoreError as exc:
            logger.error("store %s unavailable at startup: %s", redact_url(self.store.url), exc)
        if self.mode == "queued" and self.run_worker:
            await self.worker.start()

    async def _start_worker_on_first_use(self) -> None:
        if self.mode == "queued" and self.run_worker and not self.worker.started:
            logger.warning(
                "queued mode: the worker is started by the first delivery, not by the app's "
                "lifespan; pass lifespan=hooks.lifespan to the host app so shutdown stops it"
            )
            await self.worker.start()

    async def shutdown(self) -> None:
        """Stop the worker (running handlers get a short grace period), then close the store."""
        await self.worker.stop()
        await self._receiver.close()
        for provider in self.providers.values():
            await provider.aclose()

    async def read_again(self, provider: str, event_id: str) -> tuple[str, ...] | str:
        """Read a stored ``unparsed`` event again with this app's providers: when it reads now,
        its matching handlers become pending (the worker, or :meth:`drain`, runs them) and its
        alert state is recorded, and their names are returned; otherwise the reason it still
        cannot be read. A delivery that refers to another event (a Stripe thin event) is read
        from the provider's API and that event recorded under its own id, the names' ``event_id``
        attribute. ``alerthooks replay --unparsed`` and the console's replay use it."""
        await self._receiver.open()
        return await self._receiver.read_again(provider, event_id)

    async def drain(self, timeout: float = 30.0) -> None:
        """Run queued work now and return once none is due (retries scheduled for later are
        left for later); TimeoutError after ``timeout`` seconds. For tests and scripts."""
        await self._receiver.open()
        await self.worker.drain(timeout)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Lifespan for the host app: ``Starlette(lifespan=hooks.lifespan)``."""
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    def wrap(self, app: Any, prefix: str = "/webhooks") -> HooksMount:
        """``app`` with these hooks answering under ``prefix``, for frameworks that cannot mount
        an ASGI app: ``application = hooks.wrap(get_asgi_application())`` (Django),
        ``app.asgi_app = hooks.wrap(app.asgi_app)`` (Quart). Serve what it returns: the hooks
        start before the app's lifespan and stop after it, or alone when the app has none."""
        return HooksMount(self, app, prefix)

    # -- serving --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve ASGI: ``POST /{name}`` for each provider, and the lifespan protocol."""
        await self._asgi(scope, receive, send)

    async def receive(self, provider: Provider, body: bytes, headers: Mapping[str, str]) -> Answer:
        """Verify, record and dispatch one delivery; return the HTTP status and body (a pair).

        ``headers`` has lower-case names. This is the whole receiver without ASGI around it: it
        answers as HTTP does in every case the receiver decides (a provider without credentials
        is 503 here too); only what needs the HTTP request (routing, method, source allowlist,
        body size and time limits) is the ASGI layer's.
        """
        return await self._receiver.receive(provider, body, headers)

    # -- alert state ----------------------------------------------------------------------------

    async def alert_states(
        self, *, in_alarm: bool | None = None, provider: str | None = None
    ) -> list[AlertState]:
        """Where each alert stands for each subject (customer or subscription), as the store
        keeps it: the state set by the event that occurred last, ordered by provider, alert and
        subject. ``in_alarm=True`` keeps those in alarm, ``False`` those within the limit;
        ``provider`` keeps that provider's.

        The first call on a store kept by an alerthooks from before alert state folds in the
        events it holds (read with this app's providers).
        """
        await self._receiver.open()
        return await self._states.states(self.store, in_alarm=in_alarm, provider=provider)

    async def catch_up(
        self,
        since: datetime | timedelta = timedelta(hours=72),
        providers: Iterable[str] | None = None,
    ) -> list[CatchUpResult]:
        """Read the alert events each provider's Events API holds since ``since`` (a moment,
        or a duration back from now) and put each through the pipeline as a delivery: stored,
        deduplicated, normalized, handlers run (inline mode) or queued (queued mode). An
        event already received runs nothing again, so catching up twice is harmless.

        ``providers`` names the providers to read (default: all). Returns one
        :class:`~alerthooks.catchup.CatchUpResult` per provider: ``fetched``, ``new``,
        ``already_received``, or why it was ``skipped`` (no events API, no credentials) or
        stopped (``error``). Raises :class:`~alerthooks.store.StoreError` when the store cannot
        be reached, ``ValueError`` for a provider name not served.
        """
        chosen = list(self.providers.values())
        if providers is not None:
            names = list(providers)
            unknown = [n for n in names if n not in self.providers]
            if unknown:
                raise ValueError(
                    f"no provider named {unknown[0]!r} (serving: {', '.join(self.providers)})"
                )
            chosen = [self.providers[n] for n in names]
        return await catch_up(self._receiver, chosen, since=since)

    # -- operations: console, metrics, traces, health ----------------------------------------

    @property
    def observers(self) -> Observers:
        """What watches this receiver's deliveries and handler runs (metrics, traces): empty
        unless :meth:`metrics_app`, :meth:`trace` or :meth:`observe` added one."""
        return self._runtime.observers

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
        """An ASGI app serving Prometheus metrics (``pip install "alerthooks-sdk[metrics]"``):
        ``Route("/metrics", hooks.metrics_app())``. See :mod:`alerthooks.metrics`."""
        from alerthooks.metrics import Metrics

        found = self.observers.find(Metrics)
        queued = self.mode == "queued"
        return (found or self.observe(Metrics(lambda: self.store, queued=queued))).app()

    def trace(self, tracer_provider: Any = None) -> None:
        """Open an OpenTelemetry span per delivery and per handler run
        (``pip install "alerthooks-sdk[otel]"``). See :mod:`alerthooks.tracing`."""
        from alerthooks.tracing import Tracing

        if self.observers.find(Tracing) is None:
            self.observe(Tracing(tracer_provider))

    def health_app(self) -> HealthApp:
        """An ASGI app with ``GET /live`` and ``GET /ready``:
        ``Mount("/_alerthooks", app=hooks.health_app())``. See :mod:`alerthooks.health`."""
        from alerthooks.health import HealthApp

        return HealthApp(self)
