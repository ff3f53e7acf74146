"""Stripe: signature verification and normalization as pure functions."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from alerthooks.providers import NotAnAlert, Rejected
from alerthooks.providers.stripe import normalize, verify
from alerthooks.testing import load_sample, stripe_signature_header

from .conftest import load_fixture

SECRET = "whsec_one"
BODY = json.dumps(load_sample("stripe_alert_triggered")).encode()


def test_valid_signature_passes() -> None:
    verify(BODY, stripe_signature_header(BODY, SECRET), [SECRET])


def test_any_of_several_v1_signatures_in_one_header_may_match() -> None:
    header = stripe_signature_header(BODY, "whsec_other", extra_secrets=(SECRET,))
    verify(BODY, header, [SECRET])


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing Stripe-Signature header"),
        ("", "missing Stripe-Signature header"),
        ("garbage", "signature mismatch"),
        ("t=notanumber,v1=abc", "signature mismatch"),
        (f"t={int(time.time())}", "signature mismatch"),
        (f"t={int(time.time())},v0=abc", "signature mismatch"),
    ],
)
def test_missing_or_malformed_header_is_rejected_with_400(header: str | None, reason: str) -> None:
    with pytest.raises(Rejected) as info:
        verify(BODY, header, [SECRET])
    assert info.value.status == 400
    assert info.value.reason == reason


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(Rejected, match="signature mismatch"):
        verify(BODY, stripe_signature_header(BODY, "whsec_wrong"), [SECRET])


def test_signature_within_tolerance_passes() -> None:
    verify(BODY, stripe_signature_header(BODY, SECRET, int(time.time()) - 250), [SECRET])


def test_non_utf8_body_is_rejected() -> None:
    body = b"\xff\xfe{}"
    with pytest.raises(Rejected, match="UTF-8"):
        verify(body, stripe_signature_header(body, SECRET), [SECRET])


def test_normalize_string_meter() -> None:
    payload = load_sample("stripe_alert_triggered")
    event = normalize(payload)
    assert event.id == "evt_1QbXo2LkdIwHu7ix4HUFo3Lq"
    assert event.provider == "stripe"
    assert event.type == "alert.triggered"
    assert event.alert_id == "alrt_61RbXnDm2HQGcGoq841LkdIwHu7ixFRc"
    assert event.alert_name == "API calls reached 100"
    assert event.meter_id == "mtr_test_61RbXkWf9zxQGkRKj41LkdIwHu7ixCiO"
    assert event.customer_id == "cus_RUq8gEVcyMSAOp"
    assert event.subscription_id is None
    assert event.threshold == Decimal(100)
    assert event.threshold_mode == "absolute"
    assert event.value == Decimal(104)
    assert event.occurred_at == datetime(2024, 11, 21, 12, 0, tzinfo=timezone.utc)
    assert event.occurred_at.tzinfo is not None
    assert event.livemode is False
    assert event.raw == payload


def test_normalize_expanded_meter_takes_its_id() -> None:
    event = normalize(load_sample("stripe_alert_triggered_expanded_meter"))
    assert event.meter_id == "mtr_test_61RbXnWq3yvPFjRKj41LkdIwHu7ixT0a"
    assert event.value == Decimal("1500212.5")
    assert isinstance(event.threshold, Decimal)


def test_non_alert_event_is_not_an_alert() -> None:
    with pytest.raises(NotAnAlert, match=r"customer\.created"):
        normalize(load_sample("stripe_customer_created"))


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: p.pop("id"), "event.id"),
        (lambda p: p["data"]["object"].pop("alert"), "data.object.alert"),
        (lambda p: p["data"]["object"]["alert"]["usage_threshold"].update(meter=None), "meter"),
        (lambda p: p["data"]["object"]["alert"]["usage_threshold"].update(meter={}), "meter.id"),
        (lambda p: p["data"]["object"].update(value="1e2"), "data.object.value"),
        (lambda p: p["data"]["object"].update(value="NaN"), "data.object.value"),
        (lambda p: p["data"]["object"].update(value="104 "), "data.object.value"),
        (lambda p: p["data"]["object"].update(value=""), "data.object.value"),
        (lambda p: p["data"]["object"].update(value=[104]), "data.object.value"),
        (lambda p: p["data"]["object"].update(value=True), "data.object.value"),
        (lambda p: p.update(created=10**20), "out of range"),
        (lambda p: p.update(livemode="no"), "livemode"),
        (lambda p: p.update(data=[]), "event.data"),
    ],
)
def test_malformed_alert_is_not_an_alert_with_a_reason(mutate: object, reason: str) -> None:
    payload = load_sample("stripe_alert_triggered")
    mutate(payload)  # type: ignore[operator]
    with pytest.raises(NotAnAlert, match=reason):
        normalize(payload)


def _no_customer(p: dict[str, Any]) -> dict[str, Any]:
    """The triggered object without its customer, so the alert's filter is read instead."""
    del p["data"]["object"]["customer"]
    alert: dict[str, Any] = p["data"]["object"]["alert"]
    return alert


@pytest.mark.parametrize(
    ("fixture", "mutate", "reason"),
    [
        (
            "stripe_alert_triggered",
            lambda p: p["data"]["object"]["alert"].update(usage_threshold=None),
            "neither usage_threshold nor usage_threshold_config",
        ),
        (
            "stripe_alert_triggered",
            lambda p: p["data"]["object"]["alert"].update(usage_threshold="x"),
            r"alert\.usage_threshold is not an object",
        ),
        (
            "stripe_alert_triggered",
            lambda p: _no_customer(p)["usage_threshold"].update(filters="cus_1"),
            r"usage_threshold\.filters is not a list",
        ),
        (
            "stripe_alert_triggered",
            lambda p: _no_customer(p)["usage_threshold"].update(filters=["cus_1"]),
            r"filters\[0\] is not an object",
        ),
        (
            "stripe_alert_triggered",
            lambda p: _no_customer(p)["usage_threshold"]["filters"][0].update(customer=5),
            r"filters\[0\]\.customer",
        ),
        (
            "stripe_alert_triggered",
            lambda p: p["data"]["object"]["alert"].update(alert_type=5),
            r"alert\.alert_type",
        ),
        (
            "stripe_alert_triggered_preview",
            lambda p: p["data"]["object"].update(currency=5),
            r"data\.object\.currency",
        ),
        (
            "stripe_alert_triggered_preview",
            lambda p: p["data"]["object"].update(triggered_at="now"),
            r"data\.object\.triggered_at",
        ),
        (
            "stripe_alert_triggered_preview",
            lambda p: p["data"]["object"].update(triggered_at=10**20),
            r"triggered_at is out of range",
        ),
        (
            "stripe_alert_triggered_preview",
            lambda p: p["data"]["object"].update(value="1,000"),
            r"data\.object\.value is not a decimal string",
        ),
        (
            "stripe_alert_triggered_legacy",
            lambda p: _no_customer(p).update(filter="cus_1"),
            r"alert\.filter is not an object",
        ),
        (
            "stripe_alert_triggered_legacy",
            lambda p: p["data"]["object"]["alert"]["usage_threshold_config"].update(gte="500"),
            r"usage_threshold_config\.gte",
        ),
        (
            "stripe_alert_triggered_legacy",
            lambda p: p["data"]["object"]["alert"]["usage_threshold_config"].pop("meter"),
            r"usage_threshold_config\.meter",
        ),
    ],
)
def test_wrongly_typed_field_of_any_shape_is_not_an_alert(
    fixture: str, mutate: Callable[[dict[str, Any]], Any], reason: str
) -> None:
    payload = load_fixture(fixture)
    mutate(payload)
    with pytest.raises(NotAnAlert, match=reason):
        normalize(payload)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("104", Decimal(104)), ("-0.5", Decimal("-0.5")), ("1000012.75", Decimal("1000012.75"))],
)
def test_value_as_a_decimal_string_is_exact(value: str, expected: Decimal) -> None:
    payload = load_fixture("stripe_alert_triggered_preview")
    payload["data"]["object"]["value"] = value
    assert normalize(payload).value == expected


def test_current_shape_wins_over_the_former_one_when_both_are_sent() -> None:
    payload = load_fixture("stripe_alert_triggered")
    alert = payload["data"]["object"]["alert"]
    alert["usage_threshold_config"] = {"gte": 1, "meter": "mtr_old", "recurrence": "one_time"}
    event = normalize(payload)
    assert (event.meter_id, event.threshold) == (alert["usage_threshold"]["meter"], Decimal(100))
