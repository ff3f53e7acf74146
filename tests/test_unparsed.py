"""A verified alert the normalizer cannot read is kept ``unparsed`` (answered 200, stored with
its reason, logged at WARNING), never dropped; other event types stay ignored. Through the ASGI
app, on every store, in both modes."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from alerthooks import AlertEvent, AlertHooks
from alerthooks.dispatch import Dispatcher
from alerthooks.observe import Observer, Seen
from alerthooks.providers import NotAnAlert, Provider
from alerthooks.providers.metronome import Metronome
from alerthooks.providers.stripe import Stripe
from alerthooks.store import UNPARSED_HANDLER, Delivery, Outcome, Store, open_store
from alerthooks.testing import (
    chargebee_alert_status_changed,
    stripe_alert_triggered,
    stripe_customer_created,
)
from alerthooks.testing.client import AlertHooksClient

from .helpers import logged, make_hooks
from .stores import BACKENDS, store_url

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MODES = ["inline", "queued"]
NO_THRESHOLD = "alert.spend_threshold is missing for an alert of type spend_threshold"


def spend_alert() -> dict[str, Any]:
    """A ``billing.alert.triggered`` of a spend alert without the ``spend_threshold`` that
    states its threshold: an alert the normalizer cannot read."""
    payload = stripe_alert_triggered()
    alert = payload["data"]["object"]["alert"]
    del alert["usage_threshold"]
    alert["alert_type"] = "spend_threshold"
    return payload


@pytest.fixture(params=BACKENDS)
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with store_url(request.param, tmp_path) as found:
        yield found


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class App:
    """Hooks on one store with a recording handler, served in-process with their lifespan."""

    def __init__(self, store: str | Store, mode: str, **options: Any) -> None:
        self.hooks: AlertHooks = make_hooks(store, mode=mode, **options)
        self.handled: list[AlertEvent] = []

        @self.hooks.on("*", name="record")
        async def record(event: AlertEvent) -> None:
            self.handled.append(event)

    def client(self) -> AlertHooksClient:
        return AlertHooksClient(self.hooks)


def shared_store(url: str) -> Store:
    """The store the test's apps share: one memory store, or the URL's file or schema."""
    return open_store(url)


# -- kept, not dropped ------------------------------------------------------------------------


async def test_an_alert_that_cannot_be_read_is_kept_unparsed_with_its_reason(
    url: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(url, mode)
    payload = spend_alert()
    async with app.client() as client:
        with caplog.at_level(logging.INFO, logger="alerthooks"):
            response = await client.deliver("stripe", payload)
        assert (response.status_code, response.json()) == (200, {"status": "unparsed"})
        stored = await app.hooks.store.get("stripe", payload["id"])
        assert stored is not None
        assert stored.event_type == "billing.alert.triggered"
        assert stored.outcomes == (Outcome(UNPARSED_HANDLER, "unparsed", 0, NO_THRESHOLD),)
        assert [e.event_id for e in await app.hooks.store.events(status="unparsed")] == [
            payload["id"]
        ]
        assert await app.hooks.store.next_due() is None  # nothing for a worker to claim
    assert app.handled == []
    (warning,) = logged(caplog, payload["id"], level=logging.WARNING)
    assert warning == (
        f"stripe event {payload['id']} (billing.alert.triggered) kept as unparsed, not "
        f"dispatched: {NO_THRESHOLD}"
    )


async def test_a_chargebee_alert_without_its_status_is_kept_unparsed(url: str) -> None:
    app = App(url, "inline")
    payload = chargebee_alert_status_changed()
    del payload["content"]["alert_status"]
    async with app.client() as client:
        response = await client.deliver("chargebee", payload)
        assert (response.status_code, response.json()) == (200, {"status": "unparsed"})
        stored = await app.hooks.store.get("chargebee", payload["id"])
        assert stored is not None
        (marker,) = stored.outcomes
        assert (marker.handler, marker.status) == (UNPARSED_HANDLER, "unparsed")
        assert marker.last_error and "alert_status" in marker.last_error
    assert app.handled == []


async def test_a_metronome_alert_type_it_has_not_documented_is_kept_unparsed(url: str) -> None:
    app = App(url, "inline", providers=[Metronome(secret="metronome-secret")])
    payload = json.loads((FIXTURES / "metronome_usage_threshold_reached.json").read_text())
    payload["type"] = "alerts.seat_count_changed"  # any alerts.* type is an alert type
    async with app.client() as client:
        response = await client.deliver("metronome", payload)
        assert (response.status_code, response.json()) == (200, {"status": "unparsed"})
        (found,) = await app.hooks.store.events(status="unparsed")
    assert found.event_id == payload["id"]
    assert found.outcomes[0].last_error == (
        "event type 'alerts.seat_count_changed' is not a threshold notification"
    )


async def test_types_that_are_not_alerts_stay_ignored(
    url: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(url, mode)
    payload = stripe_customer_created()
    async with app.client() as client:
        with caplog.at_level(logging.INFO, logger="alerthooks"):
            response = await client.deliver("stripe", payload)
        assert (response.status_code, response.json()) == (200, {"status": "ignored"})
        stored = await app.hooks.store.get("stripe", payload["id"])
        assert stored is not None and stored.outcomes == ()
        assert await app.hooks.store.events(status="unparsed") == []
    assert logged(caplog, payload["id"], level=logging.INFO) == [
        f"stripe event {payload['id']} is not an alert: event type 'customer.created' is not "
        "an alert"
    ]
    assert logged(caplog, payload["id"], level=logging.WARNING) == []


# -- redeliveries -----------------------------------------------------------------------------


async def test_a_redelivery_of_an_unparsed_event_keeps_it_and_runs_nothing(
    url: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(url, mode)
    payload = spend_alert()
    async with app.client() as client:
        with caplog.at_level(logging.INFO, logger="alerthooks"):
            first = await client.deliver("stripe", payload)
            again = await client.deliver("stripe", payload)
        assert first.json() == again.json() == {"status": "unparsed"}
        assert again.status_code == 200
        stored = await app.hooks.store.get("stripe", payload["id"])
        assert stored is not None
        assert stored.outcomes == (Outcome(UNPARSED_HANDLER, "unparsed", 0, NO_THRESHOLD),)
    assert app.handled == []
    assert len(logged(caplog, "kept as unparsed", level=logging.WARNING)) == 1
    assert logged(caplog, f"{payload['id']} is a duplicate (unparsed)") != []


async def test_a_redelivery_that_reads_after_an_upgrade_runs_its_handlers_once(
    url: str, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = shared_store(url)
    payload = stripe_alert_triggered()
    before_upgrade = App(store, mode)
    with monkeypatch.context() as patched:
        patched.setattr(Stripe, "normalize", _cannot_read)
        async with before_upgrade.client() as client:
            assert (await client.deliver("stripe", payload)).json() == {"status": "unparsed"}
    upgraded = App(store, mode)
    async with upgraded.client() as client:
        first = await client.deliver("stripe", payload)
        assert first.status_code == 200
        assert first.json() == {"status": "accepted" if mode == "inline" else "duplicate"}
        again = await client.deliver("stripe", payload)
        assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
        stored = await store.get("stripe", payload["id"])
        assert stored is not None
        assert [(o.handler, o.status) for o in stored.outcomes] == [("record", "done")]
        assert await store.events(status="unparsed") == []
        # The alert state it sets is recorded too, though begin saw no new event.
        (state,) = await upgraded.hooks.alert_states()
        assert (state.event_id, state.state) == (payload["id"], "in_alarm")
    assert [e.id for e in upgraded.handled] == [payload["id"]]
    assert before_upgrade.handled == []


async def test_an_inline_redelivery_that_still_cannot_be_read_leases_nothing(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event stored with a failed handler, then delivered again by a build that cannot read
    it: the failed handler is not leased (it would sit running with nothing to run it)."""
    store = shared_store(url)
    payload = stripe_alert_triggered()
    failing = App(store, "inline")
    failing.hooks.dispatcher.add(_boom, "*", name="boom")
    async with failing.client() as client:
        assert (await client.deliver("stripe", payload)).status_code == 500
    with monkeypatch.context() as patched:
        patched.setattr(Stripe, "normalize", _cannot_read)
        async with App(store, "inline").client() as client:
            again = await client.deliver("stripe", payload)
            assert (again.status_code, again.json()) == (200, {"status": "unparsed"})
            stored = await store.get("stripe", payload["id"])
    assert stored is not None
    assert {o.handler: o.status for o in stored.outcomes} == {"record": "done", "boom": "failed"}


def _cannot_read(self: Provider, payload: dict[str, Any]) -> AlertEvent:
    raise NotAnAlert("a shape this build does not know")


def _boom(event: AlertEvent) -> None:
    raise RuntimeError("boom")


# -- the store's side ---------------------------------------------------------------------------


def unparsed_delivery(event_id: str = "evt_u", reason: str = "cannot read") -> Delivery:
    return Delivery(
        "stripe",
        event_id,
        "billing.alert.triggered",
        b'{"id": "evt_u"}',
        datetime.now(timezone.utc),
        (),
        unparsed=reason,
    )


async def test_resolve_unparsed_replaces_the_marker_by_pending_handlers_once(url: str) -> None:
    store = open_store(url)
    try:
        begun = await store.begin(unparsed_delivery(), owner="w", lease=60)
        assert (begun.new, begun.claimed, begun.busy) == (True, (), ())
        assert await store.resolve_unparsed("stripe", "evt_u", ["a", "b"])
        stored = await store.get("stripe", "evt_u")
        assert stored is not None
        assert [(o.handler, o.status) for o in stored.outcomes] == [
            ("a", "pending"),
            ("b", "pending"),
        ]
        assert not await store.resolve_unparsed("stripe", "evt_u", ["c"])
        assert not await store.resolve_unparsed("stripe", "evt_none", ["c"])
        claims = await store.claim(owner="w", lease=60, limit=10)
        assert sorted(c.handler for c in claims) == ["a", "b"]
        again = await store.get("stripe", "evt_u")
        assert again is not None and {o.handler for o in again.outcomes} == {"a", "b"}
    finally:
        await store.close()


async def test_an_event_resolved_with_no_handler_has_no_outcome_left(url: str) -> None:
    store = open_store(url)
    try:
        await store.begin(unparsed_delivery(), owner="w", lease=60)
        assert await store.resolve_unparsed("stripe", "evt_u", [])
        stored = await store.get("stripe", "evt_u")
        assert stored is not None and stored.outcomes == ()
        assert await store.events(status="unparsed") == []
    finally:
        await store.close()


async def test_unparsed_events_are_never_claimed_and_never_pruned(url: str) -> None:
    store = open_store(url)
    try:
        await store.begin(unparsed_delivery(), owner="w", lease=60)
        await store.begin(unparsed_delivery(), owner="w", lease=60, claim=False)
        assert await store.claim(owner="w", lease=60, limit=10) == []
        assert await store.next_due() is None
        assert await store.replay(["evt_u"]) == 0
        assert await store.replay(dead=True, failed=True) == 0
        assert await store.prune(before=datetime.now(timezone.utc) + timedelta(days=1)) == 0
        (kept,) = await store.events(status="unparsed")
        assert kept.outcomes == (Outcome(UNPARSED_HANDLER, "unparsed", 0, "cannot read"),)
    finally:
        await store.close()


async def test_a_redelivery_that_reads_drops_the_marker_in_the_store(url: str) -> None:
    store = open_store(url)
    try:
        await store.begin(unparsed_delivery(), owner="w", lease=60)
        parsed = unparsed_delivery()._replace(handlers=("a",), unparsed=None)
        begun = await store.begin(parsed, owner="w", lease=60)
        assert (begun.new, begun.claimed) == (False, ("a",))
        stored = await store.get("stripe", "evt_u")
        assert stored is not None
        assert [(o.handler, o.status) for o in stored.outcomes] == [("a", "running")]
    finally:
        await store.close()


# -- the names ----------------------------------------------------------------------------------


def test_the_marker_name_is_reserved_for_handlers() -> None:
    with pytest.raises(ValueError, match="reserved"):
        Dispatcher().add(_boom, "*", name=UNPARSED_HANDLER)


def test_is_alert_type_is_membership_in_alert_types_by_default() -> None:
    stripe = Stripe("whsec_x")
    assert stripe.is_alert_type("billing.alert.triggered")
    assert not stripe.is_alert_type("customer.created")
    assert not stripe.is_alert_type(None)
    metronome = Metronome(secret="m")
    assert metronome.is_alert_type("alerts.anything_new")
    assert not metronome.is_alert_type("invoice.finalized")


class Limits(Provider):
    """A provider whose alerts are a family of types (``limit.*``), unsigned for the test."""

    name = "limits"

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        pass

    def sign(self, body: bytes) -> dict[str, str]:
        return {}

    def is_alert_type(self, event_type: str | None) -> bool:
        return bool(event_type and event_type.startswith("limit."))

    def normalize(self, payload: dict[str, Any]) -> AlertEvent:
        raise NotAnAlert(f"no normalizer for {payload.get('type')}")


async def test_the_receiver_asks_the_provider_which_types_are_alerts() -> None:
    app = App("memory://", "inline", providers=[Limits()])
    async with app.client() as client:
        kept = await client.deliver("limits", {"id": "l_1", "type": "limit.hit"})
        ignored = await client.deliver("limits", {"id": "l_2", "type": "user.created"})
        assert kept.json() == {"status": "unparsed"}
        assert ignored.json() == {"status": "ignored"}
        (found,) = await app.hooks.store.events(status="unparsed")
    assert found.event_id == "l_1"
    assert found.outcomes[0].last_error == "no normalizer for limit.hit"


async def test_observers_see_the_unparsed_outcome() -> None:
    seen: list[Seen] = []

    class Watch(Observer):
        def delivery_scope(self, delivery: Seen) -> contextlib.AbstractContextManager[object]:
            seen.append(delivery)
            return contextlib.nullcontext()

    app = App("memory://", "inline")
    app.hooks.observe(Watch())
    payload = spend_alert()
    async with app.client() as client:
        await client.deliver("stripe", payload)
    ((event_id, status, outcome),) = [(s.event_id, s.status, s.outcome) for s in seen]
    assert (event_id, status, outcome) == (payload["id"], 200, "unparsed")
