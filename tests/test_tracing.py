"""OpenTelemetry traces through the observer interface: a span per delivery, a child span per
handler run, a link from queued work to its delivery, errors marked."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from alerthooks import AlertEvent, AlertHooks
from alerthooks.observe import run_handler
from alerthooks.providers import Stripe
from alerthooks.testing import stripe_alert_triggered
from alerthooks.tracing import DELIVERY_SPAN, HANDLER_SPAN, Tracing

from .conftest import STRIPE_SECRET, post_stripe


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def hooks(exporter: InMemorySpanExporter) -> AlertHooks:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    hooks = AlertHooks(providers=[Stripe(STRIPE_SECRET)], store="memory://")
    hooks.trace(provider)
    return hooks


def spans(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def deliver(hooks: AlertHooks, payload: dict[str, Any], status: int = 200) -> None:
    """What the receiver does around a delivery: a scope, the event, handler runs, the answer."""
    event = hooks.stripe.normalize(payload)
    with hooks.observers.delivery("stripe") as seen:
        seen.event(payload["id"], payload["type"])
        await asyncio.gather(
            *(
                run_handler(hooks.observers, h, event, queued=False)
                for h in hooks.dispatcher.match(event)
            )
        )
        seen.answered(status, b'{"status":"accepted"}' if status == 200 else b'{"error":"x"}')


async def test_a_delivery_is_one_span_with_a_child_per_handler(
    hooks: AlertHooks, exporter: InMemorySpanExporter
) -> None:
    inner = hooks.observers.find(Tracing)
    assert inner is not None

    @hooks.on("alert.triggered", name="notify")
    async def notify(event: AlertEvent) -> None:
        # The handler's own spans nest below its run's span.
        with inner.tracer.start_as_current_span("send-email"):
            pass

    @hooks.on("*", name="record")
    def record(event: AlertEvent) -> None:
        pass

    payload = stripe_alert_triggered(id="evt_traced")
    await deliver(hooks, payload)
    [delivery] = spans(exporter, DELIVERY_SPAN)
    assert delivery.kind is SpanKind.SERVER
    assert attributes(delivery) == {
        "alerthooks.provider": "stripe",
        "alerthooks.event_id": "evt_traced",
        "alerthooks.event_type": "billing.alert.triggered",
        "alerthooks.outcome": "accepted",
        "http.response.status_code": 200,
    }
    assert delivery.status.status_code is StatusCode.UNSET
    runs = spans(exporter, HANDLER_SPAN)
    assert sorted(attributes(s)["alerthooks.handler"] for s in runs) == ["notify", "record"]
    for run in runs:
        assert run.parent is not None and run.parent.span_id == delivery.context.span_id
        assert run.context.trace_id == delivery.context.trace_id
        assert attributes(run)["alerthooks.outcome"] == "done"
        assert attributes(run)["alerthooks.event_id"] == "evt_traced"
        assert run.kind is SpanKind.INTERNAL and not run.links
    [email] = spans(exporter, "send-email")
    [notify_run] = [s for s in runs if attributes(s)["alerthooks.handler"] == "notify"]
    assert email.parent is not None and email.parent.span_id == notify_run.context.span_id


async def test_queued_work_links_to_its_delivery_span(
    hooks: AlertHooks, exporter: InMemorySpanExporter
) -> None:
    @hooks.on("alert.triggered", name="notify")
    async def notify(event: AlertEvent) -> None:
        pass

    payload = stripe_alert_triggered(id="evt_queued_trace")
    with hooks.observers.delivery("stripe") as seen:  # queued: answered before handlers run
        seen.event(payload["id"], payload["type"])
        seen.answered(200, b'{"status":"accepted"}')
    event = hooks.stripe.normalize(payload)
    await run_handler(hooks.observers, hooks.dispatcher.handlers[0], event, queued=True)
    [delivery] = spans(exporter, DELIVERY_SPAN)
    [run] = spans(exporter, HANDLER_SPAN)
    assert run.parent is None  # a new trace, not the delivery's child
    assert run.kind is SpanKind.CONSUMER
    assert [link.context.span_id for link in run.links] == [delivery.context.span_id]
    assert attributes(run)["alerthooks.queued"] is True

    # Work for an event this process did not receive (another web process) starts unlinked.
    other = hooks.stripe.normalize(stripe_alert_triggered(id="evt_elsewhere"))
    await run_handler(hooks.observers, hooks.dispatcher.handlers[0], other, queued=True)
    unlinked = [s for s in spans(exporter, HANDLER_SPAN) if s is not run]
    assert len(unlinked) == 1 and not unlinked[0].links


async def test_failures_mark_their_spans(hooks: AlertHooks, exporter: InMemorySpanExporter) -> None:
    @hooks.on("alert.triggered", name="broken")
    async def broken(event: AlertEvent) -> None:
        raise ConnectionError("pager down")

    await deliver(hooks, stripe_alert_triggered(), status=500)
    [delivery] = spans(exporter, DELIVERY_SPAN)
    [run] = spans(exporter, HANDLER_SPAN)
    assert run.status.status_code is StatusCode.ERROR
    assert run.status.description == "ConnectionError: pager down"
    assert attributes(run)["alerthooks.outcome"] == "failed"
    assert delivery.status.status_code is StatusCode.ERROR
    assert attributes(delivery)["alerthooks.outcome"] == "failed"


async def test_a_delivery_rejected_before_parsing_has_no_event_attributes(
    hooks: AlertHooks, exporter: InMemorySpanExporter
) -> None:
    with hooks.observers.delivery("stripe") as seen:
        seen.answered(401, b'{"error":"bad signature"}')
    [delivery] = spans(exporter, DELIVERY_SPAN)
    assert attributes(delivery) == {
        "alerthooks.provider": "stripe",
        "alerthooks.outcome": "rejected",
        "http.response.status_code": 401,
    }


async def test_the_links_kept_are_bounded(exporter: InMemorySpanExporter) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider, remember=2)
    hooks = AlertHooks(providers=[Stripe(STRIPE_SECRET)], store="memory://")
    hooks.observe(tracing)
    for n in range(3):
        with hooks.observers.delivery("stripe") as seen:
            seen.event(f"evt_{n}", "billing.alert.triggered")
            seen.answered(200)
    assert list(tracing._deliveries) == [("stripe", "evt_1"), ("stripe", "evt_2")]


def test_trace_is_added_once() -> None:
    hooks = AlertHooks(store="memory://")
    hooks.trace()
    hooks.trace()
    assert [type(o) for o in hooks.observers] == [Tracing]


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_a_delivery_through_the_receiver_is_traced(
    hooks: AlertHooks, exporter: InMemorySpanExporter
) -> None:
    @hooks.on("alert.triggered", name="notify")
    async def notify(event: AlertEvent) -> None:
        pass

    payload = stripe_alert_triggered(id="evt_through")
    async with client_for(hooks) as client:
        assert (await post_stripe(client, payload)).status_code == 200
        assert (await post_stripe(client, payload, secret="whsec_wrong")).status_code == 400
    first, rejected = spans(exporter, DELIVERY_SPAN)
    assert attributes(first)["alerthooks.event_id"] == "evt_through"
    assert attributes(first)["alerthooks.outcome"] == "accepted"
    assert attributes(rejected) == {
        "alerthooks.provider": "stripe",
        "alerthooks.outcome": "rejected",
        "http.response.status_code": 400,
    }
    [run] = spans(exporter, HANDLER_SPAN)
    assert run.parent is not None and run.parent.span_id == first.context.span_id


async def test_queued_work_through_the_worker_links_to_the_delivery(
    exporter: InMemorySpanExporter,
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    hooks = AlertHooks(
        providers=[Stripe(STRIPE_SECRET)], store="memory://", mode="queued", worker=False
    )
    hooks.trace(provider)

    @hooks.on("alert.triggered", name="notify")
    async def notify(event: AlertEvent) -> None:
        pass

    async with client_for(hooks) as client:
        assert (await post_stripe(client, stripe_alert_triggered())).status_code == 200
    assert spans(exporter, HANDLER_SPAN) == []  # answered before any handler ran
    await hooks.drain()
    [delivery] = spans(exporter, DELIVERY_SPAN)
    [run] = spans(exporter, HANDLER_SPAN)
    assert run.parent is None and run.kind is SpanKind.CONSUMER
    assert [link.context.span_id for link in run.links] == [delivery.context.span_id]


async def test_an_exception_through_a_delivery_is_recorded_on_its_span(
    hooks: AlertHooks, exporter: InMemorySpanExporter
) -> None:
    with pytest.raises(RuntimeError), hooks.observers.delivery("stripe"):
        raise RuntimeError("pipeline bug")
    [delivery] = spans(exporter, DELIVERY_SPAN)
    assert delivery.status.status_code is StatusCode.ERROR
    assert delivery.status.description == "RuntimeError: pipeline bug"
    assert [e.name for e in delivery.events] == ["exception"]
    assert attributes(delivery)["http.response.status_code"] == 500
    assert trace.get_current_span() is trace.INVALID_SPAN  # the context was restored
