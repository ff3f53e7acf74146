"""Every alert the providers send: usage, spend and credit balance; triggered and recovered;
snapshot and thin. Each new shape from ``fixtures/`` is delivered through the ASGI app,
normalized field by field as the handler sees it, and leaves its alert state."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from alerthooks import AlertEvent, AlertHooks
from alerthooks.events import ALERT_KINDS
from alerthooks.providers import BUILTIN, NotAnAlert
from alerthooks.providers.metronome import Metronome
from alerthooks.providers.orb import Orb
from alerthooks.providers.stripe import Stripe, normalize
from alerthooks.testing import AlertHooksClient, build_sample, sample_names
from alerthooks.testing.fakes import FakeStripe
from alerthooks.testing.samples import samples

from .conftest import load_fixture, post_stripe
from .helpers import make_hooks, recorded


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


async def _deliver(hooks: AlertHooks, provider: str, payload: dict[str, Any]) -> dict[str, Any]:
    async with AlertHooksClient(hooks) as client:
        response = await client.deliver(provider, payload)
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()
    return answer


def _states(found: list[Any]) -> list[tuple[str, str | None, str | None, str]]:
    return [(s.alert_id, s.customer_id, s.subscription_id, s.state) for s in found]


# -- Stripe: the three alert types, triggered and recovered -------------------------------------


async def test_stripe_credit_balance_alert_triggered_puts_the_customer_in_alarm() -> None:
    hooks = make_hooks()
    seen = recorded(hooks)
    payload = load_fixture("stripe_alert_triggered_credit_balance")
    assert await _deliver(hooks, "stripe", payload) == {"status": "accepted"}
    (event,) = seen
    assert event.model_dump(exclude={"raw"}) == {
        "id": "evt_1TcB4xLkdIwHu7ixR8pV2mQe",
        "provider": "stripe",
        "type": "alert.triggered",
        "alert_id": "alrt_61TcA9bC3dEfGhJk41LkdIwHu7ixQw1",
        "kind": "credit_balance",
        "alert_name": "Prepaid credits below $10",
        "meter_id": None,
        "customer_id": "cus_TcA2mPq7RvXy3N",
        "external_customer_id": "acct-4412",
        "subscription_id": None,
        "threshold": Decimal(1000),  # lte.monetary.value: cents, as Stripe states it
        "threshold_mode": "absolute",
        "value": Decimal(950),
        "occurred_at": _utc(1784520000),
        "livemode": False,
        "alert_type": "credit_balance_threshold",
        "currency": "usd",
        "triggered_at": _utc(1784519990),
        "alert_key": "credits-low",
    }
    assert event.raw == payload
    assert _states(await hooks.alert_states()) == [
        ("alrt_61TcA9bC3dEfGhJk41LkdIwHu7ixQw1", "cus_TcA2mPq7RvXy3N", None, "in_alarm")
    ]


async def test_stripe_recovered_clears_the_alert_and_sets_it_back_within_limit() -> None:
    hooks = make_hooks()
    seen = recorded(hooks, "alert.cleared")
    await _deliver(hooks, "stripe", load_fixture("stripe_alert_triggered_credit_balance"))
    recovered = load_fixture("stripe_alert_recovered")
    assert await _deliver(hooks, "stripe", recovered) == {"status": "accepted"}
    (event,) = seen
    assert (event.type, event.kind, event.id) == (
        "alert.cleared",
        "credit_balance",
        "evt_1TcD7kLkdIwHu7ixW3nZ5tYa",
    )
    assert (event.threshold, event.value, event.currency) == (Decimal(1000), Decimal(5950), "usd")
    assert (event.customer_id, event.external_customer_id) == ("cus_TcA2mPq7RvXy3N", "acct-4412")
    assert event.triggered_at is None
    (state,) = await hooks.alert_states()
    assert (state.state, state.event_id, state.since) == (
        "within_limit",
        "evt_1TcD7kLkdIwHu7ixW3nZ5tYa",
        _utc(1784606400),
    )


async def test_stripe_recovered_arriving_before_its_trigger_still_ends_within_limit() -> None:
    hooks = make_hooks()
    await _deliver(hooks, "stripe", load_fixture("stripe_alert_recovered"))
    await _deliver(hooks, "stripe", load_fixture("stripe_alert_triggered_credit_balance"))
    assert [s.state for s in await hooks.alert_states()] == ["within_limit"]


async def test_stripe_spend_alert_triggered() -> None:
    hooks = make_hooks()
    seen = recorded(hooks)
    assert await _deliver(hooks, "stripe", load_fixture("stripe_alert_triggered_spend")) == {
        "status": "accepted"
    }
    (event,) = seen
    assert (event.kind, event.alert_type, event.type) == (
        "spend",
        "spend_threshold",
        "alert.triggered",
    )
    assert (event.threshold, event.threshold_mode, event.currency) == (
        Decimal(50000),
        "absolute",
        "usd",
    )
    assert event.value == Decimal(50125)
    assert (event.customer_id, event.external_customer_id, event.meter_id) == (
        "cus_TcB4nRw8QsZy6P",
        None,
        None,
    )
    assert event.subscription_id is None  # group_by stays in raw
    assert event.raw["data"]["object"]["group_by"]["type"] == "pricing_plan_subscription"
    assert _states(await hooks.alert_states()) == [
        ("alrt_61TcB7xY2zWvUt8s41LkdIwHu7ixMe5", "cus_TcB4nRw8QsZy6P", None, "in_alarm")
    ]


async def test_stripe_usage_alert_is_of_kind_usage() -> None:
    event = normalize(load_fixture("stripe_alert_triggered_preview"))
    assert (event.kind, event.meter_id) == ("usage", "mtr_test_61TkP1mZ4xVbQ2aRk41LkdIwHu7ixWq9")
    assert event.external_customer_id is None
    assert normalize(load_fixture("stripe_alert_triggered_legacy")).kind == "usage"


def _custom_unit(config: dict[str, Any], key: str) -> None:
    config[key] = {
        "type": "custom_pricing_unit",
        "balance_type": "custom_pricing_unit",
        "amount": None,
        "monetary": None,
        "custom_pricing_unit": {"id": "cpu_61TcC0aB", "value": "12.5"},
    }


@pytest.mark.parametrize(
    ("fixture", "config", "key"),
    [
        ("stripe_alert_triggered_credit_balance", "credit_balance_threshold", "lte"),
        ("stripe_alert_triggered_spend", "spend_threshold", "gte"),
    ],
)
def test_a_custom_pricing_unit_threshold_is_its_decimal_value_without_a_currency(
    fixture: str, config: str, key: str
) -> None:
    payload = load_fixture(fixture)
    obj = payload["data"]["object"]
    _custom_unit(obj["alert"][config], key)
    obj["currency"] = None
    obj["custom_pricing_unit"] = "cpu_61TcC0aB"
    event = normalize(payload)
    assert (event.threshold, event.currency) == (Decimal("12.5"), None)
    assert event.raw["data"]["object"]["custom_pricing_unit"] == "cpu_61TcC0aB"


@pytest.mark.parametrize(
    "fixture", ["stripe_alert_triggered_credit_balance", "stripe_alert_triggered_spend"]
)
def test_currency_comes_from_the_threshold_amount_when_the_event_has_none(fixture: str) -> None:
    payload = load_fixture(fixture)
    payload["data"]["object"]["currency"] = None
    assert normalize(payload).currency == "usd"


def test_customer_comes_from_the_credit_balance_filter_when_the_event_has_none() -> None:
    payload = load_fixture("stripe_alert_triggered_credit_balance")
    del payload["data"]["object"]["customer"]
    assert normalize(payload).customer_id == "cus_TcA2mPq7RvXy3N"
    payload["data"]["object"]["alert"]["credit_balance_threshold"]["filters"] = {"x": 1}
    with pytest.raises(NotAnAlert, match=r"credit_balance_threshold\.filters is not a list"):
        normalize(payload)


def test_an_alert_type_stripe_adds_later_is_kind_other_without_a_threshold() -> None:
    payload = load_fixture("stripe_alert_triggered_spend")
    alert = payload["data"]["object"]["alert"]
    alert["alert_type"] = "seat_threshold"
    alert["seat_threshold"] = {"gte": 10}
    event = normalize(payload)
    assert (event.kind, event.alert_type, event.threshold, event.threshold_mode) == (
        "other",
        "seat_threshold",
        None,
        None,
    )
    assert event.currency == "usd"  # the event's own


@pytest.mark.parametrize(
    ("fixture", "mutate", "reason"),
    [
        (
            "stripe_alert_triggered_credit_balance",
            lambda a: a.update(credit_balance_threshold=None),
            "alert.credit_balance_threshold is missing for an alert of type "
            "credit_balance_threshold",
        ),
        (
            "stripe_alert_triggered_credit_balance",
            lambda a: a["credit_balance_threshold"]["lte"].update(monetary=None),
            r"credit_balance_threshold\.lte\.monetary is missing",
        ),
        (
            "stripe_alert_triggered_credit_balance",
            lambda a: a["credit_balance_threshold"]["lte"]["monetary"].update(value="10"),
            r"lte\.monetary\.value is not a number",
        ),
        (
            "stripe_alert_triggered_spend",
            lambda a: a["spend_threshold"].update(gte=5),
            r"spend_threshold\.gte is missing or not an object",
        ),
        (
            "stripe_alert_triggered_spend",
            lambda a: a["spend_threshold"]["gte"]["amount"].update(currency=None),
            r"spend_threshold\.gte\.amount\.currency is missing",
        ),
        (
            "stripe_alert_triggered_spend",
            lambda a: a["spend_threshold"].update(filters=["bpp_1"]),
            r"spend_threshold\.filters is not an object",
        ),
    ],
)
def test_a_malformed_spend_or_credit_balance_alert_is_not_an_alert_with_a_reason(
    fixture: str, mutate: Callable[[dict[str, Any]], Any], reason: str
) -> None:
    payload = load_fixture(fixture)
    mutate(payload["data"]["object"]["alert"])
    with pytest.raises(NotAnAlert, match=reason):
        normalize(payload)


# -- Chargebee, Orb, Metronome: kinds ---------------------------------------------------------


async def test_chargebee_credit_balance_dropped_puts_the_subscription_in_alarm() -> None:
    hooks = make_hooks()
    seen = recorded(hooks)
    payload = load_fixture("chargebee_alert_credit_balance_dropped")
    assert await _deliver(hooks, "chargebee", payload) == {"status": "accepted"}
    (event,) = seen
    assert (event.kind, event.alert_type, event.type) == (
        "credit_balance",
        "credit_balance_dropped",
        "alert.triggered",
    )
    assert (event.threshold, event.threshold_mode, event.currency) == (
        Decimal(1000),
        "absolute",
        "USD",
    )
    assert (event.subscription_id, event.meter_id, event.triggered_at) == (
        "B0dJ8mUcR5k1p7Wa",
        None,
        _utc(1785099990),
    )
    assert _states(await hooks.alert_states()) == [
        ("alert_16BzR4UcQ9nWp2Kd", None, "B0dJ8mUcR5k1p7Wa", "in_alarm")
    ]
    cleared = load_fixture("chargebee_alert_credit_balance_dropped")
    cleared["id"] = "ev_B0dK9qUcS1n4r2Yf"
    cleared["occurred_at"] += 60
    cleared["content"]["alert_status"]["alarm_status"] = "within_limit"
    await _deliver(hooks, "chargebee", cleared)
    assert [s.state for s in await hooks.alert_states()] == ["within_limit"]


@pytest.mark.parametrize(
    ("alert_type", "kind"),
    [
        ("usage_exceeded", "usage"),
        ("spend_exceeded", "spend"),
        ("credit_balance_dropped", "credit_balance"),
        ("seats_exceeded", "other"),
        (None, "other"),
    ],
)
def test_chargebee_alert_type_gives_the_kind(alert_type: str | None, kind: str) -> None:
    from alerthooks.providers.chargebee import normalize as chargebee_normalize

    payload = load_fixture("chargebee_alert_in_alarm")
    payload["content"]["alert"]["type"] = alert_type
    assert chargebee_normalize(payload).kind == kind


@pytest.mark.parametrize(
    ("sample", "kind", "external"),
    [
        ("orb_subscription_usage_exceeded", "usage", "acme-corp"),
        ("orb_subscription_cost_exceeded", "spend", "acme-corp"),
        ("orb_customer_credit_balance_dropped", "credit_balance", "acme-corp"),
        ("orb_customer_credit_balance_depleted", "credit_balance", "acme-corp"),
        ("orb_customer_credit_balance_recovered", "credit_balance", "acme-corp"),
        ("metronome_usage_threshold_reached", "usage", None),
        ("metronome_usage_threshold_resolved", "usage", None),
        ("metronome_spend_threshold_reached", "spend", None),
        ("metronome_low_remaining_credit_balance_reached", "credit_balance", None),
    ],
)
def test_orb_and_metronome_samples_have_their_kind(
    sample: str, kind: str, external: str | None
) -> None:
    provider = Orb if sample.startswith("orb") else Metronome
    event = provider(secret="s").normalize(build_sample(sample))
    assert (event.kind, event.external_customer_id) == (kind, external)


def test_every_alert_sample_of_every_provider_has_a_kind() -> None:
    providers = {cls.name: cls for cls in BUILTIN}
    kinds: dict[str, set[str]] = {}
    for sample in samples():
        provider = providers[sample.provider]()  # normalize needs no credentials
        try:
            event = provider.normalize(build_sample(sample.name))
        except NotAnAlert:
            continue
        assert event.kind in ALERT_KINDS
        kinds.setdefault(sample.provider, set()).add(event.kind)
    assert kinds == {
        "stripe": {"usage", "spend", "credit_balance"},
        "chargebee": {"usage", "spend", "credit_balance"},
        "orb": {"usage", "spend", "credit_balance"},
        "metronome": {"usage", "spend", "credit_balance"},
        "lago": {"usage", "spend", "credit_balance"},
        "openmeter": {"usage", "credit_balance"},
        "autumn": {"usage", "credit_balance"},
        "flexprice": {"usage", "spend", "credit_balance"},
    }


# -- the kind filter ----------------------------------------------------------------------------


async def test_kind_filter_picks_the_handlers() -> None:
    hooks = make_hooks()
    low: list[AlertEvent] = []
    usage_or_spend: list[AlertEvent] = []
    hooks.on("alert.triggered", kind="credit_balance")(low.append)
    hooks.add_handler(usage_or_spend.append, "*", kind={"usage", "spend"}, name="money")
    for name in (
        "stripe_alert_triggered",
        "stripe_alert_triggered_credit_balance",
        "stripe_alert_triggered_spend",
        "stripe_alert_recovered",
    ):
        await _deliver(hooks, "stripe", build_sample(name))
    await _deliver(hooks, "chargebee", build_sample("chargebee_alert_credit_balance_dropped"))
    assert [(e.provider, e.type) for e in low] == [
        ("stripe", "alert.triggered"),
        ("chargebee", "alert.triggered"),
    ]
    assert [e.kind for e in usage_or_spend] == ["usage", "spend"]


@pytest.mark.parametrize("kind", ["credit", "Usage", "", ("usage", "balance")])
def test_a_kind_outside_the_four_is_a_value_error_at_registration(kind: Any) -> None:
    hooks = make_hooks()
    with pytest.raises(ValueError, match="kind="):
        hooks.on("alert.triggered", kind=kind)(lambda event: None)
    assert hooks.dispatcher.handlers == []


# -- thin events ----------------------------------------------------------------------------------


async def test_a_thin_event_without_an_api_key_is_kept_unparsed_with_its_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    hooks = make_hooks()
    seen = recorded(hooks)
    thin = load_fixture("stripe_thin_alert_triggered")
    assert await _deliver(hooks, "stripe", thin) == {"status": "unparsed"}
    assert seen == []
    (kept,) = await hooks.store.events(status="unparsed")
    assert (kept.event_id, kept.event_type) == (thin["id"], "v1.billing.alert.triggered")
    assert kept.outcomes[0].last_error == "thin event: set STRIPE_API_KEY to read it"
    assert json.loads(kept.body) == thin


async def test_a_thin_event_stripe_adds_later_is_kept_too_and_other_thin_events_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    hooks = make_hooks()
    later = load_fixture("stripe_thin_alert_triggered")
    later["id"], later["type"] = "evt_test_65later", "v1.billing.alert.recovered"
    other = load_fixture("stripe_thin_alert_triggered")
    other["id"], other["type"] = "evt_test_65other", "v1.billing.meter.error_report_triggered"
    assert await _deliver(hooks, "stripe", later) == {"status": "unparsed"}
    assert await _deliver(hooks, "stripe", other) == {"status": "ignored"}


async def test_a_thin_event_with_a_bad_signature_is_rejected_before_any_read() -> None:
    hooks = make_hooks()
    async with AlertHooksClient(hooks) as client:
        thin = load_fixture("stripe_thin_alert_triggered")
        response = await post_stripe(client, thin, secret="whsec_another")
    assert response.status_code == 400
    assert await hooks.store.events() == []


def test_samples_offer_every_new_shape() -> None:
    assert {
        "stripe_alert_triggered_credit_balance",
        "stripe_alert_triggered_spend",
        "stripe_alert_recovered",
        "stripe_thin_alert_triggered",
        "chargebee_alert_credit_balance_dropped",
    } <= set(sample_names())


def test_fixtures_are_the_samples_as_stored() -> None:
    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    for sample in samples("stripe"):
        assert sample.path == fixtures / f"{sample.name}.json"


def test_only_a_thin_alert_event_refers_to_another() -> None:
    stripe = Stripe()
    assert stripe.refers(load_fixture("stripe_thin_alert_triggered"))
    assert not stripe.refers(load_fixture("stripe_alert_triggered_credit_balance"))
    other_thin = {**load_fixture("stripe_thin_alert_triggered"), "type": "v1.billing.meter.x"}
    assert not stripe.refers(other_thin)
    assert Stripe().is_alert_type("billing.alert.recovered")
    assert Stripe().is_alert_type("v1.billing.alert.triggered")
    assert not Stripe().is_alert_type("v1.billing.meter.error_report_triggered")


# -- thin events read from Stripe's API (the fake) ------------------------------------------------


@pytest.fixture(scope="module")
def fake_stripe() -> Iterator[FakeStripe]:
    with FakeStripe() as api:
        yield api


@pytest.fixture
def stripe_api(fake_stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch) -> FakeStripe:
    fake_stripe.reset()
    for name, value in fake_stripe.env().items():
        monkeypatch.setenv(name, value)
    return fake_stripe


def _calls(api: FakeStripe) -> tuple[int, int]:
    return api.calls["GET /v2/core/events/{id}"], api.calls["GET /v1/events/{id}"]


@pytest.mark.parametrize("mode", ["inline", "queued"])
async def test_a_thin_event_is_read_from_the_api_and_normalized_like_its_snapshot(
    stripe_api: FakeStripe, mode: str
) -> None:
    hooks = make_hooks(mode=mode)
    seen = recorded(hooks)
    snapshot = load_fixture("stripe_alert_triggered_credit_balance")
    thin = stripe_api.add_thin_event(snapshot)
    assert "snapshot_event" not in thin
    assert await _deliver(hooks, "stripe", thin) == {"status": "accepted"}
    assert _calls(stripe_api) == (1, 1)
    (event,) = seen
    assert event == normalize(snapshot)  # the snapshot's id, kind, threshold, raw...
    assert (event.id, event.kind) == (snapshot["id"], "credit_balance")
    stored = await hooks.store.get("stripe", snapshot["id"])
    assert stored is not None and json.loads(stored.body) == snapshot
    assert await hooks.store.get("stripe", thin["id"]) is None
    assert [s.state for s in await hooks.alert_states()] == ["in_alarm"]
    await hooks.shutdown()


@pytest.mark.parametrize("thin_first", [True, False])
async def test_a_thin_and_a_snapshot_delivery_of_one_alert_run_handlers_once(
    stripe_api: FakeStripe, thin_first: bool
) -> None:
    hooks = make_hooks()
    seen = recorded(hooks)
    snapshot = build_sample("stripe_alert_triggered_spend")
    thin = stripe_api.add_thin_event(snapshot)
    first, second = (thin, snapshot) if thin_first else (snapshot, thin)
    assert await _deliver(hooks, "stripe", first) == {"status": "accepted"}
    assert await _deliver(hooks, "stripe", second) == {"status": "duplicate"}
    assert [e.id for e in seen] == [snapshot["id"]]
    await hooks.shutdown()


async def test_a_recovered_thin_event_clears_the_alert(stripe_api: FakeStripe) -> None:
    hooks = make_hooks()
    await _deliver(hooks, "stripe", load_fixture("stripe_alert_triggered_credit_balance"))
    thin = stripe_api.add_thin_event(load_fixture("stripe_alert_recovered"))
    assert thin["type"] == "v1.billing.alert.recovered"
    assert await _deliver(hooks, "stripe", thin) == {"status": "accepted"}
    assert [s.state for s in await hooks.alert_states()] == ["within_limit"]
    await hooks.shutdown()


async def test_the_api_is_read_with_the_managers_retry_policy(stripe_api: FakeStripe) -> None:
    hooks = make_hooks()
    thin = stripe_api.add_thin_event(build_sample("stripe_alert_triggered_credit_balance"))
    stripe_api.inject("500", path="/v2/core/events/{id}", times=1)
    stripe_api.inject("429", path="/v1/events/{id}", times=1)
    assert await _deliver(hooks, "stripe", thin) == {"status": "accepted"}
    assert _calls(stripe_api) == (2, 2)
    await hooks.shutdown()


@pytest.mark.parametrize(
    ("break_it", "reason"),
    [
        (
            lambda api, thin: (
                api.reset(),
                api.add_thin_event(thin_snapshot(), id=thin["id"], keep_snapshot=False),
            ),
            "thin event: Stripe's API could not give it: ",
        ),
        (
            lambda api, thin: api.reset(),
            "thin event: Stripe's API could not give it: ",
        ),
    ],
    ids=["snapshot-missing", "thin-event-unknown"],
)
async def test_a_thin_event_the_api_cannot_give_is_kept_unparsed_and_read_by_replay(
    stripe_api: FakeStripe,
    break_it: Callable[[FakeStripe, dict[str, Any]], Any],
    reason: str,
) -> None:
    hooks = make_hooks()
    seen = recorded(hooks)
    snapshot = thin_snapshot()
    thin = stripe_api.add_thin_event(snapshot)
    break_it(stripe_api, thin)
    assert await _deliver(hooks, "stripe", thin) == {"status": "unparsed"}
    (kept,) = await hooks.store.events(status="unparsed")
    assert kept.event_id == thin["id"]
    assert (kept.outcomes[0].last_error or "").startswith(reason)
    assert seen == []
    # Once the API answers, replay --unparsed reads it.
    stripe_api.reset()
    stripe_api.add_thin_event(snapshot, id=thin["id"])
    read = await hooks.read_again("stripe", thin["id"])
    assert read == (seen_name(hooks),)
    assert getattr(read, "event_id", None) == snapshot["id"]
    await hooks.drain()
    assert [(e.id, e.kind) for e in seen] == [(snapshot["id"], "credit_balance")]
    assert await hooks.store.events(status="unparsed") == []
    assert [s.state for s in await hooks.alert_states()] == ["in_alarm"]
    await hooks.shutdown()


async def test_a_thin_event_read_with_a_key_stripe_refuses_is_kept_unparsed(
    stripe_api: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_revoked")
    hooks = make_hooks()
    thin = stripe_api.add_thin_event(build_sample("stripe_alert_triggered_spend"))
    assert await _deliver(hooks, "stripe", thin) == {"status": "unparsed"}
    (kept,) = await hooks.store.events(status="unparsed")
    assert kept.outcomes[0].last_error == (
        "thin event: Stripe's API could not give it: stripe: retrieve thin event: HTTP 401: "
        "invalid API key"
    )
    assert _calls(stripe_api) == (1, 0)  # refused: not retried
    await hooks.shutdown()


async def test_replay_of_a_thin_event_already_received_whole_runs_nothing(
    stripe_api: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = make_hooks()
    seen = recorded(hooks)
    snapshot = build_sample("stripe_alert_triggered_credit_balance")
    thin = stripe_api.add_thin_event(snapshot)
    with monkeypatch.context() as no_key:
        no_key.delenv("STRIPE_API_KEY")
        assert await _deliver(hooks, "stripe", thin) == {"status": "unparsed"}
    assert await _deliver(hooks, "stripe", snapshot) == {"status": "accepted"}
    assert await hooks.read_again("stripe", thin["id"]) == ()
    await hooks.drain()
    assert [e.id for e in seen] == [snapshot["id"]]
    assert await hooks.store.events(status="unparsed") == []
    await hooks.shutdown()


def thin_snapshot() -> dict[str, Any]:
    """The snapshot the unreadable thin events stand for (one id, so a test can re-add it)."""
    return load_fixture("stripe_alert_triggered_credit_balance")


def seen_name(hooks: AlertHooks) -> str:
    (handler,) = hooks.dispatcher.handlers
    return handler.name


async def test_the_fake_api_answers_as_the_fixtures_say(stripe_api: FakeStripe) -> None:
    """The thin fixture, and the API's answers to its two reads, are what the fake gives."""
    snapshot = load_fixture("stripe_alert_triggered_credit_balance")
    thin_fixture = load_fixture("stripe_thin_alert_triggered")
    thin = stripe_api.add_thin_event(snapshot, id=thin_fixture["id"])
    assert thin == thin_fixture
    headers = {"Authorization": f"Bearer {stripe_api.api_key}"}
    async with httpx.AsyncClient(base_url=stripe_api.url, headers=headers) as api:
        v2 = await api.get(f"/v2/core/events/{thin['id']}")
        v1 = await api.get(f"/v1/events/{v2.json()['snapshot_event']}")
    assert v2.json() == load_fixture("stripe_thin_alert_triggered_event")
    assert v1.json() == snapshot
