"""Prometheus metrics (``pip install "alerthooks-sdk[metrics]"``), served by ``metrics_app()``.

========================================== =========================================================
``alerthooks_deliveries_total``            counter: deliveries answered, by ``provider``,
                                           ``status`` (the HTTP answer code) and ``outcome``
                                           (``accepted``, ``duplicate``, ``ignored``,
                                           ``unparsed``, ``rejected``, ``failed``: a handler
                                           failed, ``unavailable``: 503, retry later)
``alerthooks_handler_runs_total``          counter: handler runs, by ``handler`` and ``outcome``
                                           (``done`` or ``failed``)
``alerthooks_delivery_seconds``            histogram: time from a delivery's request to its answer
                                           (body read and, inline, handlers run), by ``provider``
``alerthooks_queue_due``                   gauge: handler runs due now (pending, or failed and due
                                           for a retry), read from the store at each scrape;
                                           queued mode only (inline, nothing runs them until
                                           the provider redelivers)
``alerthooks_dead_handlers``               gauge: handler runs that are dead, read from the store
========================================== =========================================================

The gauges count at most ``count_limit`` events per status (10,000 by default) each scrape.

Several processes (``uvicorn --workers N``): set ``PROMETHEUS_MULTIPROC_DIR`` to an empty
directory in the environment every process starts with (it must be set before
``prometheus_client`` is imported, and emptied before each start); each process then writes its
counts there and ``metrics_app()`` in any of them serves the sum over all of them
(prometheus-client's multiprocess mode). The gauges are the store's counts, as set by the process
that served the scrape last.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from datetime import datetime, timezone

try:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        generate_latest,
    )
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        'hooks.metrics_app() needs prometheus-client: pip install "alerthooks-sdk[metrics]"'
    ) from exc
from starlette.types import Receive, Scope, Send

from alerthooks.asgi import acknowledge_lifespan
from alerthooks.observe import Observer, Seen
from alerthooks.store import Store

logger = logging.getLogger(__name__)

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
DELIVERY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics(Observer):
    """Counts deliveries and handler runs into its own ``registry`` (a fresh
    ``CollectorRegistry`` unless given), and reads the queue gauges from ``store`` when scraped.

    ``store`` is a :class:`~alerthooks.store.Store` or a function returning the current one
    (``hooks.metrics_app()`` passes ``lambda: hooks.store``, so a replaced store is followed).
    ``queued`` exports ``alerthooks_queue_due`` (``metrics_app()`` passes whether the app is in
    queued mode: inline, no worker runs what it would count).
    """

    def __init__(
        self,
        store: Store | Callable[[], Store],
        *,
        registry: CollectorRegistry | None = None,
        count_limit: int = 10_000,
        queued: bool = True,
    ) -> None:
        self._store = store
        self.queued = queued
        self.count_limit = count_limit
        self.registry = registry if registry is not None else CollectorRegistry()
        self.deliveries = Counter(
            "alerthooks_deliveries",
            "Webhook deliveries answered, by provider, HTTP answer code and outcome.",
            ["provider", "status", "outcome"],
            registry=self.registry,
        )
        self.handler_runs = Counter(
            "alerthooks_handler_runs",
            "Handler runs, by handler and outcome (done or failed).",
            ["handler", "outcome"],
            registry=self.registry,
        )
        self.delivery_seconds = Histogram(
            "alerthooks_delivery_seconds",
            "Seconds from a delivery's request to its answer.",
            ["provider"],
            buckets=DELIVERY_BUCKETS,
            registry=self.registry,
        )
        self.queue_due = Gauge(
            "alerthooks_queue_due",
            "Handler runs due now: pending, or failed and due for a retry.",
            registry=self.registry if queued else None,
            multiprocess_mode="mostrecent",
        )
        self.dead_handlers = Gauge(
            "alerthooks_dead_handlers",
            "Handler runs that are dead (attempts exhausted); replay them.",
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )

        # The labelled children, by label values: labels() costs microseconds per call.
        self._delivery_children: dict[tuple[str, int, str], tuple[Counter, Histogram]] = {}
        self._run_children: dict[tuple[str, str], Counter] = {}

    def __repr__(self) -> str:
        return "Metrics()"

    @property
    def store(self) -> Store:
        """The store the gauges are read from."""
        return self._store if isinstance(self._store, Store) else self._store()

    def delivery_scope(self, seen: Seen) -> contextlib.AbstractContextManager[object]:
        """Count the delivery, its time and its outcome once it is answered."""
        return _Counted(self, seen)

    def count(self, provider: str, status: int, outcome: str, seconds: float) -> None:
        """Count one answered delivery."""
        key = (provider, status, outcome)
        children = self._delivery_children.get(key)
        if children is None:
            children = self._delivery_children[key] = (
                self.deliveries.labels(provider, str(status), outcome),
                self.delivery_seconds.labels(provider),
            )
        children[0].inc()
        children[1].observe(seconds)

    def handler_run(self, handler: str, outcome: str, seconds: float) -> None:
        """Count the handler run."""
        child = self._run_children.get((handler, outcome))
        if child is None:
            child = self._run_children[(handler, outcome)] = self.handler_runs.labels(
                handler, outcome
            )
        child.inc()

    async def refresh(self) -> None:
        """Set the queue gauges from the store; a store that does not answer leaves them as
        they were (and is logged)."""
        now = datetime.now(timezone.utc)
        store = self.store
        try:
            await store.open()
            due: set[tuple[str, str, str]] = set()
            for status in ("pending", "failed") if self.queued else ():
                for stored in await store.events(status=status, limit=self.count_limit):
                    for o in stored.outcomes:
                        if o.status == "pending" or (
                            o.status == "failed" and (o.due_at is None or o.due_at <= now)
                        ):
                            due.add((stored.provider, stored.event_id, o.handler))
            dead = sum(
                o.status == "dead"
                for stored in await store.events(status="dead", limit=self.count_limit)
                for o in stored.outcomes
            )
        except Exception as exc:
            logger.warning("metrics: the store did not answer; queue gauges not updated: %s", exc)
            return
        self.queue_due.set(len(due))
        self.dead_handlers.set(dead)

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format: this process's, or in multiprocess mode
        (``PROMETHEUS_MULTIPROC_DIR`` set) every process's."""
        if os.environ.get(MULTIPROCESS_ENV):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)

    def app(self) -> MetricsApp:
        """An ASGI app that serves :meth:`exposition` at any path."""
        return MetricsApp(self)


class _Counted:
    """The delivery scope of :class:`Metrics`: counts the delivery as it is left (by then the
    :class:`~alerthooks.observe.Seen` holds its status, outcome and time)."""

    __slots__ = ("metrics", "seen")

    def __init__(self, metrics: Metrics, seen: Seen) -> None:
        self.metrics, self.seen = metrics, seen

    def __enter__(self) -> object:
        return self

    def __exit__(self, *exc_info: object) -> None:
        seen = self.seen
        self.metrics.count(seen.provider, seen.status, seen.outcome, seen.seconds)


class MetricsApp:
    """ASGI app: ``GET`` (or ``HEAD``) at any path answers the metrics; other methods 405.

    Mount it with ``Route("/metrics", hooks.metrics_app())`` or ``Mount("/metrics", …)``.
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await acknowledge_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["method"] not in ("GET", "HEAD"):
            body = b"method not allowed\n"
            headers = [(b"allow", b"GET, HEAD"), (b"content-type", b"text/plain; charset=utf-8")]
            status = 405
        else:
            await self.metrics.refresh()
            body = self.metrics.exposition()
            headers = [(b"content-type", CONTENT_TYPE_LATEST.encode())]
            status = 200
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )
