"""OpenTelemetry traces (``pip install "alerthooks[otel]"``): one span per delivery, with a
child span per handler run.

Only the OpenTelemetry API is used: the application's SDK and exporter decide where spans go
(with no SDK installed they cost next to nothing and go nowhere). Turn it on with
``hooks.trace()``; nothing here is imported until then.

A queued handler runs after its delivery was answered, so its span is not the delivery's child:
it carries a link to the delivery's span instead, when this process received the delivery (the
last ``remember`` deliveries are kept in memory; a worker in another process starts unlinked).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from alerthooks.observe import Observer, Run, Seen

DELIVERY_SPAN = "alerthooks.delivery"
HANDLER_SPAN = "alerthooks.handler"


class Tracing(Observer):
    """An :class:`~alerthooks.observe.Observer` that opens a span per delivery
    (``alerthooks.delivery``: attributes ``alerthooks.provider``, ``alerthooks.event_id``,
    ``alerthooks.event_type``, ``alerthooks.outcome``, ``http.response.status_code``) and a span
    per handler run (``alerthooks.handler``: ``alerthooks.handler``, ``alerthooks.outcome``,
    the event's provider and id).

    ``tracer_provider`` defaults to the global one that the application's SDK set up.
    """

    def __init__(self, tracer_provider: Any = None, *, remember: int = 10_000) -> None:
        from alerthooks import __version__

        self.tracer = trace.get_tracer("alerthooks", __version__, tracer_provider=tracer_provider)
        self.remember = remember
        self._deliveries: OrderedDict[tuple[str, str], trace.SpanContext] = OrderedDict()

    def __repr__(self) -> str:
        return "Tracing()"

    @contextlib.contextmanager
    def delivery_scope(self, seen: Seen) -> Iterator[object]:
        """The delivery's span, current while the delivery is handled."""
        with self.tracer.start_as_current_span(
            DELIVERY_SPAN,
            kind=SpanKind.SERVER,
            attributes={"alerthooks.provider": seen.provider},
            record_exception=True,
            set_status_on_exception=True,
        ) as span:
            try:
                yield span
            finally:
                if seen.event_id is not None:
                    span.set_attribute("alerthooks.event_id", seen.event_id)
                    self._keep((seen.provider, seen.event_id), span.get_span_context())
                if seen.event_type is not None:
                    span.set_attribute("alerthooks.event_type", seen.event_type)
                span.set_attribute("alerthooks.outcome", seen.outcome)
                span.set_attribute("http.response.status_code", seen.status)
                if seen.status >= 500:
                    span.set_status(Status(StatusCode.ERROR, seen.outcome))

    @contextlib.contextmanager
    def handler_scope(self, run: Run) -> Iterator[object]:
        """The handler run's span: the current span's child, and for queued work linked to
        the delivery's span."""
        links = []
        if run.queued:
            delivered = self._deliveries.get((run.provider, run.event_id))
            if delivered is not None:
                links.append(Link(delivered))
        with self.tracer.start_as_current_span(
            HANDLER_SPAN,
            kind=SpanKind.CONSUMER if run.queued else SpanKind.INTERNAL,
            attributes={
                "alerthooks.handler": run.handler,
                "alerthooks.provider": run.provider,
                "alerthooks.event_id": run.event_id,
                "alerthooks.queued": run.queued,
            },
            links=links,
        ) as span:
            try:
                yield span
            finally:
                span.set_attribute("alerthooks.outcome", run.outcome)
                if run.outcome != "done":
                    span.set_status(Status(StatusCode.ERROR, run.error or run.outcome))

    def _keep(self, key: tuple[str, str], context: trace.SpanContext) -> None:
        if not context.is_valid:
            return
        deliveries = self._deliveries
        deliveries[key] = context
        deliveries.move_to_end(key)
        while len(deliveries) > self.remember:
            deliveries.popitem(last=False)
