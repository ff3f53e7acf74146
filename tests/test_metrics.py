"""Prometheus metrics: the counters through the observer interface, the queue gauges read from
each store, the text format served by hooks.metrics_app(), and multiprocess mode."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from alerthooks import AlertEvent, AlertHooks
from alerthooks.metrics import Metrics
from alerthooks.observe import run_handler
from alerthooks.providers import Chargebee, Stripe
from alerthooks.testing import stripe_alert_triggered

from .conftest import CB_PASSWORD, CB_USER, STRIPE_SECRET, free_port, post_stripe
from .stores import BACKENDS, store_url


def make_hooks(url: str = "memory://", **options: Any) -> AlertHooks:
    return AlertHooks(
        providers=[Stripe(STRIPE_SECRET), Chargebee((CB_USER, CB_PASSWORD))], store=url, **options
    )


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text ``text``, or None when it is absent."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        found = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if found is None or found.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', found.group(2) or ""))
        if got == labels:
            return float(found.group(3))
    return None


@pytest.fixture(params=BACKENDS)
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with store_url(request.param, tmp_path) as found:
        yield found


async def scrape(app: Any) -> httpx.Response:
    async with client_for(app) as client:
        return await client.get("/")


async def test_deliveries_and_handler_runs_are_counted_and_served() -> None:
    hooks = make_hooks()
    app = hooks.metrics_app()
    observers = hooks.observers
    with observers.delivery("stripe") as seen:
        seen.event("evt_1", "billing.alert.triggered")
        seen.answered(200, b'{"status":"accepted"}')
    with observers.delivery("stripe") as seen:
        seen.answered(401, b'{"error":"bad signature"}')
    with pytest.raises(RuntimeError), observers.delivery("chargebee"):
        raise RuntimeError("the pipeline broke")  # counted as a 500

    @hooks.on("alert.triggered", name="ok")
    async def ok(event: AlertEvent) -> None:
        pass

    @hooks.on("alert.triggered", name="broken")
    async def broken(event: AlertEvent) -> None:
        raise ValueError("no")

    event = hooks.stripe.normalize(stripe_alert_triggered())
    for handler in hooks.dispatcher.handlers:
        await run_handler(observers, handler, event, queued=False)
    await run_handler(observers, hooks.dispatcher.handlers[0], event, queued=True)

    response = await scrape(app)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    text = response.text
    deliveries = "alerthooks_deliveries_total"
    assert sample(text, deliveries, provider="stripe", status="200", outcome="accepted") == 1
    assert sample(text, deliveries, provider="stripe", status="401", outcome="rejected") == 1
    assert sample(text, deliveries, provider="chargebee", status="500", outcome="failed") == 1
    assert sample(text, "alerthooks_handler_runs_total", handler="ok", outcome="done") == 2
    assert sample(text, "alerthooks_handler_runs_total", handler="broken", outcome="failed") == 1
    assert sample(text, "alerthooks_delivery_seconds_count", provider="stripe") == 2
    assert sample(text, "alerthooks_delivery_seconds_bucket", provider="stripe", le="+Inf") == 2
    assert sample(text, "alerthooks_queue_due") is None  # inline: nothing runs what it counts
    assert sample(text, "alerthooks_dead_handlers") == 0


async def test_metrics_app_twice_shares_one_set_of_metrics() -> None:
    hooks = make_hooks()
    first, second = hooks.metrics_app(), hooks.metrics_app()
    assert first.metrics is second.metrics
    assert [type(o) for o in hooks.observers] == [Metrics]


async def test_queue_gauges_count_due_and_dead_handler_runs_in_the_store(url: str) -> None:
    hooks = make_hooks(url, mode="queued", worker=False, max_attempts=1)

    @hooks.on("alert.triggered", name="a")
    async def a(event: AlertEvent) -> None:
        raise ConnectionError("down")

    @hooks.on("alert.triggered", name="b")
    async def b(event: AlertEvent) -> None:
        pass

    app = hooks.metrics_app()
    async with client_for(hooks) as client:
        for _ in range(3):
            assert (await post_stripe(client, stripe_alert_triggered())).status_code == 200
    text = (await scrape(app)).text
    assert sample(text, "alerthooks_queue_due") == 6  # 3 events x 2 handlers, all pending
    assert sample(text, "alerthooks_dead_handlers") == 0
    await hooks.drain()
    text = (await scrape(app)).text
    assert sample(text, "alerthooks_queue_due") == 0
    assert sample(text, "alerthooks_dead_handlers") == 3
    await hooks.shutdown()


async def test_a_failed_handler_waiting_for_its_retry_is_not_due_yet(url: str) -> None:
    hooks = make_hooks(url, mode="queued", worker=False, retry_backoff=3600)

    @hooks.on("alert.triggered", name="a")
    async def a(event: AlertEvent) -> None:
        raise ConnectionError("down")

    app = hooks.metrics_app()
    async with client_for(hooks) as client:
        await post_stripe(client, stripe_alert_triggered())
    assert sample((await scrape(app)).text, "alerthooks_queue_due") == 1
    await hooks.drain()
    assert sample((await scrape(app)).text, "alerthooks_queue_due") == 0
    await hooks.shutdown()


async def test_a_store_that_does_not_answer_leaves_the_gauges_and_still_serves() -> None:
    hooks = make_hooks(
        f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere", mode="queued", worker=False
    )
    response = await scrape(hooks.metrics_app())
    assert response.status_code == 200
    assert sample(response.text, "alerthooks_queue_due") == 0


async def test_only_get_and_head_are_served() -> None:
    app = make_hooks().metrics_app()
    async with client_for(app) as client:
        refused = await client.post("/")
        assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
        head = await client.head("/metrics")
        assert head.status_code == 200 and head.content == b""


_COUNT_ONE = textwrap.dedent(
    """
    from alerthooks import AlertHooks
    hooks = AlertHooks(store="memory://")
    hooks.metrics_app()
    with hooks.observers.delivery("stripe") as seen:
        seen.answered(200, b'{"status":"accepted"}')
    """
)

_SERVE = textwrap.dedent(
    """
    import sys
    from alerthooks import AlertHooks
    from alerthooks.metrics import Metrics
    hooks = AlertHooks(store="memory://")
    hooks.metrics_app()
    sys.stdout.write(hooks.observers.find(Metrics).exposition().decode())
    """
)


def test_multiprocess_mode_serves_the_sum_over_processes(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(3):  # three worker processes, each answering one delivery
        subprocess.run([sys.executable, "-c", _COUNT_ONE], env=env, check=True, timeout=60)
    served = subprocess.run(
        [sys.executable, "-c", _SERVE], env=env, check=True, timeout=60, capture_output=True
    ).stdout.decode()
    accepted = {"provider": "stripe", "status": "200", "outcome": "accepted"}
    assert sample(served, "alerthooks_deliveries_total", **accepted) == 3
    assert sample(served, "alerthooks_delivery_seconds_count", provider="stripe") == 3


async def test_the_gauges_follow_a_replaced_store() -> None:
    hooks = make_hooks(mode="queued", worker=False)

    @hooks.on("alert.triggered", name="a")
    async def a(event: AlertEvent) -> None:
        pass

    app = hooks.metrics_app()
    async with client_for(hooks) as client:
        await post_stripe(client, stripe_alert_triggered())
    assert sample((await scrape(app)).text, "alerthooks_queue_due") == 1
    from alerthooks.store.memory import MemoryStore

    hooks.store = MemoryStore()
    assert sample((await scrape(app)).text, "alerthooks_queue_due") == 0


async def test_deliveries_through_the_receiver_are_counted_with_their_answer_codes() -> None:
    hooks = make_hooks()

    @hooks.on("alert.triggered", name="notify")
    async def notify(event: AlertEvent) -> None:
        pass

    app = hooks.metrics_app()
    payload = stripe_alert_triggered()
    async with client_for(hooks) as client:
        assert (await post_stripe(client, payload)).status_code == 200
        assert (await post_stripe(client, payload)).json() == {"status": "duplicate"}
        assert (await post_stripe(client, payload, secret="whsec_wrong")).status_code == 400
        assert (await client.get("/stripe")).status_code == 405
        assert (await client.post("/nowhere", content=b"{}")).status_code == 404
    text = (await scrape(app)).text
    deliveries = "alerthooks_deliveries_total"
    assert sample(text, deliveries, provider="stripe", status="200", outcome="accepted") == 1
    assert sample(text, deliveries, provider="stripe", status="200", outcome="duplicate") == 1
    assert sample(text, deliveries, provider="stripe", status="400", outcome="rejected") == 1
    assert sample(text, deliveries, provider="stripe", status="405", outcome="rejected") == 1
    assert "nowhere" not in text  # no provider, not a delivery
    assert sample(text, "alerthooks_handler_runs_total", handler="notify", outcome="done") == 1
    assert sample(text, "alerthooks_delivery_seconds_count", provider="stripe") == 4


async def test_queued_handler_runs_are_counted_by_the_worker() -> None:
    hooks = make_hooks(mode="queued", worker=False, max_attempts=1)

    @hooks.on("alert.triggered", name="broken")
    async def broken(event: AlertEvent) -> None:
        raise ConnectionError("down")

    app = hooks.metrics_app()
    async with client_for(hooks) as client:
        await post_stripe(client, stripe_alert_triggered())
    await hooks.drain()
    text = (await scrape(app)).text
    assert sample(text, "alerthooks_handler_runs_total", handler="broken", outcome="failed") == 1
    assert sample(text, "alerthooks_dead_handlers") == 1


async def test_every_outcome_is_its_own_label_and_inline_has_no_queue_gauge() -> None:
    hooks = make_hooks()
    failing = {"on": True}

    @hooks.on("alert.triggered", name="flaky")
    async def flaky(event: AlertEvent) -> None:
        if failing["on"]:
            raise ConnectionError("down")

    app = hooks.metrics_app()
    payload = stripe_alert_triggered()
    async with client_for(hooks) as client:
        assert (await post_stripe(client, payload)).status_code == 500
        failing["on"] = False
        assert (await post_stripe(client, payload)).json() == {"status": "accepted"}
        assert (await post_stripe(client, payload)).json() == {"status": "duplicate"}
        unread = {**stripe_alert_triggered(), "type": "customer.created"}
        assert (await post_stripe(client, unread)).json() == {"status": "ignored"}
    text = (await scrape(app)).text
    counted = {
        outcome: sample(
            text,
            "alerthooks_deliveries_total",
            provider="stripe",
            status="500" if outcome == "failed" else "200",
            outcome=outcome,
        )
        for outcome in ("failed", "accepted", "duplicate", "ignored")
    }
    assert counted == {"failed": 1, "accepted": 1, "duplicate": 1, "ignored": 1}
    assert "alerthooks_queue_due" not in text
    assert sample(text, "alerthooks_dead_handlers") == 0
