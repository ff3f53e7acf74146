"""The console: its gate, its pages, escaping, CSRF and replays (in-process; the browser test
in test_console_browser.py drives it over a real server)."""

from __future__ import annotations

import base64
import re
import typing
from collections.abc import AsyncIterator
from html import escape, unescape
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount

from alerthooks import AlertEvent, AlertHooks
from alerthooks.console import REPLAYABLE, STATUSES
from alerthooks.providers import BUILTIN, Chargebee, Stripe
from alerthooks.store import Status
from alerthooks.testing import (
    AlertHooksClient,
    build_sample,
    default_sample,
    stripe_alert_triggered,
)

from .conftest import CB_PASSWORD, CB_USER, STRIPE_SECRET, free_port, post_stripe

AUTH = ("admin", "s3cret:with:colons")


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def make_hooks(**options: Any) -> AlertHooks:
    options.setdefault("store", "memory://")
    return AlertHooks(
        providers=[Stripe(STRIPE_SECRET), Chargebee((CB_USER, CB_PASSWORD))], **options
    )


def client_for(app: Any, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", **kwargs
    )


@pytest.fixture
def flaky_hooks() -> AlertHooks:
    """Inline hooks with a handler that fails until ``hooks.fixed`` is set."""
    hooks = make_hooks()
    hooks.fixed = False  # type: ignore[attr-defined]

    @hooks.on("alert.triggered", name="notify")
    async def notify(event: AlertEvent) -> None:
        if not hooks.fixed:  # type: ignore[attr-defined]
            raise ConnectionError("pager <b>down</b>")

    return hooks


@pytest.fixture
async def console(flaky_hooks: AlertHooks) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(
        flaky_hooks.console(auth=AUTH), headers=basic(*AUTH), follow_redirects=False
    ) as c:
        yield c


async def deliver(hooks: AlertHooks, payload: dict[str, Any]) -> httpx.Response:
    async with client_for(hooks) as client:
        return await post_stripe(client, payload)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, "the page has no replay form"
    return unescape(found.group(1))


# -- the gate -------------------------------------------------------------------------------------


def test_a_console_without_auth_is_refused_at_construction() -> None:
    hooks = make_hooks()
    with pytest.raises(ValueError, match="auth"):
        hooks.console(auth=None)
    for bad in [("admin", ""), ("", "pw"), ("a:b", "pw"), ("admin",), "admin:pw", 42]:
        with pytest.raises(ValueError, match="auth"):
            hooks.console(auth=bad)


async def test_basic_auth_gates_every_page(flaky_hooks: AlertHooks) -> None:
    app = flaky_hooks.console(auth=AUTH)
    async with client_for(app) as anonymous:
        for method, path in [("GET", "/"), ("GET", "/events/stripe/evt_1"), ("POST", "/replay")]:
            response = await anonymous.request(method, path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"].startswith('Basic realm="alerthooks')
        for headers in [
            basic("admin", "wrong"),
            basic("root", AUTH[1]),
            {"Authorization": "Basic !!not-base64"},
            {"Authorization": "Bearer " + base64.b64encode(b"admin:x").decode()},
            {"Authorization": "Basic " + base64.b64encode(b"admin").decode()},
        ]:
            assert (await anonymous.get("/", headers=headers)).status_code == 401
        assert (await anonymous.get("/", headers=basic(*AUTH))).status_code == 200


async def test_a_callable_auth_decides_and_may_be_async(flaky_hooks: AlertHooks) -> None:
    def sync_check(request: Request) -> bool:
        return request.headers.get("x-staff") == "yes"

    async def async_check(request: Request) -> bool:
        return request.headers.get("x-staff") == "yes"

    for check in (sync_check, async_check):
        async with client_for(flaky_hooks.console(auth=check)) as client:
            assert (await client.get("/")).status_code == 403
            assert (await client.get("/", headers={"x-staff": "no"})).status_code == 403
            assert (await client.get("/", headers={"x-staff": "yes"})).status_code == 200


async def test_pages_forbid_scripts_and_framing(console: httpx.AsyncClient) -> None:
    response = await console.get("/")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "script-src" not in policy  # no script at all: default-src 'none' covers it
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert "<script" not in response.text


# -- pages ----------------------------------------------------------------------------------------


def test_the_status_filters_are_the_stores_statuses() -> None:
    assert typing.get_args(Status) == STATUSES
    assert set(REPLAYABLE) == {"failed", "dead"} & set(STATUSES) | ({"unparsed"} & set(STATUSES))


async def test_recent_events_show_provider_type_time_and_each_handlers_outcome(
    flaky_hooks: AlertHooks, console: httpx.AsyncClient
) -> None:
    payload = stripe_alert_triggered(id="evt_console_list")
    assert (await deliver(flaky_hooks, payload)).status_code == 500
    page = (await console.get("/")).text
    row = re.search(r'<tr class="event".*?</tr>', page, re.S)
    assert row is not None
    cells = row.group(0)
    assert 'data-provider="stripe"' in cells and 'data-event-id="evt_console_list"' in cells
    assert "billing.alert.triggered" in cells
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", cells)
    assert 'data-handler="notify" data-status="failed"' in cells
    assert "1 attempt<" in cells
    assert 'href="/events/stripe/evt_console_list"' in cells
    assert "Replay 1 failed handler" in cells
    for status in STATUSES:
        assert f'href="/?status={status}"' in page


async def test_the_status_filter_shows_only_events_with_a_handler_in_it(
    flaky_hooks: AlertHooks, console: httpx.AsyncClient
) -> None:
    await deliver(flaky_hooks, stripe_alert_triggered(id="evt_failing"))
    flaky_hooks.fixed = True  # type: ignore[attr-defined]
    await deliver(flaky_hooks, stripe_alert_triggered(id="evt_fine"))
    everything = (await console.get("/")).text
    assert "evt_failing" in everything and "evt_fine" in everything
    failed = (await console.get("/?status=failed")).text
    assert "evt_failing" in failed and "evt_fine" not in failed
    done = (await console.get("/?status=done")).text
    assert "evt_fine" in done and "evt_failing" not in done
    assert "No events with a dead handler" in (await console.get("/?status=dead")).text


async def test_an_unknown_status_filter_is_a_400(console: httpx.AsyncClient) -> None:
    response = await console.get("/?status=<b>bogus</b>")
    assert response.status_code == 400
    assert "unknown status" in response.text and "<b>bogus" not in response.text


async def test_the_event_page_shows_normalized_fields_raw_payload_and_outcomes(
    flaky_hooks: AlertHooks, console: httpx.AsyncClient
) -> None:
    payload = stripe_alert_triggered(id="evt_console_page", customer="cus_page", title="API calls")
    await deliver(flaky_hooks, payload)
    response = await console.get("/events/stripe/evt_console_page")
    assert response.status_code == 200
    page = response.text
    fields = re.search(r'<dl class="fields" id="fields">(.*?)</dl>', page, re.S)
    assert fields is not None
    assert "<dt>customer_id</dt><dd>cus_page</dd>" in fields.group(1)
    assert "<dt>alert_name</dt><dd>API calls</dd>" in fields.group(1)
    assert "<dt>type</dt><dd>alert.triggered</dd>" in fields.group(1)
    raw = re.search(r'<pre class="raw" id="raw">(.*?)</pre>', page, re.S)
    assert raw is not None
    assert "\n  &#34;id&#34;: &#34;evt_console_page&#34;," in raw.group(1)  # pretty-printed
    assert 'data-handler="notify" data-status="failed"' in page
    # The handler's error is provider-independent but still escaped.
    assert "ConnectionError: pager &lt;b&gt;down&lt;/b&gt;" in page


async def test_an_event_that_is_not_an_alert_is_shown_with_why(
    flaky_hooks: AlertHooks, console: httpx.AsyncClient
) -> None:
    from alerthooks.testing import stripe_customer_created

    payload = stripe_customer_created(id="evt_not_alert")
    assert (await deliver(flaky_hooks, payload)).json() == {"status": "ignored"}
    page = (await console.get("/events/stripe/evt_not_alert")).text
    assert 'id="not-normalized">not an alert' in page
    assert "No handlers took this event." in page


async def test_an_unknown_event_page_is_a_404(console: httpx.AsyncClient) -> None:
    response = await console.get("/events/stripe/evt_nowhere")
    assert response.status_code == 404
    assert "no stored event" in response.text


async def test_every_provider_supplied_string_is_escaped(
    flaky_hooks: AlertHooks, console: httpx.AsyncClient
) -> None:
    evil = '<script>alert("x")</script>'
    payload = stripe_alert_triggered(id=f"evt_{evil}", title=evil, customer=f"cus_{evil}")
    payload["type"] = "billing.alert.triggered"
    payload["data"]["object"]["alert"]["usage_threshold"]["meter"] = f'mtr_"><img src=x>{evil}'
    await deliver(flaky_hooks, payload)
    listing = (await console.get("/")).text
    event_url = re.search(r'<a class="id" href="([^"]+)">', listing)
    assert event_url is not None
    detail = (await console.get(unescape(event_url.group(1)))).text
    for page in (listing, detail):
        assert "<script" not in page and "<img" not in page
        assert "&lt;script&gt;" in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in detail
    # the hidden form fields round-trip the id exactly (escaped in the attribute)
    assert (
        f'name="event_id" value="evt_{evil}"'.replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"x"', "&#34;x&#34;")
        in detail
    )


async def test_a_console_mounted_under_a_prefix_links_and_scopes_its_cookie_there(
    flaky_hooks: AlertHooks,
) -> None:
    await deliver(flaky_hooks, stripe_alert_triggered(id="evt_mounted"))
    app = Starlette(routes=[Mount("/ops", app=flaky_hooks.console(auth=AUTH))])
    async with client_for(app, headers=basic(*AUTH)) as client:
        response = await client.get("/ops/")
        assert response.status_code == 200
        assert 'href="/ops/events/stripe/evt_mounted"' in response.text
        assert 'action="/ops/replay"' in response.text
        assert "Path=/ops" in response.headers["set-cookie"]
        assert (await client.get("/ops/events/stripe/evt_mounted")).status_code == 200


async def test_a_store_that_does_not_answer_is_a_503_page() -> None:
    hooks = make_hooks(store=f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")
    async with client_for(hooks.console(auth=AUTH), headers=basic(*AUTH)) as client:
        response = await client.get("/")
        assert response.status_code == 503
        assert "the store did not answer" in response.text
        assert (await client.get("/events/stripe/evt_1")).status_code == 503


# -- replay ---------------------------------------------------------------------------------------


async def test_replay_without_a_valid_csrf_token_is_a_403(
    flaky_hooks: AlertHooks, console: httpx.AsyncClient
) -> None:
    await deliver(flaky_hooks, stripe_alert_triggered(id="evt_csrf"))
    form = {"provider": "stripe", "event_id": "evt_csrf"}
    # No cookie and no token.
    assert (await console.post("/replay", data=form)).status_code == 403
    page = await console.get("/events/stripe/evt_csrf")
    token = csrf_of(page.text)
    assert console.cookies.get("alerthooks_csrf") == token
    # A token in the form that is not the cookie's.
    other = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert (await console.post("/replay", data={**form, "csrf": other})).status_code == 403
    # A cookie and form that agree but that this console did not sign.
    forged = "nonce.signature"
    console.cookies.set("alerthooks_csrf", forged)
    assert (await console.post("/replay", data={**form, "csrf": forged})).status_code == 403
    console.cookies.set("alerthooks_csrf", token)
    # From another origin.
    refused = await console.post(
        "/replay", data={**form, "csrf": token}, headers={"Origin": "https://evil.example"}
    )
    assert refused.status_code == 403 and "cross-origin" in refused.text
    stored = await flaky_hooks.store.get("stripe", "evt_csrf")
    assert stored is not None and [o.status for o in stored.outcomes] == ["failed"]


async def test_replay_in_inline_mode_runs_the_handlers_now(
    flaky_hooks: AlertHooks, console: httpx.AsyncClient
) -> None:
    await deliver(flaky_hooks, stripe_alert_triggered(id="evt_replay_inline"))
    token = csrf_of((await console.get("/events/stripe/evt_replay_inline")).text)
    flaky_hooks.fixed = True  # type: ignore[attr-defined]
    response = await console.post(
        "/replay",
        data={"csrf": token, "provider": "stripe", "event_id": "evt_replay_inline"},
        headers={"Origin": "http://testserver"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/events/stripe/evt_replay_inline?replayed=1&ran=ran"
    page = (await console.get(response.headers["location"])).text
    assert "1 handler(s) ran again" in page
    assert 'data-handler="notify" data-status="done"' in page
    assert "Replay" not in page  # nothing left to replay
    stored = await flaky_hooks.store.get("stripe", "evt_replay_inline")
    assert stored is not None and [(o.status, o.attempts) for o in stored.outcomes] == [("done", 1)]


async def test_replay_of_an_unparsed_event_reads_it_again_and_runs_its_handlers(
    flaky_hooks: AlertHooks, console: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alerthooks.providers import NotAnAlert, Stripe

    def cannot_read(self: Stripe, payload: dict[str, Any]) -> AlertEvent:
        raise NotAnAlert("a shape this release does not know")

    flaky_hooks.fixed = True  # type: ignore[attr-defined]
    with monkeypatch.context() as before_the_upgrade:
        before_the_upgrade.setattr(Stripe, "normalize", cannot_read)
        assert (await deliver(flaky_hooks, stripe_alert_triggered(id="evt_u1"))).json() == {
            "status": "unparsed"
        }
        token = csrf_of((await console.get("/events/stripe/evt_u1")).text)
        still = await console.post(
            "/replay",
            data={"csrf": token, "provider": "stripe", "event_id": "evt_u1"},
            headers={"Origin": "http://testserver"},
        )
        assert still.status_code == 409
        assert "a shape this release does not know" in still.text
    response = await console.post(
        "/replay",
        data={"csrf": token, "provider": "stripe", "event_id": "evt_u1"},
        headers={"Origin": "http://testserver"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/events/stripe/evt_u1?replayed=1&ran=ran"
    stored = await flaky_hooks.store.get("stripe", "evt_u1")
    assert stored is not None and [(o.handler, o.status) for o in stored.outcomes] == [
        ("notify", "done")
    ]
    (state,) = await flaky_hooks.alert_states()
    assert (state.event_id, state.state) == ("evt_u1", "in_alarm")


async def test_replay_in_queued_mode_leaves_the_handlers_to_the_worker() -> None:
    hooks = make_hooks(mode="queued", max_attempts=1, worker=False)
    calls: list[str] = []

    @hooks.on("alert.triggered", name="notify")
    async def notify(event: AlertEvent) -> None:
        calls.append(event.id)
        if len(calls) == 1:
            raise ConnectionError("down")

    await deliver(hooks, stripe_alert_triggered(id="evt_replay_queued"))
    await hooks.drain()
    async with client_for(hooks.console(auth=AUTH), headers=basic(*AUTH)) as console:
        page = (await console.get("/?status=dead")).text
        assert 'data-handler="notify" data-status="dead"' in page
        response = await console.post(
            "/replay",
            data={"csrf": csrf_of(page), "provider": "stripe", "event_id": "evt_replay_queued"},
        )
        assert response.headers["location"].endswith("?replayed=1&ran=queued")
        page = (await console.get(response.headers["location"])).text
        assert "queued again" in page
        assert 'data-handler="notify" data-status="pending"' in page
        assert '<meta http-equiv="refresh"' in page  # work in flight: the page reloads itself
        await hooks.drain()
        page = (await console.get("/events/stripe/evt_replay_queued")).text
        assert 'data-handler="notify" data-status="done"' in page
        assert '<meta http-equiv="refresh"' not in page
    assert calls == ["evt_replay_queued", "evt_replay_queued"]


async def test_replay_rejections_have_their_codes(
    flaky_hooks: AlertHooks, console: httpx.AsyncClient
) -> None:
    await deliver(flaky_hooks, stripe_alert_triggered(id="evt_rejections"))
    token = csrf_of((await console.get("/events/stripe/evt_rejections")).text)
    missing = await console.post("/replay", data={"csrf": token, "provider": "stripe"})
    assert missing.status_code == 400
    unknown = await console.post(
        "/replay", data={"csrf": token, "provider": "stripe", "event_id": "evt_nowhere"}
    )
    assert unknown.status_code == 404
    huge = await console.post(
        "/replay", data={"csrf": token, "provider": "stripe", "event_id": "x" * 10_000}
    )
    assert huge.status_code == 413
    assert (await console.get("/replay")).status_code == 405
    failing = await console.post(
        "/replay", data={"csrf": token, "provider": "stripe", "event_id": "evt_rejections"}
    )
    assert failing.status_code == 303  # replayed, and failed again: not fixed yet
    flaky_hooks.fixed = True  # type: ignore[attr-defined]
    again = await console.post(
        "/replay", data={"csrf": token, "provider": "stripe", "event_id": "evt_rejections"}
    )
    assert again.headers["location"].endswith("?replayed=1&ran=ran")
    done = await console.post(
        "/replay", data={"csrf": token, "provider": "stripe", "event_id": "evt_rejections"}
    )
    assert done.headers["location"].endswith("?replayed=0&ran=queued")
    assert "nothing to replay" in (await console.get(done.headers["location"])).text


@pytest.mark.parametrize("name", ["lago", "openmeter", "autumn", "flexprice"])
async def test_the_newer_providers_events_are_listed_and_shown(name: str) -> None:
    cls = next(c for c in BUILTIN if c.name == name)
    key = base64.b64encode(b"console-secret-0123456789").decode()
    provider = cls.from_secret("lago-console-token" if name == "lago" else f"whsec_{key}")
    hooks = AlertHooks(providers=[provider], store="memory://")
    seen: list[AlertEvent] = []
    hooks.add_handler(seen.append, "*", name="console.seen")
    async with AlertHooksClient(hooks) as client:
        response = await client.deliver(name, build_sample(default_sample(name)))
    assert response.status_code == 200
    [event] = seen
    async with client_for(hooks.console(auth=AUTH), headers=basic(*AUTH)) as console:
        index = await console.get("/")
        page = await console.get(f"/events/{name}/{event.id}")
    assert f"<td>{name}</td>" in index.text
    assert page.status_code == 200
    assert f"<dt>alert_id</dt><dd>{escape(event.alert_id)}</dd>" in page.text
