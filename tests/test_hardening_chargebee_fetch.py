"""``verify="fetch"``: each delivery is fetched back from the Chargebee API by id and
what the API returns is dispatched. The API is a fake served by uvicorn on loopback, reached
through ``ALERTHOOKS_CHARGEBEE_API_BASE``; one test checks the real URL shape with respx.

Unknown ids are answered 401 (the delivery is not Chargebee's, like a failed Basic auth), an API
that cannot be reached or fails 503 (so Chargebee retries).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import Chargebee, Stripe
from alerthooks.testing import (
    chargebee_alert_status_changed,
    chargebee_auth_headers,
    chargebee_subscription_created,
)

from .conftest import CB_PASSWORD, CB_USER, STRIPE_SECRET, free_port
from .helpers import ServedApp, make_hooks, recorded
from .hostile import asgi_call

API_KEY = "test_ApIkEyMaRkEr123"


class FakeChargebee:
    """Serves ``GET /api/v2/events/{id}`` from ``events``, as Chargebee's API does."""

    def __init__(self) -> None:
        self.events: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.fail_with: int | None = None
        #: Answer this many requests with ``fail_with``, then serve again (None: all of them).
        self.fail_times: int | None = None
        self.delay = 0.0
        self.lie_about_id = False
        self.app = Starlette(routes=[Route("/api/v2/events/{event_id}", self.get_event)])

    async def get_event(self, request: Request) -> Response:
        event_id = request.path_params["event_id"]
        self.requests.append((event_id, request.headers.get("authorization")))
        if self.delay:
            await asyncio.sleep(self.delay)
        expected = "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse({"api_error_code": "api_authentication_failed"}, 401)
        if self.fail_with is not None and self.fail_times != 0:
            if self.fail_times is not None:
                self.fail_times -= 1
            return JSONResponse({"api_error_code": "internal_error"}, self.fail_with)
        event = self.events.get(event_id)
        if event is None:
            return JSONResponse(
                {
                    "message": "Sorry, we couldn't find that resource",
                    "api_error_code": "resource_not_found",
                },
                404,
            )
        if self.lie_about_id:
            event = {**event, "id": "ev_someone_else"}
        return JSONResponse({"event": event})


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeChargebee]:
    fake = FakeChargebee()
    with ServedApp(fake.app) as server:
        monkeypatch.setenv("ALERTHOOKS_CHARGEBEE_API_BASE", f"http://127.0.0.1:{server.port}")
        yield fake


def _hooks(
    *,
    auth: tuple[str, str] | None = (CB_USER, CB_PASSWORD),
    verify: Any = "fetch",
    api_key: str | None = API_KEY,
    site: str | None = None,
    **options: Any,
) -> tuple[AlertHooks, list[AlertEvent]]:
    """Hooks whose Chargebee fetches each delivery back; ``auth=None`` reads the Basic
    credentials from the environment, as ``Chargebee.from_env`` does."""
    chargebee = (
        Chargebee.from_env(verify=verify, site=site, api_key=api_key)
        if auth is None
        else Chargebee(auth, verify=verify, site=site, api_key=api_key)
    )
    hooks = make_hooks(providers=[Stripe(STRIPE_SECRET), chargebee], **options)
    return hooks, recorded(hooks)


async def _post(
    hooks: AlertHooks, payload: dict[str, Any], auth: tuple[str, str] = (CB_USER, CB_PASSWORD)
) -> tuple[int, dict[str, Any]]:
    header = chargebee_auth_headers(*auth)["Authorization"].encode()
    status, body, _ = await asgi_call(
        hooks,
        path="/chargebee",
        headers=[(b"authorization", header)],
        chunks=[json.dumps(payload).encode()],
    )
    return status, json.loads(body)


async def test_what_the_api_returns_is_dispatched_not_what_was_posted(
    fake: FakeChargebee,
) -> None:
    real = chargebee_alert_status_changed(name="Calls at 80%", metered_feature_id="api-calls")
    fake.events[real["id"]] = real
    posted = json.loads(json.dumps(real))
    posted["content"]["alert"]["name"] = "forged"
    posted["content"]["alert"]["metered_feature_id"] = "forged-meter"
    hooks, seen = _hooks()
    status, _ = await _post(hooks, posted)
    assert status == 200
    assert [(e.alert_name, e.meter_id) for e in seen] == [("Calls at 80%", "api-calls")]
    assert seen[0].raw == real
    assert fake.requests[0][0] == real["id"]
    await hooks.shutdown()


async def test_api_is_called_with_the_api_key_as_basic_user(fake: FakeChargebee) -> None:
    real = chargebee_alert_status_changed()
    fake.events[real["id"]] = real
    hooks, _ = _hooks()
    assert (await _post(hooks, real))[0] == 200
    assert fake.requests[0][1] == "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()


async def test_unknown_event_id_is_401_and_reaches_no_handler(fake: FakeChargebee) -> None:
    hooks, seen = _hooks()
    status, answer = await _post(hooks, chargebee_alert_status_changed())
    assert status == 401
    assert answer == {"error": "event not found at Chargebee"}
    assert seen == []
    assert await hooks.store.events() == []


async def test_api_answering_with_another_event_is_401(fake: FakeChargebee) -> None:
    real = chargebee_alert_status_changed()
    fake.events[real["id"]] = real
    fake.lie_about_id = True
    hooks, seen = _hooks()
    assert (await _post(hooks, real))[0] == 401
    assert seen == []


@pytest.mark.parametrize(
    "event_id", ["../../customers/cus_1", "ev 1", "ev_1?x=1", "ev_%2F", "ev_#"]
)
async def test_malformed_event_id_is_401_without_calling_the_api(
    fake: FakeChargebee, event_id: str
) -> None:
    hooks, seen = _hooks()
    status, answer = await _post(hooks, chargebee_alert_status_changed(id=event_id))
    assert status == 401
    assert answer == {"error": "event id is malformed"}
    assert fake.requests == []
    assert seen == []


async def test_unusable_event_id_is_acknowledged_without_calling_the_api(
    fake: FakeChargebee,
) -> None:
    hooks, seen = _hooks()
    status, answer = await _post(hooks, chargebee_alert_status_changed(id="ev_é\x00"))
    assert (status, answer) == (200, {"status": "ignored"})
    assert fake.requests == []
    assert seen == []


async def test_non_alert_event_from_the_api_is_acknowledged_not_dispatched(
    fake: FakeChargebee,
) -> None:
    posted = chargebee_alert_status_changed()
    fake.events[posted["id"]] = chargebee_subscription_created(id=posted["id"])
    hooks, seen = _hooks()
    status, answer = await _post(hooks, posted)
    assert (status, answer) == (200, {"status": "ignored"})
    assert seen == []


async def test_basic_auth_is_still_checked_when_configured(fake: FakeChargebee) -> None:
    real = chargebee_alert_status_changed()
    fake.events[real["id"]] = real
    hooks, seen = _hooks()
    assert (await _post(hooks, real, auth=(CB_USER, "wrong")))[0] == 401
    assert fake.requests == []
    assert seen == []


async def test_fetch_alone_needs_no_basic_auth(
    fake: FakeChargebee, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHARGEBEE_WEBHOOK_USERNAME", raising=False)
    monkeypatch.delenv("CHARGEBEE_WEBHOOK_PASSWORD", raising=False)
    real = chargebee_alert_status_changed()
    fake.events[real["id"]] = real
    hooks, seen = _hooks(auth=None)
    assert hooks.chargebee.configured
    status, _, _ = await asgi_call(hooks, path="/chargebee", chunks=[json.dumps(real).encode()])
    assert status == 200
    assert len(seen) == 1


@pytest.mark.parametrize("code", [500, 502, 429])
async def test_failing_api_is_503(fake: FakeChargebee, code: int) -> None:
    real = chargebee_alert_status_changed()
    fake.events[real["id"]] = real
    fake.fail_with = code
    hooks, seen = _hooks()
    status, answer = await _post(hooks, real)
    assert status == 503
    assert answer == {"error": "provider API unavailable; retry later"}
    assert seen == []
    assert await hooks.store.events() == []


@pytest.mark.parametrize("code", [502, 429])
async def test_a_passing_failure_is_retried_within_the_delivery(
    fake: FakeChargebee, code: int
) -> None:
    real = chargebee_alert_status_changed()
    fake.events[real["id"]] = real
    fake.fail_with, fake.fail_times = code, 1
    hooks, seen = _hooks()
    assert (await _post(hooks, real))[0] == 200
    assert [event_id for event_id, _ in fake.requests] == [real["id"], real["id"]]
    assert len(seen) == 1


async def test_wrong_api_key_is_503_and_logged(
    fake: FakeChargebee, caplog: pytest.LogCaptureFixture
) -> None:
    real = chargebee_alert_status_changed()
    fake.events[real["id"]] = real
    hooks, seen = _hooks(api_key="test_wrong_key")
    with caplog.at_level(logging.ERROR):
        assert (await _post(hooks, real))[0] == 503
    assert "Chargebee API answered 401" in caplog.text
    assert seen == []


async def test_slow_api_times_out_as_503(fake: FakeChargebee) -> None:
    real = chargebee_alert_status_changed()
    fake.events[real["id"]] = real
    fake.delay = 1.0
    hooks, seen = _hooks()
    chargebee = hooks.providers["chargebee"]
    assert isinstance(chargebee, Chargebee) and chargebee.fetcher is not None
    chargebee.fetcher.timeout = 0.2
    assert (await _post(hooks, real))[0] == 503
    assert seen == []


async def test_unreachable_api_is_503_and_the_retry_succeeds_once_it_is_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    monkeypatch.setenv("ALERTHOOKS_CHARGEBEE_API_BASE", f"http://127.0.0.1:{port}")
    hooks, seen = _hooks()
    real = chargebee_alert_status_changed()
    assert (await _post(hooks, real))[0] == 503
    assert seen == []
    fake = FakeChargebee()
    fake.events[real["id"]] = real
    with ServedApp(fake.app, port=port):
        assert (await _post(hooks, real))[0] == 200
    assert len(seen) == 1


async def test_queued_mode_stores_and_dispatches_the_fetched_event(fake: FakeChargebee) -> None:
    real = chargebee_alert_status_changed(name="from the API")
    fake.events[real["id"]] = real
    posted = json.loads(json.dumps(real))
    posted["content"]["alert"]["name"] = "forged"
    hooks, seen = _hooks(mode="queued", worker=False)
    assert (await _post(hooks, posted))[0] == 200
    stored = await hooks.store.get("chargebee", real["id"])
    assert stored is not None and json.loads(stored.body) == real
    await hooks.drain(10)
    assert [e.alert_name for e in seen] == ["from the API"]


@respx.mock
async def test_default_api_base_is_the_site_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALERTHOOKS_CHARGEBEE_API_BASE", raising=False)
    real = chargebee_alert_status_changed()
    route = respx.get(f"https://acme-test.chargebee.com/api/v2/events/{real['id']}").mock(
        return_value=httpx.Response(200, json={"event": real})
    )
    hooks, seen = _hooks(site="acme-test")
    assert (await _post(hooks, real))[0] == 200
    assert route.called
    assert len(seen) == 1


@respx.mock
async def test_site_and_key_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALERTHOOKS_CHARGEBEE_API_BASE", raising=False)
    monkeypatch.setenv("CHARGEBEE_SITE", "envsite")
    monkeypatch.setenv("CHARGEBEE_API_KEY", API_KEY)
    real = chargebee_alert_status_changed()
    route = respx.get(f"https://envsite.chargebee.com/api/v2/events/{real['id']}").mock(
        return_value=httpx.Response(200, json={"event": real})
    )
    hooks, seen = _hooks(api_key=None)
    assert (await _post(hooks, real))[0] == 200
    assert route.calls[0].request.headers["authorization"].startswith("Basic ")
    assert len(seen) == 1


@respx.mock
async def test_connection_reset_is_503(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALERTHOOKS_CHARGEBEE_API_BASE", raising=False)
    respx.get(url__regex=r"https://acme\.chargebee\.com/.*").mock(
        side_effect=httpx.ReadError("connection reset by peer")
    )
    hooks, seen = _hooks(site="acme")
    assert (await _post(hooks, chargebee_alert_status_changed()))[0] == 503
    assert seen == []


@pytest.mark.parametrize(
    ("kwargs", "env", "message"),
    [
        ({"api_key": None}, {}, "needs chargebee_api_key (or env CHARGEBEE_API_KEY)"),
        ({}, {}, "needs chargebee_site (or env CHARGEBEE_SITE)"),
        ({"site": "evil.com/x#"}, {}, "chargebee_site: 'evil.com/x#' is not"),
        ({}, {"ALERTHOOKS_CHARGEBEE_API_BASE": "ftp://x"}, "ALERTHOOKS_CHARGEBEE_API_BASE: "),
        ({"verify": "trust"}, {}, "chargebee_verify must be 'auth' or 'fetch'"),
    ],
)
def test_configuration_errors_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any], env: dict[str, str], message: str
) -> None:
    for name in ("ALERTHOOKS_CHARGEBEE_API_BASE", "CHARGEBEE_SITE", "CHARGEBEE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as info:
        _hooks(**kwargs)
    assert message in str(info.value)
    assert API_KEY not in str(info.value)


async def test_api_key_never_shown_in_logs_or_repr(fake: FakeChargebee) -> None:
    records: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    root = logging.getLogger()
    handler = Capture(logging.DEBUG)
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        real = chargebee_alert_status_changed()
        fake.events[real["id"]] = real
        hooks, _ = _hooks()
        await _post(hooks, real)
        await _post(hooks, chargebee_alert_status_changed())
        fake.fail_with = 500
        await _post(hooks, chargebee_alert_status_changed())
        await hooks.shutdown()
        wrong, _ = _hooks(api_key=API_KEY + "x")
        await _post(wrong, real)
        chargebee = hooks.providers["chargebee"]
        assert isinstance(chargebee, Chargebee)
        texts = [*records, repr(hooks), repr(chargebee), repr(chargebee.fetcher)]
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
    encoded = base64.b64encode(f"{API_KEY}:".encode()).decode()
    assert len(records) > 3
    for text in texts:
        assert API_KEY not in text
        assert encoded not in text
