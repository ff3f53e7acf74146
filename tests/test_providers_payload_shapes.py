"""Every payload shape the providers send, from ``fixtures/``, delivered through the ASGI app:
answered 200, dispatched once, and normalized field by field as the handler sees it."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest

from alerthooks import AlertEvent, AlertHooks

from .conftest import load_fixture, post_chargebee, post_stripe


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


@pytest.fixture
def seen(hooks: AlertHooks) -> list[AlertEvent]:
    events: list[AlertEvent] = []

    @hooks.on("*")
    async def record(event: AlertEvent) -> None:
        events.append(event)

    return events


async def _deliver(client: httpx.AsyncClient, payload: dict[str, Any]) -> httpx.Response:
    if "event_type" in payload:
        payload["occurred_at"] = int(time.time())
        return await post_chargebee(client, payload)
    payload["created"] = int(time.time())
    return await post_stripe(client, payload)


async def _one_event(
    client: httpx.AsyncClient, seen: list[AlertEvent], payload: dict[str, Any]
) -> AlertEvent:
    response = await _deliver(client, payload)
    assert response.status_code == 200
    assert response.json() == {"status": "accepted"}
    assert [e.id for e in seen] == [payload["id"]]
    assert seen[0].raw == payload
    return seen[0]


# -- Stripe -------------------------------------------------------------------------------------


async def test_stripe_preview_decimal_string_value_and_new_fields(
    client: httpx.AsyncClient, seen: list[AlertEvent]
) -> None:
    event = await _one_event(client, seen, load_fixture("stripe_alert_triggered_preview"))
    assert event.value == Decimal("1000012.75")
    assert event.threshold == Decimal(1000000)
    assert event.meter_id == "mtr_test_61TkP1mZ4xVbQ2aRk41LkdIwHu7ixWq9"
    assert event.customer_id == "cus_SgP1c8vKq2XyLm"
    assert event.alert_type == "usage_threshold"
    assert event.currency is None
    assert event.triggered_at == _utc(1756300790)
    assert event.alert_name == "API calls reached 1M"
    assert event.alert_key == "api-1m"
    assert event.livemode is False


async def test_stripe_alert_of_api_versions_before_2024_09_30(
    client: httpx.AsyncClient, seen: list[AlertEvent]
) -> None:
    event = await _one_event(client, seen, load_fixture("stripe_alert_triggered_legacy"))
    assert event.type == "alert.triggered"
    assert event.alert_id == "alrt_61QkXq2Lm9vTn4bHd41LkdIwHu7ixPr7"
    assert event.alert_name == "Storage over 500 GB"
    assert event.alert_key is None
    assert event.meter_id == "mtr_61QkXo8Rt5wYp3cJd41LkdIwHu7ixMn4"
    assert event.threshold == Decimal(500)
    assert event.threshold_mode == "absolute"
    assert event.value == Decimal(512)
    assert event.customer_id == "cus_QbX4n7TqLz2Vw8"
    assert event.alert_type == "usage_threshold"
    assert event.triggered_at is None
    assert event.livemode is True


async def test_stripe_expanded_meter_and_null_filters(
    client: httpx.AsyncClient, seen: list[AlertEvent]
) -> None:
    payload = load_fixture("stripe_alert_triggered_expanded_meter")
    assert payload["data"]["object"]["alert"]["usage_threshold"]["filters"] is None
    event = await _one_event(client, seen, payload)
    assert event.meter_id == "mtr_test_61RbXnWq3yvPFjRKj41LkdIwHu7ixT0a"
    assert event.customer_id == "cus_RUqAz0yQ3bXk1T"
    assert event.value == Decimal("1500212.5")
    assert event.alert_key is None


@pytest.mark.parametrize(
    ("fixture", "customer"),
    [
        ("stripe_alert_triggered", "cus_RUq8gEVcyMSAOp"),  # usage_threshold.filters
        ("stripe_alert_triggered_legacy", "cus_QbX4n7TqLz2Vw8"),  # filter
        ("stripe_alert_triggered_expanded_meter", None),  # filters null: not scoped
    ],
)
async def test_stripe_customer_falls_back_to_the_alert_filter(
    client: httpx.AsyncClient, seen: list[AlertEvent], fixture: str, customer: str | None
) -> None:
    payload = load_fixture(fixture)
    del payload["data"]["object"]["customer"]
    event = await _one_event(client, seen, payload)
    assert event.customer_id == customer


async def test_stripe_expanded_customer_in_filters_gives_its_id(
    client: httpx.AsyncClient, seen: list[AlertEvent]
) -> None:
    payload = load_fixture("stripe_alert_triggered")
    del payload["data"]["object"]["customer"]
    threshold = payload["data"]["object"]["alert"]["usage_threshold"]
    threshold["filters"] = [{"type": "customer", "customer": {"id": "cus_X", "object": "customer"}}]
    event = await _one_event(client, seen, payload)
    assert event.customer_id == "cus_X"


async def test_stripe_currency_is_read_where_present(
    client: httpx.AsyncClient, seen: list[AlertEvent]
) -> None:
    payload = load_fixture("stripe_alert_triggered_preview")
    payload["data"]["object"]["currency"] = "usd"
    event = await _one_event(client, seen, payload)
    assert event.currency == "usd"


# -- Chargebee ----------------------------------------------------------------------------------


async def test_chargebee_status_under_its_former_name_alert_status(
    client: httpx.AsyncClient, seen: list[AlertEvent]
) -> None:
    payload = load_fixture("chargebee_alert_in_alarm_legacy_status")
    assert "alarm_status" not in payload["content"]["alert_status"]
    event = await _one_event(client, seen, payload)
    assert event.type == "alert.triggered"
    assert event.alert_id == "alert_169k2mUaZ0pWq7L1"
    assert event.alert_type == "usage_exceeded"
    assert event.meter_id == "seats"
    assert event.subscription_id == "AzZk3pUaYzR5f1Hb"
    # Alerts of that API carried no threshold.
    assert event.threshold is None
    assert event.threshold_mode is None
    assert event.triggered_at == _utc(1746000590)
    assert event.currency is None
    assert event.alert_key is None


async def test_chargebee_former_status_name_clears_too(
    client: httpx.AsyncClient, seen: list[AlertEvent]
) -> None:
    payload = load_fixture("chargebee_alert_in_alarm_legacy_status")
    payload["content"]["alert_status"]["alert_status"] = "within_limit"
    event = await _one_event(client, seen, payload)
    assert event.type == "alert.cleared"


async def test_chargebee_global_spend_alert_with_currency_and_no_feature(
    client: httpx.AsyncClient, seen: list[AlertEvent]
) -> None:
    payload = load_fixture("chargebee_alert_spend_exceeded")
    assert "subscription_id" not in payload["content"]["alert"]
    event = await _one_event(client, seen, payload)
    assert event.alert_type == "spend_exceeded"
    assert event.currency == "USD"
    assert event.meter_id is None
    assert event.threshold == Decimal(50000)
    assert event.threshold_mode == "absolute"
    # The subscription that crossed the global alert's threshold.
    assert event.subscription_id == "B0cS2kUcPz8Vh5Qe"
    # alarm_triggered_at is null.
    assert event.triggered_at is None
    # The manager's key from meta.
    assert event.alert_name == "Monthly spend over $500"
    assert event.alert_key == "spend-500"


@pytest.mark.parametrize("absent", ["missing", "null"])
async def test_chargebee_alert_without_a_threshold_is_delivered(
    client: httpx.AsyncClient, seen: list[AlertEvent], absent: str
) -> None:
    payload = load_fixture("chargebee_alert_spend_exceeded")
    if absent == "missing":
        del payload["content"]["alert"]["threshold"]
    else:
        payload["content"]["alert"]["threshold"] = None
    event = await _one_event(client, seen, payload)
    assert event.type == "alert.triggered"
    assert event.alert_type == "spend_exceeded"
    assert event.threshold is None
    assert event.threshold_mode is None


async def test_chargebee_usage_alert_fills_the_new_fields(
    client: httpx.AsyncClient, seen: list[AlertEvent]
) -> None:
    event = await _one_event(client, seen, load_fixture("chargebee_alert_in_alarm"))
    assert event.alert_type == "usage_exceeded"
    assert event.currency is None
    assert event.triggered_at == _utc(1732190598)
    assert event.alert_name == "Calls at 80%"
    # Its meta holds no key in the manager's format.
    assert event.alert_key is None


async def test_chargebee_without_alarm_triggered_at_has_none(
    client: httpx.AsyncClient, seen: list[AlertEvent]
) -> None:
    payload = load_fixture("chargebee_alert_within_limit")
    assert "alarm_triggered_at" not in payload["content"]["alert_status"]
    event = await _one_event(client, seen, payload)
    assert event.type == "alert.cleared"
    assert event.triggered_at is None


@pytest.mark.parametrize(
    ("changes", "alert_type"),
    [
        ({"type": "credit_balance_dropped", "metered_feature_id": None}, "credit_balance_dropped"),
        ({"type": None}, None),
    ],
    ids=["other-type", "no-type"],
)
async def test_chargebee_other_or_missing_alert_type_is_delivered(
    client: httpx.AsyncClient,
    seen: list[AlertEvent],
    changes: dict[str, Any],
    alert_type: str | None,
) -> None:
    payload = load_fixture("chargebee_alert_in_alarm")
    payload["content"]["alert"].update(changes)
    event = await _one_event(client, seen, payload)
    assert event.alert_type == alert_type
    assert event.meter_id == payload["content"]["alert"]["metered_feature_id"]


# -- ownership marker -----------------------------------------------------------------------------


async def test_stripe_marker_is_stripped_from_the_name_and_becomes_the_key(
    client: httpx.AsyncClient, seen: list[AlertEvent]
) -> None:
    payload = load_fixture("stripe_alert_triggered")
    payload["data"]["object"]["alert"]["title"] = "API calls reached 100 [alerthooks:api-100]"
    event = await _one_event(client, seen, payload)
    assert (event.alert_name, event.alert_key) == ("API calls reached 100", "api-100")


async def test_chargebee_marker_in_the_name_becomes_the_key(
    client: httpx.AsyncClient, seen: list[AlertEvent]
) -> None:
    payload = load_fixture("chargebee_alert_in_alarm")
    payload["content"]["alert"]["name"] = "Calls at 80% [alerthooks:calls-80]"
    event = await _one_event(client, seen, payload)
    assert (event.alert_name, event.alert_key) == ("Calls at 80%", "calls-80")


@pytest.mark.parametrize(
    "meta",
    [
        None,
        "not json",
        '{"alerthooks": "calls"}',
        '{"alerthooks": {"key": 7}}',
        '{"alerthooks": {"key": "bad key"}}',
        '["alerthooks"]',
        {"alerthooks": {"key": ""}},
        7,
    ],
)
async def test_chargebee_meta_without_a_managers_key_is_no_key_not_an_error(
    client: httpx.AsyncClient, seen: list[AlertEvent], meta: Any
) -> None:
    payload = load_fixture("chargebee_alert_spend_exceeded")
    payload["content"]["alert"]["meta"] = meta
    event = await _one_event(client, seen, payload)
    assert event.alert_key is None


async def test_chargebee_meta_as_an_object_gives_the_key(
    client: httpx.AsyncClient, seen: list[AlertEvent]
) -> None:
    payload = load_fixture("chargebee_alert_spend_exceeded")
    payload["content"]["alert"]["meta"] = {"alerthooks": {"key": "spend-500"}, "team": "ops"}
    event = await _one_event(client, seen, payload)
    assert event.alert_key == "spend-500"


# -- alert_type as a handler filter -------------------------------------------------------------


async def test_alert_type_filters_handlers(hooks: AlertHooks, client: httpx.AsyncClient) -> None:
    spend: list[str] = []
    usage: list[str] = []

    @hooks.on("alert.triggered", alert_type="spend_exceeded")
    async def on_spend(event: AlertEvent) -> None:
        spend.append(event.id)

    @hooks.on("*", alert_type={"usage_exceeded", "usage_threshold"})
    async def on_usage(event: AlertEvent) -> None:
        usage.append(event.id)

    spent = load_fixture("chargebee_alert_spend_exceeded")
    used = load_fixture("chargebee_alert_in_alarm")
    metered = load_fixture("stripe_alert_triggered_preview")
    for payload in (spent, used, metered):
        assert (await _deliver(client, payload)).status_code == 200
    assert spend == [spent["id"]]
    assert usage == [used["id"], metered["id"]]
