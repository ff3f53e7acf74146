"""alerthooks.testing's clients: finding the hooks in an app, signing, lifespan, sync twin."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Mount, Router

from alerthooks import AlertEvent, AlertHooks
from alerthooks.testing import (
    AlertHooksClient,
    SyncAlertHooksClient,
    chargebee_alert_status_changed,
    find_hooks,
    stripe_alert_triggered,
)

from .conftest import CB_PASSWORD, CB_USER, STRIPE_SECRET


@pytest.fixture
def seen(hooks: AlertHooks) -> list[AlertEvent]:
    events: list[AlertEvent] = []

    @hooks.on("*")
    def record(event: AlertEvent) -> None:
        events.append(event)

    return events


async def test_send_stripe_signs_with_the_hooks_secret(
    hooks: AlertHooks, seen: list[AlertEvent]
) -> None:
    payload = stripe_alert_triggered()
    async with AlertHooksClient(hooks) as client:
        response = await client.send_stripe(payload)
    assert response.status_code == 200, response.text
    assert [e.id for e in seen] == [payload["id"]]


async def test_send_chargebee_authenticates_with_the_hooks_credentials(
    hooks: AlertHooks, seen: list[AlertEvent]
) -> None:
    payload = chargebee_alert_status_changed("within_limit")
    async with AlertHooksClient(hooks) as client:
        response = await client.send_chargebee(payload)
    assert response.status_code == 200, response.text
    assert [(e.id, e.type) for e in seen] == [(payload["id"], "alert.cleared")]


async def test_signs_with_the_first_of_rotated_secrets() -> None:
    hooks = AlertHooks(stripe_secret=["whsec_new", "whsec_old"], store="memory://")
    async with AlertHooksClient(hooks) as client:
        assert (await client.send_stripe(stripe_alert_triggered())).status_code == 200


async def test_finds_hooks_mounted_in_starlette_and_runs_the_host_lifespan(
    hooks: AlertHooks, seen: list[AlertEvent]
) -> None:
    phases: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        phases.append("startup")
        async with hooks.lifespan():
            yield
        phases.append("shutdown")

    app = Starlette(routes=[Mount("/webhooks", app=hooks)], lifespan=lifespan)
    async with AlertHooksClient(app) as client:
        assert client.prefix == "/webhooks"
        assert phases == ["startup"]
        assert (await client.send_stripe(stripe_alert_triggered())).status_code == 200
        assert (await client.send_chargebee(chargebee_alert_status_changed())).status_code == 200
    assert phases == ["startup", "shutdown"]
    assert len(seen) == 2


async def test_finds_hooks_mounted_in_fastapi(hooks: AlertHooks, seen: list[AlertEvent]) -> None:
    app = FastAPI(lifespan=hooks.lifespan)
    app.mount("/hooks/v1", hooks)
    async with AlertHooksClient(app) as client:
        assert client.prefix == "/hooks/v1"
        assert (await client.send_stripe(stripe_alert_triggered())).status_code == 200
    assert len(seen) == 1


def test_finds_hooks_in_nested_mounts_behind_middleware(hooks: AlertHooks) -> None:
    inner = Router(routes=[Mount("/hooks", app=GZipMiddleware(hooks))])
    app = Starlette(routes=[Mount("/api", app=inner)], middleware=[Middleware(GZipMiddleware)])
    assert find_hooks(app) == (hooks, "/api/hooks")


def test_an_app_without_hooks_is_a_lookup_error() -> None:
    with pytest.raises(LookupError, match="no AlertHooks is mounted"):
        AlertHooksClient(Starlette(routes=[]))


def test_two_hooks_in_one_app_need_hooks_to_choose(hooks: AlertHooks) -> None:
    other = AlertHooks(store="memory://")
    app = Starlette(routes=[Mount("/a", app=hooks), Mount("/b", app=other)])
    with pytest.raises(LookupError, match="several AlertHooks are mounted"):
        find_hooks(app)
    assert AlertHooksClient(app, hooks=other).prefix == "/b"


def test_hooks_not_mounted_in_the_app_need_a_prefix(hooks: AlertHooks) -> None:
    app = Starlette(routes=[Mount("/x", app=AlertHooks(store="memory://"))])
    with pytest.raises(LookupError, match="pass prefix="):
        AlertHooksClient(app, hooks=hooks)


async def test_explicit_hooks_and_prefix_reach_a_plain_asgi_app(
    hooks: AlertHooks, seen: list[AlertEvent]
) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        # A hand-written host: strips its own prefix and knows no lifespan.
        if scope["type"] != "http":
            raise RuntimeError("no lifespan here")
        await hooks(
            {**scope, "path": scope["path"].removeprefix("/in"), "root_path": ""}, receive, send
        )

    async with AlertHooksClient(app, hooks=hooks, prefix="/in/") as client:
        assert (await client.send_stripe(stripe_alert_triggered())).status_code == 200
    assert len(seen) == 1


async def test_wrong_credentials_given_to_the_client_are_rejected(hooks: AlertHooks) -> None:
    async with AlertHooksClient(hooks) as client:
        stripe = await client.send_stripe(stripe_alert_triggered(), secret="whsec_wrong")
        chargebee = await client.send_chargebee(
            chargebee_alert_status_changed(), auth=(CB_USER, "wrong")
        )
        stale = await client.send_stripe(stripe_alert_triggered(), timestamp=1)
    assert (stripe.status_code, stripe.json()) == (400, {"error": "signature mismatch"})
    assert chargebee.status_code == 401
    assert (stale.status_code, stale.json()) == (400, {"error": "timestamp outside tolerance"})


async def test_unconfigured_provider_gets_an_unsigned_delivery_and_answers_503() -> None:
    hooks = AlertHooks(stripe_secret=[], chargebee_auth=[], store="memory://")
    async with AlertHooksClient(hooks) as client:
        assert (await client.send_stripe(stripe_alert_triggered())).status_code == 503
        assert (await client.send_chargebee(chargebee_alert_status_changed())).status_code == 503


async def test_str_and_bytes_payloads_are_sent_as_they_are(hooks: AlertHooks) -> None:
    async with AlertHooksClient(hooks) as client:
        as_text = await client.send_stripe('{"id": "evt_x", "type": "customer.created"}')
        as_bytes = await client.send_chargebee(b"not json")
    assert as_text.json() == {"status": "ignored"}
    assert (as_bytes.status_code, as_bytes.json()) == (400, {"error": "invalid JSON"})


async def test_a_failing_startup_is_raised_from_async_with(hooks: AlertHooks) -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        raise ConnectionError("database is down")
        yield

    app = Starlette(routes=[Mount("/webhooks", app=hooks)], lifespan=lifespan)
    client = AlertHooksClient(app)
    with pytest.raises(ConnectionError, match="database is down"):
        await client.__aenter__()
    assert client.is_closed


def test_sync_client_sends_both_providers_inside_the_app(
    hooks: AlertHooks, seen: list[AlertEvent]
) -> None:
    app = Starlette(routes=[Mount("/webhooks", app=hooks)], lifespan=hooks.lifespan)
    stripe, chargebee = stripe_alert_triggered(), chargebee_alert_status_changed()
    with SyncAlertHooksClient(app) as client:
        assert client.send_stripe(stripe).status_code == 200
        assert client.send_chargebee(chargebee).status_code == 200
        assert client.send_stripe(stripe).json() == {"status": "duplicate"}
        assert client.send_chargebee(chargebee, auth=("x", "y")).status_code == 401
        assert client.send_stripe(stripe, secret=STRIPE_SECRET + "x").status_code == 400
    assert [e.id for e in seen] == [stripe["id"], chargebee["id"]]


def test_sync_client_opens_on_first_use_and_closes_on_close(
    hooks: AlertHooks, seen: list[AlertEvent]
) -> None:
    client = SyncAlertHooksClient(hooks, prefix="")
    try:
        assert client.get("/stripe").status_code == 405
        assert client.send_chargebee(chargebee_alert_status_changed()).status_code == 200
        client.drain()  # inline mode: nothing to wait for
    finally:
        client.close()
    client.close()
    assert len(seen) == 1


def queued_hooks(**options: Any) -> AlertHooks:
    return AlertHooks(
        stripe_secret=STRIPE_SECRET,
        chargebee_auth=(CB_USER, CB_PASSWORD),
        store="memory://",
        mode="queued",
        **options,
    )


async def test_queued_send_returns_once_the_worker_ran_the_handlers() -> None:
    hooks = queued_hooks()
    seen: list[AlertEvent] = []

    @hooks.on("*")
    async def slow(event: AlertEvent) -> None:
        await asyncio.sleep(0.05)
        seen.append(event)

    app = Starlette(routes=[Mount("/webhooks", app=hooks)], lifespan=hooks.lifespan)
    stripe, chargebee = stripe_alert_triggered(), chargebee_alert_status_changed("within_limit")
    async with AlertHooksClient(app) as client:
        assert (await client.send_stripe(stripe)).status_code == 200
        assert [e.id for e in seen] == [stripe["id"]]
        assert (await client.send_chargebee(chargebee)).status_code == 200
        assert [e.id for e in seen] == [stripe["id"], chargebee["id"]]


async def test_without_auto_drain_work_waits_for_an_explicit_drain() -> None:
    hooks = queued_hooks(worker=False)  # no background worker: only drain() runs handlers
    seen: list[AlertEvent] = []
    hooks.on("alert.triggered")(seen.append)
    payload = stripe_alert_triggered()
    async with AlertHooksClient(hooks, drain=False) as client:
        assert (await client.send_stripe(payload)).status_code == 200
        assert seen == []
        await client.drain()
        assert [e.id for e in seen] == [payload["id"]]


async def test_drain_times_out_while_a_handler_is_still_running() -> None:
    hooks = queued_hooks(worker=False)
    release = asyncio.Event()

    @hooks.on("alert.triggered")
    async def stuck(event: AlertEvent) -> None:
        await release.wait()

    async with AlertHooksClient(hooks, drain_timeout=0.1) as client:
        with pytest.raises(TimeoutError):
            await client.send_stripe(stripe_alert_triggered())
        release.set()
        await client.drain()


def test_sync_client_drains_queued_work_on_its_own_loop() -> None:
    hooks = queued_hooks()
    seen: list[AlertEvent] = []
    hooks.on("alert.triggered")(seen.append)
    payload = chargebee_alert_status_changed()
    with SyncAlertHooksClient(hooks) as client:
        assert client.send_chargebee(payload).status_code == 200
        assert [e.id for e in seen] == [payload["id"]]
