"""checked_event: the normalizers' unvalidated constructor builds exactly the validated model."""

from __future__ import annotations

import inspect

import pytest
from pydantic import ValidationError

from alerthooks import AlertEvent
from alerthooks.providers import checked_event
from alerthooks.providers.chargebee import normalize as chargebee_normalize
from alerthooks.providers.stripe import normalize as stripe_normalize
from alerthooks.testing import load_sample

from .conftest import load_fixture

_ALERT_SAMPLES = [
    ("stripe", "stripe_alert_triggered"),
    ("stripe", "stripe_alert_triggered_expanded_meter"),
    ("chargebee", "chargebee_alert_in_alarm"),
    ("chargebee", "chargebee_alert_within_limit"),
    ("stripe", "stripe_alert_triggered_preview"),
    ("stripe", "stripe_alert_triggered_legacy"),
    ("chargebee", "chargebee_alert_in_alarm_legacy_status"),
    ("chargebee", "chargebee_alert_spend_exceeded"),
]


@pytest.mark.parametrize(("provider", "sample"), _ALERT_SAMPLES)
def test_a_normalized_event_is_the_model_pydantic_would_validate(
    provider: str, sample: str
) -> None:
    normalize = stripe_normalize if provider == "stripe" else chargebee_normalize
    event = normalize(load_fixture(sample))
    validated = AlertEvent.model_validate(event.model_dump())
    assert event == validated
    assert event.model_dump() == validated.model_dump()
    assert event.model_dump_json() == validated.model_dump_json()
    assert repr(event) == repr(validated)
    assert event.model_fields_set == validated.model_fields_set
    assert event.model_copy(update={"alert_name": "x"}).alert_name == "x"
    with pytest.raises(ValidationError):
        event.alert_id = "changed"  # type: ignore[misc]


def test_checked_event_requires_every_field_by_keyword() -> None:
    parameters = inspect.signature(checked_event).parameters.values()
    assert {p.name for p in parameters} == set(AlertEvent.model_fields)
    assert all(p.kind is p.KEYWORD_ONLY and p.default is p.empty for p in parameters)
    fields = stripe_normalize(load_sample("stripe_alert_triggered")).model_dump()
    assert checked_event(**fields) == AlertEvent.model_validate(fields)
    for name in ("meter_id", "alert_type", "currency", "triggered_at", "alert_key"):
        partial = {k: v for k, v in fields.items() if k != name}
        with pytest.raises(TypeError, match=name):
            checked_event(**partial)


def test_the_model_has_no_hook_that_construction_would_skip() -> None:
    # checked_event sets what BaseModel.model_construct sets; these would need more.
    assert AlertEvent.__pydantic_post_init__ is None
    assert not AlertEvent.__pydantic_root_model__
    assert not AlertEvent.__private_attributes__
    assert AlertEvent.model_config.get("extra") == "forbid"
    assert all(f.alias is None for f in AlertEvent.model_fields.values())
