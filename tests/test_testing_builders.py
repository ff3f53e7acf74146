"""alerthooks.testing's payload builders: realistic, fresh ids, overrides, named samples."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from alerthooks.providers import NotAnAlert, chargebee, stripe
from alerthooks.testing import (
    build_sample,
    chargebee_alert_status_changed,
    chargebee_subscription_created,
    load_sample,
    sample_names,
    stripe_alert_triggered,
    stripe_customer_created,
)

BUILDERS = [
    stripe_alert_triggered,
    stripe_customer_created,
    chargebee_alert_status_changed,
    chargebee_subscription_created,
]


@pytest.mark.parametrize("builder", BUILDERS)
def test_every_call_gets_a_fresh_event_id_unless_given_one(builder: object) -> None:
    assert callable(builder)
    first, second = builder(), builder()
    assert first["id"] != second["id"]
    assert builder(id="evt_given")["id"] == "evt_given"


def test_stripe_alert_fields_normalize_as_given() -> None:
    event = stripe.normalize(
        stripe_alert_triggered(
            alert_id="alrt_1",
            title="Calls",
            meter="mtr_1",
            gte=10,
            customer="cus_1",
            value=12,
            created=1_700_000_000,
            livemode=True,
        )
    )
    assert (event.alert_id, event.alert_name, event.meter_id, event.customer_id) == (
        "alrt_1",
        "Calls",
        "mtr_1",
        "cus_1",
    )
    assert (event.threshold, event.value, event.livemode) == (Decimal(10), Decimal(12), True)
    assert event.occurred_at.timestamp() == 1_700_000_000


def test_stripe_alert_is_recent_so_it_reads_as_a_fresh_delivery() -> None:
    assert abs(stripe_alert_triggered()["created"] - time.time()) < 5


def test_expanded_meter_and_recursive_overrides() -> None:
    payload = stripe_alert_triggered(expanded_meter=True, data={"object": {"value": 7}})
    assert isinstance(payload["data"]["object"]["alert"]["usage_threshold"]["meter"], dict)
    event = stripe.normalize(payload)
    assert event.value == Decimal(7)
    assert event.customer_id == payload["data"]["object"]["customer"]


@pytest.mark.parametrize(
    ("alarm", "event_type"), [("in_alarm", "alert.triggered"), ("within_limit", "alert.cleared")]
)
def test_chargebee_alarm_status_picks_the_event_type(alarm: str, event_type: str) -> None:
    event = chargebee.normalize(
        chargebee_alert_status_changed(
            alarm,  # type: ignore[arg-type]
            alert_id="alert_1",
            name="Storage",
            metered_feature_id="storage",
            subscription_id="sub_1",
            threshold={"value": 90},
        )
    )
    assert (event.type, event.alert_id, event.alert_name) == (event_type, "alert_1", "Storage")
    assert (event.meter_id, event.subscription_id, event.threshold) == (
        "storage",
        "sub_1",
        Decimal(90),
    )


@pytest.mark.parametrize("builder", [stripe_customer_created, chargebee_subscription_created])
def test_non_alert_events_are_not_alerts(builder: object) -> None:
    assert callable(builder)
    normalize = stripe.normalize if builder is stripe_customer_created else chargebee.normalize
    with pytest.raises(NotAnAlert):
        normalize(builder())


@pytest.mark.parametrize("name", sample_names())
def test_build_sample_is_the_named_sample_with_a_fresh_id(name: str) -> None:
    built, stored = build_sample(name), load_sample(name)
    assert built["id"] != stored["id"]
    assert built.get("type", built.get("event_type")) == stored.get(
        "type", stored.get("event_type")
    )
    assert build_sample(name)["id"] != built["id"]


def test_sample_names_by_provider() -> None:
    assert sample_names("stripe") == [
        "stripe_alert_triggered",
        "stripe_alert_triggered_expanded_meter",
        "stripe_customer_created",
    ]
    assert all(n.startswith("chargebee_") for n in sample_names("chargebee"))
    assert sorted(sample_names("stripe") + sample_names("chargebee")) == sample_names()


@pytest.mark.parametrize("load", [build_sample, load_sample])
def test_unknown_sample_names_the_choices(load: object) -> None:
    assert callable(load)
    with pytest.raises(ValueError, match="unknown sample 'nope'; choose one of chargebee_"):
        load("nope")
