"""alerthooks.testing's clients: finding the hooks in an app, signing, lifespan, sync twin, and
``deliver`` to any provider (one defined in this file alone)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timezone
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Mount, Router

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import Chargebee, NotAnAlert, Provider, Rejected, Stripe, build_event
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
    hooks = AlertHooks(providers=[Stripe(["whsec_new", "whsec_old"])], store="memory://")
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
    hooks = AlertHooks(providers=[Stripe([]), Chargebee([])], store="memory://")
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
        providers=[Stripe(STRIPE_SECRET), Chargebee((CB_USER, CB_PASSWORD))],
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


class Toy(Provider):
    """A provider that exists only in this file: its own HMAC header, its own payload shape."""

    name = "toy"
    env_hint = "TOY_SECRET"
    alert_types = frozenset({"usage.alert"})

    def __init__(self, secret: str | None = "toy-secret") -> None:
        self.secret = secret

    @property
    def configured(self) -> bool:
        return self.secret is not None

    def _mac(self, body: bytes) -> str:
        assert self.secret is not None
        return hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        if not hmac.compare_digest(headers.get("x-toy-signature", ""), self._mac(body)):
            raise Rejected(401, "bad toy signature")

    def normalize(self, payload: dict[str, Any]) -> AlertEvent:
        if payload.get("type") != "usage.alert":
            raise NotAnAlert("not a usage alert")
        return build_event(
            id=payload["id"],
            provider=self.name,
            type="alert.triggered",
            alert_id=payload["alert"],
            occurred_at=datetime.fromtimestamp(payload["at"], timezone.utc),
            raw=payload,
        )

    def sign(self, body: bytes) -> dict[str, str]:
        if self.secret is None:
            raise ValueError("no toy secret: set TOY_SECRET")
        return {"X-Toy-Signature": self._mac(body)}


def toy_alert(event_id: str = "toy_1") -> dict[str, Any]:
    return {"id": event_id, "type": "usage.alert", "alert": "calls", "at": 1_700_000_000}


async def test_deliver_signs_with_any_providers_own_sign_and_posts_to_its_route() -> None:
    hooks = AlertHooks(providers=[Toy()], store="memory://")
    seen: list[AlertEvent] = []
    hooks.on("alert.triggered", provider="toy")(seen.append)
    app = Starlette(routes=[Mount("/hooks", app=hooks)], lifespan=hooks.lifespan)
    async with AlertHooksClient(app) as client:
        first = await client.deliver("toy", toy_alert())
        again = await client.deliver("toy", json.dumps(toy_alert()))
        other = await client.deliver("toy", b'{"id": "toy_2", "type": "hello"}')
    assert (first.status_code, first.json()) == (200, {"status": "accepted"}), first.text
    assert again.json() == {"status": "duplicate"}
    assert other.json() == {"status": "ignored"}
    assert [(e.provider, e.id, e.alert_id) for e in seen] == [("toy", "toy_1", "calls")]


async def test_deliver_headers_replace_the_signed_ones() -> None:
    hooks = AlertHooks(providers=[Toy()], store="memory://")
    seen: list[AlertEvent] = []
    hooks.on("*")(seen.append)
    async with AlertHooksClient(hooks) as client:
        forged = await client.deliver("toy", toy_alert(), headers={"x-toy-signature": "0" * 64})
        marked = await client.deliver("toy", toy_alert("toy_3"), headers={"x-extra": "1"})
    assert (forged.status_code, forged.json()) == (401, {"error": "bad toy signature"})
    assert marked.status_code == 200
    assert [e.id for e in seen] == ["toy_3"]


async def test_deliver_to_a_provider_without_credentials_goes_unsigned_and_is_refused() -> None:
    hooks = AlertHooks(providers=[Toy(secret=None)], store="memory://")
    async with AlertHooksClient(hooks) as client:
        assert (await client.deliver("toy", toy_alert())).status_code == 503


async def test_deliver_to_an_unknown_provider_names_the_known_ones() -> None:
    hooks = AlertHooks(providers=[Toy(), Stripe(secrets="whsec_x")], store="memory://")
    async with AlertHooksClient(hooks) as client:
        with pytest.raises(
            LookupError, match=r"^no provider 'nope' in these hooks; they have: stripe, toy$"
        ):
            await client.deliver("nope", toy_alert())
    only_toy = AlertHooks(providers=[Toy()], store="memory://")
    with SyncAlertHooksClient(only_toy) as sync, pytest.raises(LookupError, match=r"have: toy$"):
        sync.send_stripe(stripe_alert_triggered())


async def test_deliver_reaches_the_builtin_providers_as_send_does(
    hooks: AlertHooks, seen: list[AlertEvent]
) -> None:
    stripe, chargebee = stripe_alert_triggered(), chargebee_alert_status_changed()
    async with AlertHooksClient(hooks) as client:
        assert (await client.deliver("stripe", stripe)).status_code == 200
        assert (await client.deliver("chargebee", chargebee)).status_code == 200
        assert (await client.send_stripe(stripe)).json() == {"status": "duplicate"}
    assert [e.id for e in seen] == [stripe["id"], chargebee["id"]]


async def test_send_stripe_headers_replace_the_signature_whatever_their_case(
    hooks: AlertHooks, seen: list[AlertEvent]
) -> None:
    payload = stripe_alert_triggered()
    async with AlertHooksClient(hooks) as client:
        forged = await client.send_stripe(payload, headers={"Stripe-Signature": "t=1,v1=00"})
        wrong_auth = await client.send_chargebee(
            chargebee_alert_status_changed(), headers={"Authorization": "Basic eDp5"}
        )
    assert (forged.status_code, forged.json()) == (400, {"error": "signature mismatch"})
    assert forged.request.headers.get_list("stripe-signature") == ["t=1,v1=00"]
    assert wrong_auth.status_code == 401
    assert seen == []


def test_sync_deliver_drains_queued_work_for_any_provider() -> None:
    hooks = AlertHooks(providers=[Toy()], store="memory://", mode="queued")
    seen: list[AlertEvent] = []

    @hooks.on("alert.triggered")
    async def slow(event: AlertEvent) -> None:
        await asyncio.sleep(0.05)
        seen.append(event)

    with SyncAlertHooksClient(hooks) as client:
        assert client.deliver("toy", toy_alert()).status_code == 200
        assert [e.id for e in seen] == ["toy_1"]
