"""The console in a real browser: headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright) over a real uvicorn server sees a delivered event, replays its dead handler and
sees it done; and the inbox: search by customer, the Rejected view, a replay that leaves
another event's failed handler alone, the 24-hour chart.

``make test`` and ``.ci/run`` install Chromium; elsewhere this test says why in one line and
skips (under ``ALERTHOOKS_REQUIRE_BROWSER=1``, as ``.ci/run`` sets, it fails instead).
``ALERTHOOKS_CONSOLE_SCREENSHOT=path.png`` saves a screenshot of the events page, and
``ALERTHOOKS_CONSOLE_SCREENSHOTS=docs`` the inbox and an event page (docs/console.png and
docs/console-event.png were made so); nothing asserts on them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import Chargebee, Stripe
from alerthooks.testing import (
    chargebee_alert_status_changed,
    chargebee_auth_headers,
    stripe_alert_triggered,
    stripe_signature_header,
)

from .conftest import CB_PASSWORD, CB_USER, STRIPE_SECRET, encode
from .helpers import ServedApp

CHROMIUM = os.environ.get("ALERTHOOKS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AUTH = ("operator", "browser-test-password")
WAIT_MS = 20_000  # the pages reload themselves every 2 s while work is in flight


def _browser_missing() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is not installed (make test installs Debian's chromium as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture
def browser_context() -> Iterator[Any]:
    missing = _browser_missing()
    if missing is not None:
        if os.environ.get("ALERTHOOKS_REQUIRE_BROWSER"):  # CI (.ci/run) must run it
            pytest.fail(f"console browser test cannot run: {missing}")
        pytest.skip(f"console browser test not run: {missing}")
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="alerthooks-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,  # a fresh --user-data-dir
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_FLAGS,
                http_credentials={"username": AUTH[0], "password": AUTH[1]},
                viewport={"width": 1440, "height": 640},
            )
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_the_console_in_a_browser_replays_a_dead_handler_until_it_is_done(
    browser_context: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    hooks = AlertHooks(
        providers=[Stripe(STRIPE_SECRET), Chargebee((CB_USER, CB_PASSWORD))],
        store=f"sqlite:///{tmp_path / 'console.db'}",
        mode="queued",
        max_attempts=1,  # the first failure is dead
        poll_interval=0.05,
    )
    downstream = {"up": False}

    @hooks.on("alert.triggered", name="notify_billing_team")
    async def notify_billing_team(event: AlertEvent) -> None:
        if not downstream["up"]:
            raise ConnectionError("billing chat webhook answered 502")

    @hooks.on("*", name="record_usage")
    async def record_usage(event: AlertEvent) -> None:
        pass

    app = Starlette(
        routes=[Mount("/webhooks", app=hooks), Mount("/ops", app=hooks.console(auth=AUTH))],
        lifespan=hooks.lifespan,
    )
    evil = "<script>document.title='owned'</script>"
    payload = stripe_alert_triggered(id="evt_browser_1", title=f"API calls {evil}")
    with ServedApp(app) as served:
        base = f"http://127.0.0.1:{served.port}"
        body = encode(payload)
        answer = httpx.post(
            f"{base}/webhooks/stripe",
            content=body,
            headers={"Stripe-Signature": stripe_signature_header(body, STRIPE_SECRET)},
        )
        assert answer.status_code == 200, answer.text
        cleared = chargebee_alert_status_changed("within_limit")
        answer = httpx.post(
            f"{base}/webhooks/chargebee",
            content=encode(cleared),
            headers=chargebee_auth_headers(CB_USER, CB_PASSWORD),
        )
        assert answer.status_code == 200, answer.text

        page = browser_context.new_page()
        page.goto(f"{base}/ops/")
        row = page.locator('tr.event[data-event-id="evt_browser_1"]')
        expect(row).to_be_visible()
        expect(row).to_contain_text("billing.alert.triggered")
        dead = row.locator('[data-handler="notify_billing_team"]')
        expect(dead).to_have_attribute("data-status", "dead", timeout=WAIT_MS)
        expect(row.locator('[data-handler="record_usage"]')).to_have_attribute(
            "data-status", "done", timeout=WAIT_MS
        )
        shot = os.environ.get("ALERTHOOKS_CONSOLE_SCREENSHOT")
        if shot:
            page.screenshot(path=shot, full_page=True)

        # The dead filter shows the Stripe event only; the Chargebee one has nothing dead.
        the_cleared = page.locator(f'tr.event[data-event-id="{cleared["id"]}"]')
        expect(the_cleared.locator('[data-handler="record_usage"]')).to_have_attribute(
            "data-status", "done"
        )
        page.get_by_role("link", name="dead", exact=True).click()
        expect(page.locator("h1")).to_contain_text("with a dead handler")
        expect(page.locator('tr.event[data-event-id="evt_browser_1"]')).to_be_visible()
        expect(the_cleared).to_have_count(0)
        page.get_by_role("link", name="pending", exact=True).click()
        expect(page.locator("#events")).to_contain_text("No events with a pending handler")

        # The event's page escapes what the provider sent: the title is text, not a script.
        page.goto(f"{base}/ops/")
        page.locator('tr.event[data-event-id="evt_browser_1"] a').click()
        expect(page.locator("#fields")).to_contain_text(f"API calls {evil}")
        assert page.locator("script").count() == 0
        assert page.title() != "owned"
        expect(page.locator("#raw")).to_contain_text('"id": "evt_browser_1"')

        downstream["up"] = True
        page.get_by_role("button", name="Replay 1 failed handler").click()
        expect(page.locator("#note")).to_contain_text("queued again")
        expect(page.locator('tr.outcome[data-handler="notify_billing_team"]')).to_have_attribute(
            "data-status", "done", timeout=WAIT_MS
        )
        expect(page.get_by_role("button", name="Replay 1 failed handler")).to_have_count(0)
        page.close()


def test_the_inbox_in_a_browser_searches_lists_rejections_and_replays_one_event_only(
    browser_context: Any, tmp_path: Path
) -> None:
    """Four providers in inline mode: search by customer, the rejected view, replaying one
    event (another's failed handler stays failed), the 24-hour chart. With
    ``ALERTHOOKS_CONSOLE_SCREENSHOTS=DIR`` the inbox and an event page are saved there
    (docs/console.png and docs/console-event.png were made so)."""
    from playwright.sync_api import expect

    from alerthooks.providers import Chargebee, Metronome, Orb, Stripe
    from alerthooks.testing import metronome_event, orb_event

    providers = [
        Stripe([STRIPE_SECRET]),
        Chargebee([(CB_USER, CB_PASSWORD)]),
        Orb.from_secret("orb-browser-secret"),
        Metronome.from_secret("metronome-browser-secret"),
    ]
    hooks = AlertHooks(providers=providers, store=f"sqlite:///{tmp_path / 'inbox.db'}")
    failing = {"evt_pager_a", "orb_pager_b"}
    ran: list[str] = []

    @hooks.on("alert.triggered", name="page_on_call")
    async def page_on_call(event: AlertEvent) -> None:
        ran.append(event.id)
        if event.id in failing:
            raise ConnectionError("pager service answered 503")

    @hooks.on("*", name="record_usage")
    async def record_usage(event: AlertEvent) -> None:
        pass

    app = Starlette(
        routes=[Mount("/webhooks", app=hooks), Mount("/ops", app=hooks.console(auth=AUTH))],
        lifespan=hooks.lifespan,
    )
    deliveries = [
        ("stripe", stripe_alert_triggered(id="evt_acme", customer="cus_acme", title="API calls")),
        ("stripe", stripe_alert_triggered(id="evt_pager_a", customer="cus_globex", value=1500)),
        ("orb", orb_event(id="orb_pager_b")),
        ("metronome", metronome_event()),
        ("chargebee", chargebee_alert_status_changed("within_limit")),
    ]
    with ServedApp(app) as served:
        base = f"http://127.0.0.1:{served.port}"
        for name, payload in deliveries:
            body = encode(payload)
            answer = httpx.post(
                f"{base}/webhooks/{name}", content=body, headers=hooks.providers[name].sign(body)
            )
            assert answer.status_code in (200, 500), answer.text
        forged = encode(stripe_alert_triggered(id="evt_forged"))
        refused = httpx.post(
            f"{base}/webhooks/stripe",
            content=forged,
            headers={"Stripe-Signature": stripe_signature_header(forged, "whsec_forged")},
        )
        assert refused.status_code == 400

        page = browser_context.new_page()
        page.goto(f"{base}/ops/")
        expect(page.locator("#chart g.bar")).to_have_count(24)
        expect(page.locator("#chart rect.rejected")).to_have_count(1, timeout=WAIT_MS)
        expect(page.locator("#chart rect.failed")).to_have_count(1)
        expect(page.locator("tr.event")).to_have_count(len(deliveries))
        shots = os.environ.get("ALERTHOOKS_CONSOLE_SCREENSHOTS")
        if shots:
            page.screenshot(path=str(Path(shots) / "console.png"), full_page=True)

        # Search by customer: one row, and the search is in the URL.
        page.get_by_label("search").fill("cus_acme")
        page.get_by_role("button", name="Search").click()
        expect(page.locator("tr.event")).to_have_count(1)
        expect(page.locator('tr.event[data-event-id="evt_acme"]')).to_be_visible()
        assert "q=cus_acme" in page.url

        # The rejected view lists the forged delivery, without its signature.
        page.get_by_role("link", name="Rejected", exact=True).click()
        rejected = page.locator("tr.rejection")
        expect(rejected).to_have_count(1)
        expect(rejected).to_contain_text("signature mismatch")
        expect(rejected).to_contain_text("evt_forged")
        assert "v1=" not in page.content()

        # Replaying one event runs its handlers only: the Orb event's stays failed.
        failing.clear()
        ran.clear()
        page.goto(f"{base}/ops/events/stripe/evt_pager_a")
        expect(page.locator("tr.attempt")).to_have_count(2)
        page.get_by_role("button", name="Replay 1 failed handler").click()
        expect(page.locator("#note")).to_contain_text("1 handler(s) ran again")
        expect(page.locator('tr.outcome[data-handler="page_on_call"]')).to_have_attribute(
            "data-status", "done"
        )
        expect(page.locator('tr.attempt[data-outcome="failed"]')).to_have_count(1)
        if shots:
            page.screenshot(path=str(Path(shots) / "console-event.png"), full_page=True)
        assert ran == ["evt_pager_a"]
        page.goto(f"{base}/ops/events/orb/orb_pager_b")
        expect(page.locator('tr.outcome[data-handler="page_on_call"]')).to_have_attribute(
            "data-status", "failed"
        )
        expect(page.locator("#outcomes")).to_contain_text("when the provider redelivers it")
