"""``AlertHooks``: a small facade that wires the receiver's parts and keeps its public API.

Each delivery flows one way: bytes → verify → parse → normalize → record → dispatch → answer.
:mod:`alerthooks.asgi` moves the bytes, :mod:`alerthooks.receiver` does the rest,
:mod:`alerthooks.dispatch` holds and runs the handlers, :mod:`alerthooks.worker` runs queued work.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from starlette.types import Receive, Scope, Send

from alerthooks import state
from alerthooks.asgi import ASGIApp
from alerthooks.dispatch import Dispatcher, F, Handler, HandlerFunc
from alerthooks.events import AlertState
from alerthooks.observe import Observers, ObserverT
from alerthooks.providers import Provider, builtin_providers
from alerthooks.receiver import Answer, Receiver
from alerthooks.sources import (
    TRUSTED_PROXIES_ENV,
    Networks,
    SourceFilter,
    networks_from_env,
    networks_setting,
)
from alerthooks.store import Store, StoreError, open_store, redact_url
from alerthooks.worker import LeaseRenewals, Runtime, Worker

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from alerthooks.catchup import CatchUpResult
    from alerthooks.health import HealthApp
    from alerthooks.metrics import MetricsApp

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_TOLERANCE = 300

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
            tolerance=(
                DEFAULT_TOLERANCE
                if options["stripe_tolerance"] is None
                else options["stripe_tolerance"]
            ),
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


def _by_name(given: Iterable[Provider] | None, shortcuts: list[Provider]) -> dict[str, Provider]:
    """The providers to serve, by name: ``given`` (default: every built-in one from its
    environment) with those the shortcut keyword arguments built."""
    if given is None:
        by_shortcut = {p.name for p in shortcuts}
        chosen = [*shortcuts, *(p for p in builtin_providers() if p.name not in by_shortcut)]
    else:
        chosen = list(given)
        names = {p.name for p in chosen}
        for provider in shortcuts:
            if provider.name in names:
                raise ValueError(
                    f"provider {provider.name!r} is given both in providers= and by "
                    f"{provider.name}_* keyword arguments; give it one way"
                )
        chosen.extend(shortcuts)
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

    ``catch_up_every`` (seconds, queued mode) has the worker run :meth:`catch_up` that often
    (first when it starts), one replica at a time where the store is shared: the first run
    reads the last 72 hours, later ones back to a period before the last complete run.
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
        catch_up_every: float | None = None,
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
        if catch_up_every is not None:
            if mode != "queued":
                raise ValueError("catch_up_every needs mode='queued' (the worker runs it)")
            if isinstance(catch_up_every, bool) or not catch_up_every > 0:
                raise ValueError(
                    f"catch_up_every must be a positive number of seconds, got {catch_up_every!r}"
                )
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
        self.providers: dict[str, Provider] = _by_name(providers, shortcuts)
        runtime = Runtime(
            store=store if isinstance(store, Store) else open_store(store),
            dispatcher=Dispatcher(providers=self.providers),
            providers=self.providers,
            owner=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            lease_seconds=lease_seconds,
            max_attempts=max_attempts,
            retry_backoff=retry_backoff,
            retry_backoff_max=retry_backoff_max,
        )
        self._runtime = runtime
        self._mode: Literal["inline", "queued"] = mode
        self._folded: Store | None = None  # the store whose earlier events were folded in
        self.worker = Worker(runtime, concurrency=worker_concurrency, poll_interval=poll_interval)
        self._receiver = Receiver(
            runtime, self.worker, queued=mode == "queued", start_worker=worker
        )
        self.catch_up_every = catch_up_every
        self._caught_up_at: datetime | None = None
        if catch_up_every is not None:
            self.worker.every(catch_up_every, self._periodic_catch_up, name="catch-up")
        self._asgi = ASGIApp(
            self._receiver,
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
    run_worker: _Setting[bool] = _Setting("_receiver", "start_worker")
    """Whether this process runs the queued-mode worker (``worker=`` of the constructor)."""

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
        ``ValueError``), ``alert_id``, ``meter_id``, ``customer_id`` and ``subscription_id``,
        each a string or a set of accepted strings. The function may be ``async def`` or plain
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
        cannot be read. ``alerthooks replay --unparsed`` and the console's replay use it."""
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

    # -- serving --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve ASGI: ``POST /{name}`` for each provider, and the lifespan protocol."""
        await self._asgi(scope, receive, send)

    async def receive(self, provider: Provider, body: bytes, headers: Mapping[str, str]) -> Answer:
        """Verify, record and dispatch one delivery; return the HTTP status and body (a pair).

        ``headers`` has lower-case names. This is the whole receiver without ASGI around it.
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
        store = self.store
        if self._folded is not store:
            # Once per store: what this app's providers cannot read now, they never will.
            await state.fold_stored(store, self.providers)
            self._folded = store
        return list(await store.states(in_alarm=in_alarm, provider=provider))

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
        from alerthooks.catchup import catch_up

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

    async def _periodic_catch_up(self) -> None:
        """The worker's catch-up: 72 hours back the first time, then from a period before the
        start of the last run that completed for every provider (the overlap covers events
        the provider created late)."""
        started = datetime.now(timezone.utc)
        since: datetime | timedelta = timedelta(hours=72)
        if self._caught_up_at is not None and self.catch_up_every is not None:
            since = self._caught_up_at - timedelta(seconds=self.catch_up_every)
        results = await self.catch_up(since=since)
        for result in results:
            if not result.ok:
                logger.warning("catch-up: %s", result.line())
        if all(r.ok for r in results):
            self._caught_up_at = started

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
