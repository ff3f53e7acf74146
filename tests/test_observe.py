"""The observer interface the receiver reports to: empty it costs nothing and imports
nothing; an observer that fails never fails a delivery."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from alerthooks import AlertEvent, AlertHooks
from alerthooks.observe import Observer, Observers, Run, Seen, run_handler
from alerthooks.providers import Stripe
from alerthooks.testing import stripe_alert_triggered

from .conftest import STRIPE_SECRET


class Recorder(Observer):
    def __init__(self) -> None:
        self.seen: list[tuple[object, ...]] = []

    def delivery(self, provider, event_id, event_type, status, seconds):  # type: ignore[no-untyped-def]
        self.seen.append(("delivery", provider, event_id, event_type, status, seconds >= 0))

    def handler_run(self, handler: str, outcome: str, seconds: float) -> None:
        self.seen.append(("run", handler, outcome, seconds >= 0))

    @contextlib.contextmanager
    def delivery_scope(self, seen: Seen) -> Iterator[None]:
        self.seen.append(("enter delivery", seen.provider))
        yield
        self.seen.append(("leave delivery", seen.status, seen.outcome))

    @contextlib.contextmanager
    def handler_scope(self, run: Run) -> Iterator[None]:
        self.seen.append(("enter run", run.handler, run.queued))
        yield
        self.seen.append(("leave run", run.outcome, run.error))


class Broken(Observer):
    def delivery(self, provider, event_id, event_type, status, seconds):  # type: ignore[no-untyped-def]
        raise RuntimeError("observer bug")

    def handler_run(self, handler: str, outcome: str, seconds: float) -> None:
        raise RuntimeError("observer bug")

    def delivery_scope(self, seen: Seen) -> contextlib.AbstractContextManager[object]:
        raise RuntimeError("observer bug")

    @contextlib.contextmanager
    def handler_scope(self, run: Run) -> Iterator[None]:
        yield
        raise RuntimeError("observer bug on the way out")


def test_no_observers_is_falsy_and_adding_one_is_idempotent() -> None:
    observers = Observers()
    assert not observers
    recorder = Recorder()
    assert observers.add(recorder) is recorder
    observers.add(recorder)
    assert observers and list(observers) == [recorder]
    assert observers.find(Recorder) is recorder and observers.find(Broken) is None
    with pytest.raises(TypeError):
        observers.add(object())  # type: ignore[type-var]


async def test_observers_see_deliveries_and_runs_in_order() -> None:
    hooks = AlertHooks(providers=[Stripe(STRIPE_SECRET)], store="memory://")
    recorder = hooks.observe(Recorder())

    @hooks.on("alert.triggered", name="broken")
    async def broken(event: AlertEvent) -> None:
        raise ValueError("nope")

    event = hooks.stripe.normalize(stripe_alert_triggered(id="evt_o"))
    with hooks.observers.delivery("stripe") as seen:
        seen.event("evt_o", "billing.alert.triggered")
        error = await run_handler(hooks.observers, hooks.dispatcher.handlers[0], event, queued=True)
        seen.answered(500, b'{"error":"a handler failed; retry later"}')
    assert error == "ValueError: nope"
    assert recorder.seen == [
        ("enter delivery", "stripe"),
        ("enter run", "broken", True),
        ("run", "broken", "failed", True),
        ("leave run", "failed", "ValueError: nope"),
        ("delivery", "stripe", "evt_o", "billing.alert.triggered", 500, True),
        ("leave delivery", 500, "failed"),
    ]


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (200, b'{"status":"accepted"}', "accepted"),
        (200, b'{"status":"duplicate"}', "duplicate"),
        (200, b'{"status":"ignored"}', "ignored"),
        (200, b"", "accepted"),
        (400, b'{"error":"invalid JSON"}', "rejected"),
        (500, b'{"error":"a handler failed; retry later"}', "failed"),
        (503, b'{"error":"store unavailable; retry later"}', "unavailable"),
    ],
)
def test_the_outcome_is_read_from_the_answer(status: int, body: bytes, outcome: str) -> None:
    seen = Seen("stripe")
    seen.answered(status, body)
    assert (seen.status, seen.outcome) == (status, outcome)


async def test_a_failing_observer_is_logged_and_never_fails_the_delivery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hooks = AlertHooks(providers=[Stripe(STRIPE_SECRET)], store="memory://")
    hooks.observe(Broken())
    recorder = hooks.observe(Recorder())

    @hooks.on("alert.triggered", name="fine")
    async def fine(event: AlertEvent) -> None:
        pass

    event = hooks.stripe.normalize(stripe_alert_triggered())
    with hooks.observers.delivery("stripe") as seen:
        assert (
            await run_handler(hooks.observers, hooks.dispatcher.handlers[0], event, queued=False)
            is None
        )
        seen.answered(200, b'{"status":"accepted"}')
    assert ("run", "fine", "done", True) in recorder.seen
    assert recorder.seen[-2][:5] == ("delivery", "stripe", None, None, 200)
    assert sum("observer" in r.getMessage() for r in caplog.records) == 4


def test_without_observers_nothing_optional_is_imported() -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, json, sys
        from alerthooks import AlertHooks
        from alerthooks.providers import Stripe
        from alerthooks.testing import stripe_alert_triggered, stripe_signature_header
        hooks = AlertHooks(providers=[Stripe({STRIPE_SECRET!r})], store="memory://")
        hooks.on("alert.triggered", name="h")(lambda event: None)
        hooks.health_app()
        body = json.dumps(stripe_alert_triggered()).encode()
        headers = {{"stripe-signature": stripe_signature_header(body, {STRIPE_SECRET!r})}}
        assert asyncio.run(hooks.receive(hooks.stripe, body, headers))[0] == 200
        loaded = [m for m in ("prometheus_client", "opentelemetry", "jinja2", "alerthooks.console",
                              "alerthooks.metrics", "alerthooks.tracing") if m in sys.modules]
        print(",".join(loaded))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, check=True, timeout=60
    ).stdout.decode()
    assert out.strip() == ""


@pytest.mark.parametrize(
    ("call", "blocked", "hint"),
    [
        ("hooks.metrics_app()", "prometheus_client", 'pip install "alerthooks-sdk[metrics]"'),
        ("hooks.trace()", "opentelemetry", 'pip install "alerthooks-sdk[otel]"'),
    ],
)
def test_an_extra_that_is_not_installed_is_named_with_its_install_line(
    call: str, blocked: str, hint: str
) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules[{blocked!r}] = None  # as if the extra were not installed
        from alerthooks import AlertHooks
        hooks = AlertHooks(store="memory://")
        try:
            {call}
        except ImportError as exc:
            print(exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, check=True, timeout=60
    ).stdout.decode()
    assert hint in out
