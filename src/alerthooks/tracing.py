"""OpenTelemetry traces (``pip install "alerthooks-sdk[otel]"``): one span per delivery, with a
child span per handler run.

Only the OpenTelemetry API is used: the application's SDK and exporter decide where spans go
(with no SDK installed they cost next to nothing and go nowhere). Turn it on with
``hooks.trace()``; nothing here is imported until then.

A queued handler runs after its delivery was answered, so its span is not the delivery's child:
it carries a link to the delivery's span instead, when this process received the delivery (the
last ``remember`` deliveries are kept in memory; a worker in another process starts unlinked).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        'hooks.trace() needs the OpenTelemetry API: pip install "alerthooks-sdk[otel]"'
    ) from exc

from alerthooks._version import __version__
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
        self.tracer = trace.get_tracer("alerthooks", __version__, tracer_provider=tracer_provider)
        self.remember = remember
        self._deliveries: OrderedDict[tuple[str, str], trace.SpanContext] = OrderedDict()

    def __repr__(self) -> str:
        return "Tracing()"

    def delivery_scope(self, seen: Seen) -> _DeliverySpan:
        """The delivery's span, current while the delivery is handled."""
        return _DeliverySpan(self, seen)

    def handler_scope(self, run: Run) -> _HandlerSpan:
        """The handler run's span: the current span's child, and for queued work linked to
        the delivery's span."""
        return _HandlerSpan(self, run)

    def _keep(self, key: tuple[str, str], context: trace.SpanContext) -> None:
        if not context.is_valid:
            return
        deliveries = self._deliveries
        deliveries[key] = context
        deliveries.move_to_end(key)
        while len(deliveries) > self.remember:
            deliveries.popitem(last=False)


class _Current:
    """A span made current on enter and ended on exit, exceptions recorded (what
    ``start_as_current_span`` does, without its layers of generator context managers)."""

    __slots__ = ("_token", "span")

    span: Span

    def _enter(self, span: Span) -> Span:
        self.span = span
        self._token = otel_context.attach(trace.set_span_in_context(span))
        return span

    def _exit(self, exc: BaseException | None) -> None:
        span = self.span
        try:
            if exc is not None and span.is_recording():
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        finally:
            otel_context.detach(self._token)
            span.end()


class _DeliverySpan(_Current):
    __slots__ = ("seen", "tracing")

    def __init__(self, tracing: Tracing, seen: Seen) -> None:
        self.tracing = tracing
        self.seen = seen

    def __enter__(self) -> Span:
        return self._enter(
            self.tracing.tracer.start_span(
                DELIVERY_SPAN,
                kind=SpanKind.SERVER,
                attributes={"alerthooks.provider": self.seen.provider},
            )
        )

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        seen, span = self.seen, self.span
        if span.is_recording():
            if seen.event_id is not None:
                span.set_attribute("alerthooks.event_id", seen.event_id)
            if seen.event_type is not None:
                span.set_attribute("alerthooks.event_type", seen.event_type)
            span.set_attribute("alerthooks.outcome", seen.outcome)
            span.set_attribute("http.response.status_code", seen.status)
            if seen.status >= 500:
                span.set_status(Status(StatusCode.ERROR, seen.outcome))
        if seen.event_id is not None:
            self.tracing._keep((seen.provider, seen.event_id), span.get_span_context())
        self._exit(exc)


class _HandlerSpan(_Current):
    __slots__ = ("run", "tracing")

    def __init__(self, tracing: Tracing, run: Run) -> None:
        self.tracing = tracing
        self.run = run

    def __enter__(self) -> Span:
        run = self.run
        links = []
        if run.queued:
            delivered = self.tracing._deliveries.get((run.provider, run.event_id))
            if delivered is not None:
                links.append(Link(delivered))
        return self._enter(
            self.tracing.tracer.start_span(
                HANDLER_SPAN,
                kind=SpanKind.CONSUMER if run.queued else SpanKind.INTERNAL,
                attributes={
                    "alerthooks.handler": run.handler,
                    "alerthooks.provider": run.provider,
                    "alerthooks.event_id": run.event_id,
                    "alerthooks.queued": run.queued,
                },
                links=links,
            )
        )

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        run, span = self.run, self.span
        if span.is_recording():
            span.set_attribute("alerthooks.outcome", run.outcome)
            if run.outcome != "done":
                span.set_status(Status(StatusCode.ERROR, run.error or run.outcome))
        self._exit(exc)
