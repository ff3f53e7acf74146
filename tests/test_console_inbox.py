"""The console as an operator's inbox: search, filters and pages in the URL, the normalized
columns, the Rejected view, the event page's attempts, replay of one event and of every dead
handler, the 24-hour chart, and inline mode's wording (in-process)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from html import unescape
from typing import Any

import httpx
import pytest

from alerthooks import AlertEvent, AlertHooks
from alerthooks.store import Delivery, Rejection
from alerthooks.testing import chargebee_alert_status_changed, stripe_alert_triggered

from .conftest import post_chargebee, post_stripe
from .test_console import AUTH, basic, client_for, csrf_of, make_hooks

ORIGIN = {"Origin": "http://testserver"}


class Handled:
    """What handler ``notify`` does: fail for the ids in ``failing``; ``ran`` lists its runs."""

    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.ran: list[str] = []


@pytest.fixture
def handled() -> Handled:
    return Handled()


@pytest.fixture
def hooks(handled: Handled) -> AlertHooks:
    """Inline hooks whose handler ``notify`` fails for the event ids in ``handled.failing``."""
    made = make_hooks()

    @made.on("*", name="notify")
    async def notify(event: AlertEvent) -> None:
        handled.ran.append(event.id)
        if event.id in handled.failing:
            raise ConnectionError(f"pager down for {event.id}")

    return made


@pytest.fixture
async def console(hooks: AlertHooks) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(
        hooks.console(auth=AUTH), headers=basic(*AUTH), follow_redirects=False
    ) as c:
        yield c


async def deliver(hooks: AlertHooks, *payloads: dict[str, Any]) -> list[int]:
    async with client_for(hooks) as client:
        return [(await post_stripe(client, p)).status_code for p in payloads]


def listed(page: str) -> list[str]:
    """The event ids of the inbox's rows, in order."""
    return [unescape(m) for m in re.findall(r'<tr class="event"[^>]*data-event-id="([^"]*)"', page)]


def link(page: str, anchor: str) -> str | None:
    found = re.search(rf'<a id="{anchor}" href="([^"]+)"', page)
    return None if found is None else unescape(found.group(1))


async def test_search_finds_events_by_customer_alert_and_id(
    hooks: AlertHooks, console: httpx.AsyncClient
) -> None:
    await deliver(
        hooks,
        stripe_alert_triggered(id="evt_acme", customer="cus_acme", title="Acme token budget"),
        stripe_alert_triggered(id="evt_globex", customer="cus_globex", alert_id="alrt_globex"),
    )
    assert listed((await console.get("/?q=cus_acme")).text) == ["evt_acme"]
    assert listed((await console.get("/?q=alrt_globex")).text) == ["evt_globex"]
    assert listed((await console.get("/?q=Acme+token")).text) == ["evt_acme"]
    assert listed((await console.get("/?q=evt_globex")).text) == ["evt_globex"]
    page = (await console.get("/?q=cus_acme")).text
    assert 'value="cus_acme"' in page  # the form shows the search it answers


async def test_filters_by_provider_type_and_date_are_in_the_url(
    hooks: AlertHooks, console: httpx.AsyncClient
) -> None:
    await deliver(hooks, stripe_alert_triggered(id="evt_s"))
    async with client_for(hooks) as client:
        cleared = chargebee_alert_status_changed("within_limit", id="ev_cb")
        assert (await post_chargebee(client, cleared)).status_code == 200
    assert listed((await console.get("/?provider=chargebee")).text) == ["ev_cb"]
    assert listed((await console.get("/?type=alert.triggered")).text) == ["evt_s"]
    assert listed((await console.get("/?type=alert.cleared")).text) == ["ev_cb"]
    today = datetime.now(timezone.utc).date()
    assert listed((await console.get(f"/?since={today}&until={today}")).text) == [
        "ev_cb",
        "evt_s",
    ]
    assert listed((await console.get(f"/?until={today - timedelta(days=1)}")).text) == []
    assert (await console.get("/?since=yesterday")).status_code == 400
    assert (await console.get("/?type=alert.exploded")).status_code == 400
    assert listed((await console.get("/?kind=usage&provider=stripe")).text) == ["evt_s"]
    assert listed((await console.get("/?kind=spend")).text) == []
    assert (await console.get("/?kind=bogus")).status_code == 400


async def test_older_pages_follow_a_cursor_and_keep_the_search(
    hooks: AlertHooks, console: httpx.AsyncClient
) -> None:
    ids = [f"evt_page_{i}" for i in range(5)]
    await deliver(hooks, *(stripe_alert_triggered(id=i, customer="cus_paged") for i in ids))
    await deliver(hooks, stripe_alert_triggered(id="evt_other", customer="cus_other"))
    first = (await console.get("/?q=cus_paged&limit=2")).text
    assert listed(first) == ["evt_page_4", "evt_page_3"]
    older = link(first, "older")
    assert older is not None and "q=cus_paged" in older and "before=" in older
    second = (await console.get(older)).text
    assert listed(second) == ["evt_page_2", "evt_page_1"]
    third_link = link(second, "older")
    assert third_link is not None
    third = (await console.get(third_link)).text
    assert listed(third) == ["evt_page_0"]
    assert link(third, "older") is None and link(third, "newest") is not None
    whole = (await console.get("/?q=cus_paged&limit=5")).text
    assert len(listed(whole)) == 5 and link(whole, "older") is None  # no empty page after it
    kinds = (await console.get("/?type=alert.triggered&limit=3")).text
    assert len(listed(kinds)) == 3
    rest_link = link(kinds, "older")
    assert rest_link is not None and "type=alert.triggered" in rest_link
    assert len(listed((await console.get(rest_link)).text)) == 3


async def test_rows_show_normalized_type_alert_subject_and_value(
    hooks: AlertHooks, console: httpx.AsyncClient
) -> None:
    await deliver(
        hooks,
        stripe_alert_triggered(
            id="evt_cols", customer="cus_cols", title="Token budget", gte=1000, value=1200
        ),
    )
    page = (await console.get("/")).text
    row = re.search(r'<tr class="event".*?</tr>', page, re.S)
    assert row is not None
    cells = row.group(0)
    for shown in ("alert.triggered", "Token budget", "cus_cols", "1200 / 1000"):
        assert shown in cells, shown


async def test_the_rejected_view_lists_refused_deliveries_without_secrets(
    hooks: AlertHooks, console: httpx.AsyncClient
) -> None:
    async with client_for(hooks) as client:
        bad = await post_stripe(
            client, stripe_alert_triggered(id="evt_forged"), secret="whsec_forged_secret"
        )
        assert bad.status_code == 400
    await hooks._receiver.recorder.flush()
    page = (await console.get("/rejected")).text
    rows = re.findall(r'<tr class="rejection".*?</tr>', page, re.S)
    assert len(rows) == 1
    assert "signature mismatch" in rows[0] and "400" in rows[0] and "evt_forged" in rows[0]
    assert "whsec_forged_secret" not in page and "v1=" not in page
    assert (
        "No rejected deliveries from chargebee"
        in (await console.get("/rejected?provider=chargebee")).text
    )


async def test_the_event_page_shows_each_attempt_and_the_payload_pretty(
    hooks: AlertHooks, handled: Handled, console: httpx.AsyncClient
) -> None:
    handled.failing.add("evt_attempts")
    await deliver(hooks, stripe_alert_triggered(id="evt_attempts"))
    token = csrf_of((await console.get("/events/stripe/evt_attempts")).text)
    handled.failing.clear()
    replayed = await console.post(
        "/replay",
        data={"csrf": token, "provider": "stripe", "event_id": "evt_attempts"},
        headers=ORIGIN,
    )
    assert replayed.status_code == 303
    page = (await console.get("/events/stripe/evt_attempts")).text
    attempts = re.findall(r'<tr class="attempt"[^>]*data-outcome="(\w+)".*?</tr>', page, re.S)
    assert attempts == ["failed", "done"]
    first = re.search(r'<tr class="attempt".*?</tr>', page, re.S)
    assert first is not None
    assert "<code>ConnectionError</code>" in first.group(0)
    assert "pager down for evt_attempts" in first.group(0)
    assert '\n  "id": "evt_attempts",' in unescape(page)  # pretty-printed


async def test_inline_mode_says_how_a_failed_handler_runs_again(
    hooks: AlertHooks, handled: Handled, console: httpx.AsyncClient
) -> None:
    handled.failing.add("evt_inline")
    await deliver(hooks, stripe_alert_triggered(id="evt_inline"))
    page = (await console.get("/events/stripe/evt_inline")).text
    assert "Due again" not in page
    assert "when the provider redelivers it, or on replay" in page


async def test_replaying_one_event_leaves_another_events_failed_handler_alone(
    hooks: AlertHooks, handled: Handled, console: httpx.AsyncClient
) -> None:
    handled.failing.update({"evt_a", "evt_b"})
    await deliver(hooks, stripe_alert_triggered(id="evt_a"), stripe_alert_triggered(id="evt_b"))
    handled.failing.clear()
    handled.ran.clear()
    token = csrf_of((await console.get("/events/stripe/evt_a")).text)
    replayed = await console.post(
        "/replay", data={"csrf": token, "provider": "stripe", "event_id": "evt_a"}, headers=ORIGIN
    )
    assert replayed.headers["location"].endswith("?replayed=1&ran=ran")
    assert handled.ran == ["evt_a"]
    b = await hooks.store.get("stripe", "evt_b")
    assert b is not None and [(o.status, o.attempts) for o in b.outcomes] == [("failed", 1)]


async def test_replay_all_dead_is_guarded_and_runs_only_the_dead() -> None:
    hooks = make_hooks(max_attempts=1)
    failing = {"on": True}
    ran: list[str] = []

    @hooks.on("*", name="notify")
    async def notify(event: AlertEvent) -> None:
        ran.append(event.id)
        if failing["on"]:
            raise ConnectionError("down")

    now = datetime.now(timezone.utc)
    for event_id, dead in (("evt_d1", True), ("evt_d2", True), ("evt_f", False)):
        await hooks.store.begin(_delivery(event_id, now), owner="o", lease=60)
        await hooks.store.finish(
            "stripe", event_id, {"notify": "down"}, owner="o", dead=["notify"] if dead else []
        )
    failing["on"] = False
    ran.clear()
    async with client_for(
        hooks.console(auth=AUTH), headers=basic(*AUTH), follow_redirects=False
    ) as console:
        dead_page = (await console.get("/?status=dead")).text
        assert "Replay all dead" in dead_page
        refused = await console.post("/replay-dead", data={"csrf": "forged"}, headers=ORIGIN)
        assert refused.status_code == 403
        cross = await console.post(
            "/replay-dead",
            data={"csrf": csrf_of(dead_page)},
            headers={"Origin": "http://evil.example"},
        )
        assert cross.status_code == 403
        assert ran == []
        done = await console.post("/replay-dead", data={"csrf": csrf_of(dead_page)}, headers=ORIGIN)
        assert done.status_code == 303
        assert done.headers["location"] == "/?replayed=2&ran=ran&status=dead"
        assert "2 handler(s) ran again" in (await console.get(done.headers["location"])).text
    assert sorted(ran) == ["evt_d1", "evt_d2"]
    f = await hooks.store.get("stripe", "evt_f")
    assert f is not None and f.outcomes[0].status == "failed"


def _delivery(event_id: str, now: datetime) -> Delivery:
    body = stripe_alert_triggered(id=event_id)
    return Delivery(
        "stripe", event_id, "billing.alert.triggered", json.dumps(body).encode(), now, ("notify",)
    )


async def test_the_chart_counts_the_last_24_hours_by_outcome(
    hooks: AlertHooks, handled: Handled, console: httpx.AsyncClient
) -> None:
    handled.failing.add("evt_chart_failed")
    await deliver(
        hooks,
        stripe_alert_triggered(id="evt_chart_ok"),
        stripe_alert_triggered(id="evt_chart_failed"),
    )
    await hooks.store.record_rejections(
        [
            Rejection(datetime.now(timezone.utc), "stripe", 400, "signature mismatch"),
            Rejection(datetime.now(timezone.utc) - timedelta(hours=30), "stripe", 400, "old"),
        ]
    )
    page = (await console.get("/")).text
    svg = re.search(r'<svg id="chart".*?</svg>', page, re.S)
    assert svg is not None
    assert "<script" not in page
    bars = re.findall(r'<g class="bar" data-hour="\d\d" data-total="(\d+)"', svg.group(0))
    assert len(bars) == 24 and bars[-1] == "3" and sum(map(int, bars)) == 3
    for outcome in ("accepted", "failed", "rejected"):
        assert f'<rect class="{outcome}"' in svg.group(0)
    assert "default-src 'none'" in (await console.get("/")).headers["content-security-policy"]
    dead = re.search(r'<a id="dead-count" href="/\?status=dead">.*?(\d+)</span>', page, re.S)
    assert dead is not None and dead.group(1) == "0"
