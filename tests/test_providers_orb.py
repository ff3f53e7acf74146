"""Orb: signature verification (with the SDK's published vectors), normalization of each alert
webhook, and the provider served by AlertHooks."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from alerthooks.providers import BUILTIN, NotAnAlert, Orb, Rejected
from alerthooks.providers.orb import normalize, signature_headers, verify

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SECRET = "orb-test-secret"


def sample(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((FIXTURES / f"orb_{name}.json").read_text())
    return result


# Published test vector: orbcorp/orb-python, tests/api_resources/test_webhooks.py
# (TestWebhooks: payload, signature, secret and timestamp).
VECTOR_BODY = (
    b'{"id": "o4mmewpfNNTnjfZc", "created_at": "2024-03-27T15:42:29+00:00", '
    b'"type": "resource_event.test", "properties": {"message": "A test webhook from Orb. '
    b'Happy testing!"}}'
)
VECTOR_SIGNATURE = "9d25de966891ab0bc18754faf8d83d0980b44ae330fcc130b41a6cf3daf1f391"
VECTOR_SECRET = "c-UGKYdnhHh436B_sMouYAPUvXyWpzOdunZBV5dFSD8"
VECTOR_TIMESTAMP = "2024-03-27T15:42:29.551"
VECTOR_NOW = datetime(2024, 3, 27, 15, 42, 29, 551000, tzinfo=timezone.utc)


def verify_vector(
    signature: str, *, now: datetime = VECTOR_NOW, secret: str = VECTOR_SECRET
) -> None:
    verify(VECTOR_BODY, VECTOR_TIMESTAMP, signature, [secret], now=now)


def test_published_vector_verifies() -> None:
    verify_vector(f"v1={VECTOR_SIGNATURE}")


def test_published_vector_signs_to_the_published_signature() -> None:
    headers = signature_headers(VECTOR_BODY, VECTOR_SECRET, VECTOR_TIMESTAMP)
    assert headers == {
        "x-orb-timestamp": VECTOR_TIMESTAMP,
        "x-orb-signature": f"v1={VECTOR_SIGNATURE}",
    }


@pytest.mark.parametrize(
    "header",
    [
        f"v1=my_invalid_signature v1={VECTOR_SIGNATURE}",
        f"v2={VECTOR_SIGNATURE} v1={VECTOR_SIGNATURE}",
        f"v1=00,v1={VECTOR_SIGNATURE}",
    ],
)
def test_any_v1_entry_among_several_may_match(header: str) -> None:
    verify_vector(header)


@pytest.mark.parametrize(
    "header",
    [f"v2={VECTOR_SIGNATURE}", VECTOR_SIGNATURE, "v1=", "v1=00"],
)
def test_no_matching_v1_entry_is_rejected_with_400(header: str) -> None:
    with pytest.raises(Rejected) as info:
        verify_vector(header)
    assert (info.value.status, info.value.reason) == (400, "signature mismatch")


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(Rejected, match="signature mismatch"):
        verify_vector(f"v1={VECTOR_SIGNATURE}", secret="foo")


@pytest.mark.parametrize("minutes", [6, -6])
def test_vector_six_minutes_off_either_way_is_rejected(minutes: int) -> None:
    with pytest.raises(Rejected) as info:
        verify_vector(f"v1={VECTOR_SIGNATURE}", now=VECTOR_NOW + timedelta(minutes=minutes))
    assert (info.value.status, info.value.reason) == (400, "timestamp outside tolerance")


@pytest.mark.parametrize("minutes", [4, -4])
def test_vector_four_minutes_off_either_way_passes(minutes: int) -> None:
    verify_vector(f"v1={VECTOR_SIGNATURE}", now=VECTOR_NOW + timedelta(minutes=minutes))


@pytest.mark.parametrize(
    ("system_time", "stamp"),
    # orb-python's test_microsecond_precision_issue_fixed: a zoneless timestamp is UTC, so a
    # delivery signed a fraction of a second ago is not "too new" on a host in another zone.
    [
        ("2025-08-08T21:35:11.531998+00:00", "2025-08-08T21:35:11.445"),
        ("2025-08-08T21:32:02.585239+00:00", "2025-08-08T21:32:02.497"),
        ("2025-08-08T21:35:42.810490+00:00", "2025-08-08T21:35:42.660"),
    ],
)
def test_zoneless_timestamps_are_utc(system_time: str, stamp: str) -> None:
    signature = signature_headers(VECTOR_BODY, VECTOR_SECRET, stamp)["x-orb-signature"]
    verify(VECTOR_BODY, stamp, signature, [VECTOR_SECRET], now=datetime.fromisoformat(system_time))


def test_timestamp_with_a_zone_is_read_in_that_zone() -> None:
    # As the SDK's test_timezone_aware_timestamps_still_work: an explicit offset is honoured.
    stamp = "2025-08-08T23:35:11.445+02:00"
    headers = signature_headers(VECTOR_BODY, SECRET, stamp)
    now = datetime(2025, 8, 8, 21, 35, 11, tzinfo=timezone.utc)
    verify(VECTOR_BODY, stamp, headers["x-orb-signature"], [SECRET], now=now)
    with pytest.raises(Rejected, match="tolerance"):
        verify(
            VECTOR_BODY, stamp, headers["x-orb-signature"], [SECRET], now=now + timedelta(hours=2)
        )


@pytest.mark.parametrize(
    ("timestamp", "signature", "reason"),
    [
        (None, f"v1={VECTOR_SIGNATURE}", "missing X-Orb-Timestamp header"),
        ("", f"v1={VECTOR_SIGNATURE}", "missing X-Orb-Timestamp header"),
        (VECTOR_TIMESTAMP, None, "missing X-Orb-Signature header"),
        ("nan", f"v1={VECTOR_SIGNATURE}", "malformed X-Orb-Timestamp header"),
        ("2024-03-27T15:42:29\u00e9", f"v1={VECTOR_SIGNATURE}", "malformed X-Orb-Timestamp header"),
    ],
)
def test_missing_or_malformed_headers_are_rejected_with_400(
    timestamp: str | None, signature: str | None, reason: str
) -> None:
    with pytest.raises(Rejected) as info:
        verify(VECTOR_BODY, timestamp, signature, [VECTOR_SECRET], now=VECTOR_NOW)
    assert (info.value.status, info.value.reason) == (400, reason)


def test_tampered_body_is_rejected() -> None:
    with pytest.raises(Rejected, match="signature mismatch"):
        verify(
            VECTOR_BODY.replace(b"Happy", b"Sad"),
            VECTOR_TIMESTAMP,
            f"v1={VECTOR_SIGNATURE}",
            [VECTOR_SECRET],
            now=VECTOR_NOW,
        )


# -- the provider --------------------------------------------------------------------------------


def test_sign_dates_like_orb_naive_utc_with_milliseconds() -> None:
    headers = Orb(secret=SECRET).sign(
        b"{}",
        timestamp=datetime(2024, 3, 27, 17, 42, 29, 551000, tzinfo=timezone(timedelta(hours=2))),
    )
    assert headers["x-orb-timestamp"] == VECTOR_TIMESTAMP


def test_from_secret_signs_and_verifies_with_that_secret() -> None:
    provider = Orb.from_secret("c-UGKYdnhHh436B_sMouYAPUvXyWpzOdunZBV5dFSD8")
    assert provider.secrets == (VECTOR_SECRET,)
    assert provider.sign(VECTOR_BODY, timestamp=VECTOR_TIMESTAMP)["x-orb-signature"] == (
        f"v1={VECTOR_SIGNATURE}"
    )


def test_a_secret_string_is_used_as_given_not_split() -> None:
    assert Orb(secret="a,b").secrets == ("a,b",)


def test_registered_as_a_builtin_with_its_alert_types() -> None:
    assert Orb in BUILTIN
    assert Orb.name == "orb"
    assert Orb.env_hint == "ORB_WEBHOOK_SECRET"
    assert "subscription.usage_exceeded" in Orb.alert_types
    assert "customer.created" not in Orb.alert_types


# -- normalization ---------------------------------------------------------------------------------


def test_usage_exceeded_is_triggered() -> None:
    event = normalize(sample("subscription_usage_exceeded"))
    assert event.model_dump(exclude={"raw"}) == {
        "id": "o4mmewpfNNTnjfZc",
        "provider": "orb",
        "type": "alert.triggered",
        "alert_id": "mjF3yPbHEpD9yrRz",
        "kind": "usage",
        "alert_name": None,
        "meter_id": "Kc2xP9rbyJUqGdE8",
        "customer_id": "XjvnnqNRWCh4fbNg",
        "external_customer_id": "acme-corp",
        "subscription_id": "VDGsT23osdLb84FE",
        "threshold": Decimal("1000.0"),
        "threshold_mode": "absolute",
        "value": Decimal("1250.0"),
        "occurred_at": datetime(2024, 11, 21, 12, 0, tzinfo=timezone.utc),
        "livemode": None,
        "alert_type": "usage_exceeded",
        "currency": None,
        "triggered_at": None,
        "alert_key": None,
    }
    assert event.raw == sample("subscription_usage_exceeded")


def test_cost_exceeded_is_triggered_with_money_amounts() -> None:
    event = normalize(sample("subscription_cost_exceeded"))
    assert event.type == "alert.triggered"
    assert (event.alert_id, event.alert_type, event.currency) == (
        "Ywq7JbTgR5mPz3Nh",
        "cost_exceeded",
        "USD",
    )
    assert (event.threshold, event.value) == (Decimal("500.00"), Decimal("512.40"))
    assert (event.subscription_id, event.customer_id, event.meter_id) == (
        "VDGsT23osdLb84FE",
        "XjvnnqNRWCh4fbNg",
        None,
    )


def test_spend_exceeded_is_triggered() -> None:
    payload = sample("subscription_cost_exceeded")
    payload["type"] = "subscription.spend_exceeded"
    payload["properties"]["alert_configuration"]["type"] = "spend_exceeded"
    event = normalize(payload)
    assert (event.type, event.alert_type, event.value) == (
        "alert.triggered",
        "spend_exceeded",
        Decimal("512.40"),
    )


def test_credit_balance_dropped_is_triggered_at_its_balance_threshold() -> None:
    event = normalize(sample("customer_credit_balance_dropped"))
    assert event.type == "alert.triggered"
    assert (event.alert_id, event.alert_type) == ("Lp5sQ9cVf2XnTg8M", "credit_balance_dropped")
    assert (event.customer_id, event.subscription_id) == ("XjvnnqNRWCh4fbNg", None)
    assert (event.threshold, event.threshold_mode, event.value) == (
        Decimal("100.00"),
        "absolute",
        None,
    )
    assert event.currency == "USD"


def test_credit_balance_depleted_is_triggered() -> None:
    event = normalize(sample("customer_credit_balance_depleted"))
    assert (event.type, event.alert_id, event.alert_type) == (
        "alert.triggered",
        "Gd4rT7yBn9KsWq3V",
        "credit_balance_depleted",
    )
    assert event.threshold == Decimal("0.00")


def test_credit_balance_recovered_is_cleared_for_the_same_alert() -> None:
    depleted = normalize(sample("customer_credit_balance_depleted"))
    recovered = normalize(sample("customer_credit_balance_recovered"))
    assert recovered.type == "alert.cleared"
    assert recovered.alert_id == depleted.alert_id
    assert recovered.occurred_at == datetime(2024, 11, 22, 8, 0, tzinfo=timezone.utc)


def test_currency_falls_back_to_the_pricing_unit() -> None:
    payload = sample("customer_credit_balance_dropped")
    payload["properties"]["alert_configuration"]["currency"] = None
    payload["properties"]["pricing_unit"]["name"] = "credits"
    assert normalize(payload).currency == "credits"


def test_threshold_of_an_alert_with_several_and_no_property_is_none() -> None:
    payload = sample("customer_credit_balance_recovered")
    payload["properties"]["alert_configuration"]["thresholds"] = [{"value": "0"}, {"value": "5"}]
    event = normalize(payload)
    assert (event.threshold, event.threshold_mode) == (None, None)


def test_null_quantities_are_none() -> None:
    payload = sample("subscription_usage_exceeded")
    payload["properties"]["evaluated_quantity"] = None
    assert normalize(payload).value is None


def test_customer_comes_from_the_alert_when_the_subscription_has_none() -> None:
    payload = sample("subscription_usage_exceeded")
    del payload["subscription"]["customer"]
    payload["properties"]["alert_configuration"]["customer"] = {"id": "cust_from_alert"}
    assert normalize(payload).customer_id == "cust_from_alert"


def test_non_alert_event_is_not_an_alert() -> None:
    with pytest.raises(NotAnAlert, match="not an alert"):
        normalize(sample("customer_created"))


def _broken(name: str, path: tuple[str, ...], value: Any) -> dict[str, Any]:
    payload = sample(name)
    target = payload
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return payload


@pytest.mark.parametrize(
    ("name", "path", "value", "message"),
    [
        ("subscription_usage_exceeded", ("id",), KeyError, "event.id"),
        ("subscription_usage_exceeded", ("created_at",), "yesterday", "created_at"),
        ("subscription_usage_exceeded", ("properties",), [], "event.properties"),
        (
            "subscription_usage_exceeded",
            ("properties", "alert_configuration"),
            KeyError,
            "alert_configuration",
        ),
        (
            "subscription_usage_exceeded",
            ("properties", "alert_configuration", "id"),
            "",
            "alert_configuration.id",
        ),
        ("subscription_usage_exceeded", ("subscription",), KeyError, "event.subscription"),
        ("subscription_usage_exceeded", ("properties", "quantity_threshold"), "lots", "quantity"),
        ("subscription_usage_exceeded", ("properties", "evaluated_quantity"), True, "evaluated"),
        ("subscription_cost_exceeded", ("properties", "amount_threshold"), "NaN", "finite"),
        ("customer_credit_balance_dropped", ("customer",), KeyError, "event.customer"),
        ("customer_credit_balance_dropped", ("customer", "id"), 7, "customer.id"),
    ],
)
def test_alert_missing_a_field_orb_always_sends_is_not_an_alert(
    name: str, path: tuple[str, ...], value: Any, message: str
) -> None:
    with pytest.raises(NotAnAlert, match=message):
        normalize(_broken(name, path, value))
