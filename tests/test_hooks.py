"""The receiver through its ASGI interface: answers, dedup, handler failures, mounting."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import Message

from alerthooks import AlertEvent, AlertHooks, Dispatcher
from alerthooks.providers import BUILTIN, Chargebee, Stripe
from alerthooks.store import open_store
from alerthooks.store.memory import MemoryStore
from alerthooks.testing import (
    AlertHooksClient,
    chargebee_alert_status_changed,
    chargebee_auth_headers,
    chargebee_subscription_created,
    load_sample,
    stripe_alert_triggered,
    stripe_customer_created,
    stripe_signature_header,
)

from .conftest import CB_PASSWORD, CB_USER, STRIPE_SECRET, post_chargebee, post_stripe
from .helpers import Sent, free_port, http_scope, logged, make_hooks, one_body, wait_until_sync


@pytest.fixture
def seen(hooks: AlertHooks) -> list[AlertEvent]:
    events: list[AlertEvent] = []

    @hooks.on("*")
    async def record(event: AlertEvent) -> None:
        events.append(event)

    return events


async def test_stripe_alert_reaches_handler(
    client: httpx.AsyncClient, seen: list[AlertEvent]
) -> None:
    payload = stripe_alert_triggered()
    response = await post_stripe(client, payload)
    assert response.status_code == 200
    assert response.json() == {"status": "accepted"}
    assert [e.id for e in seen] == [payload["id"]]
    assert seen[0].type == "alert.triggered"
    assert seen[0].raw == payload


async def test_expanded_meter_fixture_reaches_handler(
    client: httpx.AsyncClient, seen: list[AlertEvent]
) -> None:
    payload = load_sample("stripe_alert_triggered_expanded_meter")
    payload["created"] = int(time.time())
    assert (await post_stripe(client, payload)).status_code == 200
    assert seen[0].meter_id == "mtr_test_61RbXnWq3yvPFjRKj41LkdIwHu7ixT0a"


@pytest.mark.parametrize(
    ("alarm", "event_type"), [("in_alarm", "alert.triggered"), ("within_limit", "alert.cleared")]
)
async def test_chargebee_alert_reaches_handler(
    client: httpx.AsyncClient, seen: list[AlertEvent], alarm: Any, event_type: str
) -> None:
    payload = chargebee_alert_status_changed(alarm)
    response = await post_chargebee(client, payload)
    assert response.status_code == 200
    assert [(e.id, e.type) for e in seen] == [(payload["id"], event_type)]


async def test_redelivery_after_success_is_200_and_runs_no_handler(
    client: httpx.AsyncClient, seen: list[AlertEvent]
) -> None:
    payload = stripe_alert_triggered()
    assert (await post_stripe(client, payload)).status_code == 200
    again = await post_stripe(client, payload)
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate"}
    assert len(seen) == 1


async def test_same_id_from_two_providers_is_two_events(
    client: httpx.AsyncClient, seen: list[AlertEvent]
) -> None:
    await post_stripe(client, stripe_alert_triggered(id="shared_id"))
    await post_chargebee(client, chargebee_alert_status_changed(id="shared_id"))
    assert len(seen) == 2


async def test_concurrent_duplicates_run_handlers_once(
    hooks: AlertHooks, client: httpx.AsyncClient
) -> None:
    calls = 0

    @hooks.on("alert.triggered")
    async def slow(event: AlertEvent) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)

    payload = stripe_alert_triggered()
    responses = await asyncio.gather(*(post_stripe(client, payload) for _ in range(10)))
    assert [r.status_code for r in responses] == [200] * 10
    assert calls == 1


@pytest.mark.parametrize(
    "payload", [stripe_customer_created(), chargebee_subscription_created()], ids=["stripe", "cb"]
)
async def test_verified_non_alert_is_acknowledged_and_not_dispatched(
    client: httpx.AsyncClient, seen: list[AlertEvent], payload: dict[str, Any]
) -> None:
    if "event_type" in payload:
        response = await post_chargebee(client, payload)
    else:
        response = await post_stripe(client, payload)
    assert response.status_code == 200
    assert response.json() == {"status": "ignored"}
    assert seen == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p.pop("content"),
        lambda p: p.update(content=None),
        lambda p: p.update(content=[1, 2]),
        lambda p: p["content"].update(alert="oops"),
        lambda p: p["content"]["alert_status"].update(alarm_status=None),
    ],
)
async def test_chargebee_missing_or_unexpected_content_is_acknowledged(
    client: httpx.AsyncClient, seen: list[AlertEvent], mutate: Any
) -> None:
    payload = chargebee_alert_status_changed()
    mutate(payload)
    response = await post_chargebee(client, payload)
    assert response.status_code == 200
    assert seen == []


# -- rejections ---------------------------------------------------------------------------------


async def test_stripe_bad_signature_is_400(
    client: httpx.AsyncClient, seen: list[AlertEvent]
) -> None:
    response = await post_stripe(client, stripe_alert_triggered(), secret="whsec_wrong")
    assert response.status_code == 400
    assert response.json() == {"error": "signature mismatch"}
    assert seen == []


async def test_stripe_missing_signature_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/stripe", content=json.dumps(stripe_alert_triggered()))
    assert response.status_code == 400
    assert response.json() == {"error": "missing Stripe-Signature header"}


async def test_stripe_stale_signature_is_400(
    client: httpx.AsyncClient, seen: list[AlertEvent]
) -> None:
    response = await post_stripe(
        client, stripe_alert_triggered(), timestamp=int(time.time()) - 3600
    )
    assert response.status_code == 400
    assert response.json() == {"error": "timestamp outside tolerance"}
    assert seen == []


async def test_stripe_rotated_secrets_both_accepted(seen: list[AlertEvent]) -> None:
    hooks = AlertHooks(providers=[Stripe(["whsec_old", "whsec_new"])], store="memory://")

    @hooks.on("*")
    async def record(event: AlertEvent) -> None:
        seen.append(event)

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=hooks), base_url="http://t"
    ) as c:
        assert (
            await post_stripe(c, stripe_alert_triggered(), secret="whsec_old")
        ).status_code == 200
        assert (
            await post_stripe(c, stripe_alert_triggered(), secret="whsec_new")
        ).status_code == 200
    assert len(seen) == 2


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xef\xbb\xbf{", b"[" * 100_000])
async def test_signed_invalid_json_is_400(client: httpx.AsyncClient, body: bytes) -> None:
    response = await post_stripe(client, body)
    assert response.status_code == 400
    assert response.json() == {"error": "invalid JSON"}


@pytest.mark.parametrize("body", [b"[]", b"42", b'"evt"', b"null"])
async def test_signed_json_that_is_not_an_object_is_400(
    client: httpx.AsyncClient, body: bytes
) -> None:
    assert (await post_stripe(client, body)).status_code == 400


async def test_chargebee_invalid_json_is_400(client: httpx.AsyncClient) -> None:
    assert (await post_chargebee(client, b"{oops")).status_code == 400


async def test_chargebee_wrong_password_is_401(
    client: httpx.AsyncClient, seen: list[AlertEvent]
) -> None:
    response = await post_chargebee(
        client, chargebee_alert_status_changed(), auth=(CB_USER, "nope")
    )
    assert response.status_code == 401
    assert seen == []


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer x"}, {"Authorization": "Basic %%%"}],
    ids=["none", "bearer", "garbled"],
)
async def test_chargebee_missing_or_malformed_auth_is_401(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    body = json.dumps(chargebee_alert_status_changed())
    assert (await client.post("/chargebee", content=body, headers=headers)).status_code == 401


async def test_auth_is_checked_before_the_body_is_parsed(client: httpx.AsyncClient) -> None:
    response = await client.post("/chargebee", content=b"{oops")
    assert response.status_code == 401


async def test_body_over_limit_by_content_length_is_413() -> None:
    hooks = AlertHooks(providers=[Stripe(STRIPE_SECRET)], store="memory://", max_body_bytes=1000)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=hooks), base_url="http://t"
    ) as c:
        response = await post_stripe(c, {"id": "evt_1", "pad": "x" * 2000})
    assert response.status_code == 413


async def test_streamed_body_over_limit_is_413_without_reading_the_rest() -> None:
    hooks = AlertHooks(providers=[Stripe(STRIPE_SECRET)], store="memory://", max_body_bytes=1000)
    sent = 0
    messages = [{"type": "http.request", "body": b"x" * 600, "more_body": True}] * 10
    responses: list[Message] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        sent += 1
        return messages[sent - 1]

    async def send(message: Message) -> None:
        responses.append(message)

    scope = {"type": "http", "method": "POST", "path": "/stripe", "headers": [], "root_path": ""}
    await hooks(scope, receive, send)
    assert responses[0]["status"] == 413
    assert sent == 2


async def test_invalid_content_length_is_400(hooks: AlertHooks) -> None:
    responses: list[Message] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Message) -> None:
        responses.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/stripe",
        "headers": [(b"content-length", b"-5")],
    }
    await hooks(scope, receive, send)
    assert responses[0]["status"] == 400


async def test_stalled_body_times_out_with_408() -> None:
    hooks = AlertHooks(providers=[Stripe(STRIPE_SECRET)], store="memory://", body_timeout=0.1)
    responses: list[Message] = []
    first = True

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"{", "more_body": True}
        await asyncio.sleep(10)
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        responses.append(message)

    scope = {"type": "http", "method": "POST", "path": "/stripe", "headers": []}
    await asyncio.wait_for(hooks(scope, receive, send), 2)
    assert responses[0]["status"] == 408


@pytest.mark.parametrize("path", ["/", "/paypal", "/stripe/extra", "/stripes"])
async def test_unknown_path_is_404(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.post(path, content=b"{}")).status_code == 404


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_wrong_method_is_405_with_allow(client: httpx.AsyncClient, method: str) -> None:
    response = await client.request(method, "/stripe")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_trailing_slash_is_accepted(
    client: httpx.AsyncClient, seen: list[AlertEvent]
) -> None:
    payload = stripe_alert_triggered()
    response = await post_stripe(client, payload, path="/stripe/")
    assert response.status_code == 200
    assert response.json() == {"status": "accepted"}
    assert [event.id for event in seen] == [payload["id"]]


# -- handler failures ---------------------------------------------------------------------------


async def test_handler_failure_is_5xx_and_retry_runs_only_the_failed_handler(
    hooks: AlertHooks, client: httpx.AsyncClient
) -> None:
    ran: list[str] = []
    failures = 1

    @hooks.on("alert.triggered")
    async def steady(event: AlertEvent) -> None:
        ran.append("steady")

    @hooks.on("alert.triggered")
    def flaky(event: AlertEvent) -> None:
        nonlocal failures
        ran.append("flaky")
        if failures:
            failures -= 1
            raise RuntimeError("downstream unavailable")

    payload = stripe_alert_triggered()
    first = await post_stripe(client, payload)
    assert first.status_code == 500
    assert "downstream" not in first.text
    assert sorted(ran) == ["flaky", "steady"]
    second = await post_stripe(client, payload)
    assert second.status_code == 200
    assert sorted(ran) == ["flaky", "flaky", "steady"]
    third = await post_stripe(client, payload)
    assert third.json() == {"status": "duplicate"}
    assert len(ran) == 3
    stored = await hooks.store.get("stripe", payload["id"])
    assert stored is not None
    flaky_outcome = next(o for o in stored.outcomes if o.handler.endswith("flaky"))
    assert (flaky_outcome.status, flaky_outcome.attempts) == ("done", 2)


async def test_one_handler_exception_never_stops_the_others(
    hooks: AlertHooks, client: httpx.AsyncClient
) -> None:
    ran: list[str] = []

    @hooks.on("alert.triggered")
    async def first(event: AlertEvent) -> None:
        raise ValueError("boom")

    @hooks.on("alert.triggered")
    async def second(event: AlertEvent) -> None:
        ran.append("second")

    @hooks.on("alert.triggered")
    def third(event: AlertEvent) -> None:
        ran.append("third")

    assert (await post_stripe(client, stripe_alert_triggered())).status_code == 500
    assert sorted(ran) == ["second", "third"]


async def test_handler_failure_is_logged_with_provider_and_event_id(
    hooks: AlertHooks, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    @hooks.on("alert.triggered")
    async def broken(event: AlertEvent) -> None:
        raise RuntimeError("nope")

    payload = stripe_alert_triggered()
    with caplog.at_level(logging.INFO, logger="alerthooks"):
        await post_stripe(client, payload)
    failure = [r for r in caplog.records if "failed" in r.getMessage()]
    assert failure and payload["id"] in failure[0].getMessage()
    assert "stripe" in failure[0].getMessage()


# -- filters and handler kinds ------------------------------------------------------------------


async def test_filters_select_handlers(hooks: AlertHooks, client: httpx.AsyncClient) -> None:
    hits: list[str] = []

    @hooks.on("alert.triggered", provider="chargebee")
    async def only_chargebee(event: AlertEvent) -> None:
        hits.append("chargebee")

    @hooks.on("alert.triggered", customer_id={"cus_a", "cus_b"})
    async def some_customers(event: AlertEvent) -> None:
        hits.append(f"customer:{event.customer_id}")

    @hooks.on("alert.cleared", subscription_id="sub_9")
    async def cleared_sub(event: AlertEvent) -> None:
        hits.append("cleared:sub_9")

    @hooks.on("alert.triggered", meter_id="mtr_x", alert_id="alrt_1")
    async def meter_and_alert(event: AlertEvent) -> None:
        hits.append("meter+alert")

    await post_stripe(client, stripe_alert_triggered(customer="cus_a"))
    await post_stripe(client, stripe_alert_triggered(customer="cus_z"))
    await post_stripe(client, stripe_alert_triggered(meter="mtr_x", alert_id="alrt_1"))
    await post_stripe(client, stripe_alert_triggered(meter="mtr_x", alert_id="alrt_2"))
    await post_chargebee(client, chargebee_alert_status_changed("in_alarm"))
    await post_chargebee(
        client, chargebee_alert_status_changed("within_limit", subscription_id="sub_9")
    )
    await post_chargebee(
        client, chargebee_alert_status_changed("within_limit", subscription_id="sub_8")
    )
    assert hits == ["customer:cus_a", "meter+alert", "chargebee", "cleared:sub_9"]


async def test_sync_handler_runs_off_the_event_loop(
    hooks: AlertHooks, client: httpx.AsyncClient
) -> None:
    import threading

    threads: list[int] = []

    @hooks.on("alert.triggered")
    def blocking(event: AlertEvent) -> None:
        threads.append(threading.get_ident())

    await post_stripe(client, stripe_alert_triggered())
    assert threads and threads[0] != threading.get_ident()


# -- configuration ------------------------------------------------------------------------------


async def test_credentials_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_a, whsec_b")
    monkeypatch.setenv("CHARGEBEE_WEBHOOK_USERNAME", "envuser")
    monkeypatch.setenv("CHARGEBEE_WEBHOOK_PASSWORD", "envpass")
    hooks = AlertHooks(store="memory://")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=hooks), base_url="http://t"
    ) as c:
        assert (await post_stripe(c, stripe_alert_triggered(), secret="whsec_b")).status_code == 200
        assert (
            await post_chargebee(c, chargebee_alert_status_changed(), auth=("envuser", "envpass"))
        ).status_code == 200
        assert (await post_chargebee(c, chargebee_alert_status_changed())).status_code == 401


async def test_chargebee_auth_accepts_several_pairs() -> None:
    hooks = AlertHooks(providers=[Chargebee([("a", "1"), ("b", "2")])], store="memory://")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=hooks), base_url="http://t"
    ) as c:
        assert (
            await post_chargebee(c, chargebee_alert_status_changed(), auth=("a", "1"))
        ).status_code == 200
        assert (
            await post_chargebee(c, chargebee_alert_status_changed(), auth=("b", "2"))
        ).status_code == 200
        assert (
            await post_chargebee(c, chargebee_alert_status_changed(), auth=("a", "2"))
        ).status_code == 401


async def test_unconfigured_provider_fails_closed_and_logs_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in (
        "STRIPE_WEBHOOK_SECRET",
        "CHARGEBEE_WEBHOOK_USERNAME",
        "CHARGEBEE_WEBHOOK_PASSWORD",
    ):
        monkeypatch.delenv(name, raising=False)
    hooks = AlertHooks(store="memory://")
    handled: list[AlertEvent] = []
    hooks.add_handler(handled.append, "*")
    with caplog.at_level(logging.WARNING, logger="alerthooks"):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=hooks), base_url="http://t"
        ) as c:
            for _ in range(3):
                assert (await post_stripe(c, stripe_alert_triggered())).status_code == 503
                assert (
                    await post_chargebee(c, chargebee_alert_status_changed())
                ).status_code == 503
                assert (await c.post("/chargebee", content=b"{}")).status_code == 503
    warnings = [r.getMessage() for r in caplog.records if "no credentials" in r.getMessage()]
    assert len(warnings) == 2
    assert handled == []


async def test_unauthenticated_chargebee_needs_explicit_opt_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CHARGEBEE_WEBHOOK_USERNAME", raising=False)
    monkeypatch.delenv("CHARGEBEE_WEBHOOK_PASSWORD", raising=False)
    hooks = AlertHooks(
        providers=[Stripe("whsec_x"), Chargebee((), allow_unauthenticated=True)], store="memory://"
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=hooks), base_url="http://t"
    ) as c:
        body = json.dumps(chargebee_alert_status_changed())
        assert (await c.post("/chargebee", content=body)).status_code == 200


def test_repr_hides_secrets() -> None:
    hooks = AlertHooks(
        providers=[Stripe("whsec_supersecret"), Chargebee(("u", "hunter2"))], store="memory://"
    )
    assert "whsec_supersecret" not in repr(hooks)
    assert "hunter2" not in repr(hooks)


async def test_secrets_and_auth_headers_are_never_logged(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, seen: list[AlertEvent]
) -> None:
    payload = stripe_alert_triggered()
    body = json.dumps(payload).encode()
    header = stripe_signature_header(body, STRIPE_SECRET)
    with caplog.at_level(logging.DEBUG):
        await client.post("/stripe", content=body, headers={"Stripe-Signature": header})
        await client.post("/stripe", content=body, headers={"Stripe-Signature": header + "0"})
        await post_chargebee(client, chargebee_alert_status_changed())
        await post_chargebee(client, chargebee_alert_status_changed(), auth=(CB_USER, "wrong-pass"))
    text = caplog.text
    assert caplog.records
    for secret in (STRIPE_SECRET, CB_PASSWORD, "wrong-pass", header.split("v1=")[1], "Basic "):
        assert secret not in text


# -- mounting -----------------------------------------------------------------------------------


async def test_mounted_in_starlette(hooks: AlertHooks, seen: list[AlertEvent]) -> None:
    app = Starlette(routes=[Mount("/webhooks", app=hooks)], lifespan=hooks.lifespan)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (
            await post_stripe(c, stripe_alert_triggered(), path="/webhooks/stripe")
        ).status_code == 200
        assert (
            await post_chargebee(c, chargebee_alert_status_changed(), path="/webhooks/chargebee")
        ).status_code == 200
        assert (await c.post("/webhooks/other")).status_code == 404
        assert (await c.get("/webhooks/stripe")).status_code == 405
    assert len(seen) == 2


async def test_mounted_in_fastapi(hooks: AlertHooks, seen: list[AlertEvent]) -> None:
    app = FastAPI(lifespan=hooks.lifespan)
    app.mount("/hooks", hooks)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (
            await post_stripe(c, stripe_alert_triggered(), path="/hooks/stripe")
        ).status_code == 200
    assert len(seen) == 1


async def test_asgi_lifespan_protocol_opens_and_closes_the_store(hooks: AlertHooks) -> None:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[Message] = []
    await queue.put({"type": "lifespan.startup"})
    await queue.put({"type": "lifespan.shutdown"})

    async def send(message: Message) -> None:
        sent.append(message)

    await hooks({"type": "lifespan"}, queue.get, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


# -- rejections an operator must see ----------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_bad_signatures_are_warned_once_a_minute_with_a_count(
    hooks: AlertHooks, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    clock = _Clock()
    hooks._receiver.rejections.clock = clock
    caplog.set_level(logging.WARNING)  # uvicorn's default: WARNING shows, INFO does not
    for _ in range(3):
        assert (
            await post_stripe(client, stripe_alert_triggered(), secret="whsec_x")
        ).status_code == 400
    assert logged(caplog, "delivery rejected") == [
        "stripe delivery rejected (400): signature mismatch"
    ]
    clock.now += 61
    assert (
        await post_stripe(client, stripe_alert_triggered(), secret="whsec_x")
    ).status_code == 400
    assert logged(caplog, "delivery rejected")[1:] == [
        "stripe delivery rejected (400): signature mismatch (2 more like it in the last 61 s)"
    ]
    # Another reason, or another provider, is not held back by the first.
    stale = int(time.time()) - 3600
    assert (await post_stripe(client, stripe_alert_triggered(), timestamp=stale)).status_code == 400
    assert (
        await post_chargebee(client, chargebee_alert_status_changed(), auth=("x", "y"))
    ).status_code == 401
    assert logged(caplog, "delivery rejected", level=logging.WARNING)[2:] == [
        "stripe delivery rejected (400): timestamp outside tolerance",
        "chargebee delivery rejected (401): credentials do not match",
    ]


async def test_unconfigured_provider_is_warned_again_after_a_minute(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    hooks = make_hooks(stripe="")
    clock = _Clock()
    hooks._receiver.rejections.clock = clock
    caplog.set_level(logging.WARNING)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=hooks), base_url="http://t"
    ) as c:
        for _ in range(3):
            assert (await post_stripe(c, stripe_alert_triggered())).status_code == 503
        clock.now += 60
        assert (await post_stripe(c, stripe_alert_triggered())).status_code == 503
    assert logged(caplog, "no credentials") == [
        "stripe webhooks are refused: no credentials configured (set STRIPE_WEBHOOK_SECRET)",
        "stripe webhooks are refused: no credentials configured (set STRIPE_WEBHOOK_SECRET)"
        " (2 more like it in the last 60 s)",
    ]


# -- answers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"authorization", b"Bearer abc")],
        [(b"authorization", b"Basic !!!")],
        [(b"authorization", chargebee_auth_headers("x", "y")["Authorization"].encode())],
    ],
    ids=["missing", "not-basic", "malformed", "wrong"],
)
async def test_basic_auth_401_carries_a_www_authenticate_challenge(
    hooks: AlertHooks, headers: list[tuple[bytes, bytes]]
) -> None:
    sent = Sent()
    body = json.dumps(chargebee_alert_status_changed()).encode()
    await hooks(http_scope("/chargebee", headers=headers), one_body(body), sent)
    assert sent.status == 401
    assert sent.header(b"www-authenticate") == b'Basic realm="alerthooks"'
    assert json.loads(sent.body)["error"]


async def test_a_signature_400_carries_no_challenge(hooks: AlertHooks) -> None:
    sent = Sent()
    await hooks(http_scope("/stripe"), one_body(b"{}"), sent)
    assert sent.status == 400
    assert sent.header(b"www-authenticate") is None


# -- registration -----------------------------------------------------------------------------


def test_a_filter_naming_an_unknown_provider_is_refused(hooks: AlertHooks) -> None:
    with pytest.raises(
        ValueError,
        match=r"'strip'.*known: chargebee, metronome, orb, stripe",
    ):

        @hooks.on("alert.triggered", provider="strip")
        async def never(event: AlertEvent) -> None: ...

    with pytest.raises(ValueError, match="'strip'"):
        hooks.add_handler(print, "*", provider={"stripe", "strip"})
    assert hooks.dispatcher.handlers == []
    hooks.add_handler(print, "*", provider={"stripe", "chargebee"})  # known names are fine


# -- the facade -------------------------------------------------------------------------------


async def test_replace_store_records_into_the_new_store(tmp_path: Path) -> None:
    hooks = make_hooks("memory://")
    hooks.replace_store(f"sqlite:///{tmp_path / 'other.db'}")
    assert hooks.store.url.endswith("other.db")
    async with AlertHooksClient(hooks) as client:
        payload = stripe_alert_triggered()
        assert (await client.send_stripe(payload)).status_code == 200
    reopened = open_store(f"sqlite:///{tmp_path / 'other.db'}")
    await reopened.open()
    try:
        assert [e.event_id for e in await reopened.events()] == [payload["id"]]
    finally:
        await reopened.close()
    replacement = MemoryStore()
    hooks.replace_store(replacement)
    assert hooks.store is replacement and hooks.worker.runtime.store is replacement


async def test_an_inline_app_logs_no_worker_lines(caplog: pytest.LogCaptureFixture) -> None:
    hooks = make_hooks()
    caplog.set_level(logging.INFO, logger="alerthooks")
    await hooks.startup()
    await hooks.shutdown()
    assert logged(caplog, "worker") == []


def test_a_bad_signature_shows_under_plain_uvicorn(tmp_path: Path) -> None:
    """`uvicorn module:hooks` with uvicorn's default logging: the reason is in its output."""
    port = free_port()
    env = {
        **os.environ,
        "ALERTHOOKS_STORE": f"sqlite:///{tmp_path / 'u.db'}",
        "ALERTHOOKS_TEST_OUT": str(tmp_path / "out"),
        "ALERTHOOKS_TEST_MODE": "inline",
    }
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tests.inbox_app:hooks", "--port", str(port)],
            cwd=Path(__file__).resolve().parent.parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_sync(lambda: "startup complete" in log.read_text(), what="uvicorn")
            body = json.dumps(stripe_alert_triggered()).encode()
            bad = stripe_signature_header(body, "whsec_wrong")
            response = httpx.post(
                f"http://127.0.0.1:{port}/stripe", content=body, headers={"Stripe-Signature": bad}
            )
            assert response.status_code == 400
            wait_until_sync(
                lambda: "stripe delivery rejected (400): signature mismatch" in log.read_text(),
                what="the rejection in uvicorn's output",
            )
        finally:
            server.terminate()
            server.wait(10)


# -- the handler registry: bring your own, composed ---------------------------------------------


async def test_a_dispatcher_of_ones_own_composes_routers_and_routes_the_app() -> None:
    billing, ops = Dispatcher(), Dispatcher()
    seen: list[tuple[str, str]] = []

    @billing.on("alert.triggered", provider="stripe")
    async def bill(event: AlertEvent) -> None:
        seen.append(("bill", event.id))

    @ops.on("*")
    def page(event: AlertEvent) -> None:
        seen.append(("page", event.id))

    router = Dispatcher(billing, ops)
    hooks = make_hooks(dispatcher=router)
    assert hooks.dispatcher is router

    @hooks.on("alert.cleared", name="late")  # registered through the app: the same registry
    async def late(event: AlertEvent) -> None:
        seen.append(("late", event.id))

    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=hooks), base_url="http://t")
    async with client:
        triggered = stripe_alert_triggered()
        assert (await post_stripe(client, triggered)).json() == {"status": "accepted"}
        cleared = chargebee_alert_status_changed("within_limit")
        assert (await post_chargebee(client, cleared)).json() == {"status": "accepted"}
    assert sorted(seen) == sorted(
        [
            ("bill", triggered["id"]),
            ("page", triggered["id"]),
            ("page", cleared["id"]),
            ("late", cleared["id"]),
        ]
    )
    assert router.get("late") is not None and billing.get("late") is None


def test_a_dispatcher_filtering_on_a_provider_the_app_does_not_serve_is_refused() -> None:
    router = Dispatcher()
    router.add(lambda event: None, "*", name="paddle_only", provider="paddle")
    with pytest.raises(ValueError, match="'paddle_only' filters on provider='paddle'"):
        make_hooks(dispatcher=router)
    checked = Dispatcher()
    make_hooks(dispatcher=checked)
    with pytest.raises(ValueError, match="provider='strip' names no configured provider"):
        checked.add(lambda event: None, "*", provider="strip")


# -- the deprecated provider keywords -----------------------------------------------------------


@pytest.mark.filterwarnings("default::DeprecationWarning")
def test_the_provider_keywords_still_work_and_warn_naming_the_replacement() -> None:
    with pytest.warns(DeprecationWarning) as warned:
        hooks = AlertHooks(
            stripe_secret=STRIPE_SECRET,
            stripe_tolerance=60,
            chargebee_auth=(CB_USER, CB_PASSWORD),
            store="memory://",
        )
    assert [str(w.message) for w in warned] == [
        "AlertHooks(stripe_secret=..., stripe_tolerance=...) is deprecated; pass "
        "providers=[Stripe(secrets=..., tolerance=...)] instead "
        "(from alerthooks.providers import Stripe)",
        "AlertHooks(chargebee_auth=...) is deprecated; pass providers=[Chargebee(auth=...)] "
        "instead (from alerthooks.providers import Chargebee)",
    ]
    assert all(w.filename == __file__ for w in warned)  # points at the caller's line
    stripe, chargebee = hooks.providers["stripe"], hooks.providers["chargebee"]
    assert isinstance(stripe, Stripe) and stripe.secrets == (STRIPE_SECRET,)
    assert stripe.tolerance == 60
    assert isinstance(chargebee, Chargebee) and chargebee.credentials == ((CB_USER, CB_PASSWORD),)
    assert set(hooks.providers) == {cls.name for cls in BUILTIN}


@pytest.mark.filterwarnings(r"ignore:AlertHooks\(.*is deprecated:DeprecationWarning")
def test_a_provider_given_both_ways_or_an_unknown_keyword_is_refused() -> None:
    with pytest.raises(ValueError, match="given both in providers= and by stripe_"):
        AlertHooks(providers=[Stripe(STRIPE_SECRET)], stripe_secret=STRIPE_SECRET)
    with pytest.raises(TypeError, match="unexpected keyword argument 'paddle_secret'"):
        AlertHooks(paddle_secret="x")  # type: ignore[call-arg]
