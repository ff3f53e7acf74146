"""Chargebee: Basic auth and normalization as pure functions."""

from __future__ import annotations

from base64 import b64encode
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from alerthooks.providers import NotAnAlert, Rejected
from alerthooks.providers.chargebee import (
    ChargebeeProvider,
    normalize,
    parse_basic_auth,
    verify,
)
from alerthooks.testing import chargebee_auth_headers, load_sample

from .conftest import load_fixture


def basic(raw: str, scheme: str = "Basic") -> str:
    return f"{scheme} {b64encode(raw.encode()).decode()}"


@pytest.mark.parametrize("scheme", ["Basic", "basic", "BASIC", "bAsIc"])
def test_scheme_is_case_insensitive(scheme: str) -> None:
    assert parse_basic_auth(basic("user:pass", scheme)) == ("user", "pass")


def test_password_may_contain_colons() -> None:
    assert parse_basic_auth(basic("user:a:b:c")) == ("user", "a:b:c")


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer abc", "Basic", "Basic !!!notbase64", basic("no-colon"), "Basic " + "a" * 3],
)
def test_malformed_auth_is_rejected_with_401(header: str | None) -> None:
    with pytest.raises(Rejected) as info:
        parse_basic_auth(header)
    assert info.value.status == 401


def test_any_configured_pair_matches_for_rotation() -> None:
    pairs = [("old", "secret1"), ("new", "secret2")]
    verify(chargebee_auth_headers("new", "secret2")["Authorization"], pairs)
    verify(chargebee_auth_headers("old", "secret1")["Authorization"], pairs)


@pytest.mark.parametrize(("user", "password"), [("old", "secret2"), ("new", "x"), ("", "")])
def test_wrong_credentials_are_rejected(user: str, password: str) -> None:
    with pytest.raises(Rejected) as info:
        verify(
            chargebee_auth_headers(user, password)["Authorization"],
            [("old", "secret1"), ("new", "secret2")],
        )
    assert info.value.status == 401


def test_unconfigured_provider_rejects_and_opt_in_accepts() -> None:
    assert not ChargebeeProvider([]).configured
    with pytest.raises(Rejected):
        ChargebeeProvider([]).verify(b"{}", {})
    open_provider = ChargebeeProvider([], allow_unauthenticated=True)
    assert open_provider.configured
    open_provider.verify(b"{}", {})


def test_normalize_in_alarm_is_triggered() -> None:
    payload = load_sample("chargebee_alert_in_alarm")
    event = normalize(payload)
    assert event.id == "ev_AzyWJwUbH3q1k2Lm"
    assert event.provider == "chargebee"
    assert event.type == "alert.triggered"
    assert event.alert_id == "alert_169lqSUbH3pXq1M2"
    assert event.alert_name == "Calls at 80%"
    assert event.meter_id == "api-calls"
    assert event.customer_id is None
    assert event.subscription_id == "AzZjE8UbH2oTc3Gq"
    assert event.threshold == Decimal(80)
    assert event.threshold_mode == "percentage"
    assert event.value is None
    assert event.livemode is None
    assert event.occurred_at == datetime.fromtimestamp(1732190600, tz=timezone.utc)
    assert event.raw == payload


def test_normalize_within_limit_is_cleared_with_subscription_fallback() -> None:
    event = normalize(load_sample("chargebee_alert_within_limit"))
    assert event.type == "alert.cleared"
    assert event.threshold == Decimal("500.5")
    assert event.threshold_mode == "absolute"
    assert event.subscription_id == "AzZjE8UbH2oTc3Gq"


def test_global_alert_without_subscription_has_none() -> None:
    payload = load_sample("chargebee_alert_in_alarm")
    del payload["content"]["alert_status"]["subscription_id"]
    assert normalize(payload).subscription_id is None


def test_non_alert_event_is_not_an_alert() -> None:
    with pytest.raises(NotAnAlert, match="subscription_created"):
        normalize(load_sample("chargebee_subscription_created"))


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: p.pop("content"), "event.content"),
        (lambda p: p.update(content="x"), "event.content"),
        (lambda p: p["content"].pop("alert_status"), "content.alert_status"),
        (lambda p: p["content"]["alert_status"].update(alarm_status="paused"), "alarm_status"),
        (lambda p: p["content"]["alert"]["threshold"].update(mode="relative"), "mode"),
        (lambda p: p["content"]["alert"]["threshold"].update(value=None), "threshold.value"),
        (lambda p: p["content"]["alert"].update(id=7), "alert.id"),
        (lambda p: p["content"]["alert_status"].update(alert_id="other"), "differs"),
        (lambda p: p.update(occurred_at="yesterday"), "occurred_at"),
    ],
)
def test_malformed_alert_is_not_an_alert_with_a_reason(mutate: object, reason: str) -> None:
    payload = load_sample("chargebee_alert_in_alarm")
    mutate(payload)  # type: ignore[operator]
    with pytest.raises(NotAnAlert, match=reason):
        normalize(payload)


def _alarm_start_only_on_the_alert(payload: dict[str, Any], value: Any) -> None:
    payload["content"]["alert_status"]["alarm_triggered_at"] = None
    payload["content"]["alert"]["alarm_triggered_at"] = value


@pytest.mark.parametrize(
    ("fixture", "mutate", "reason"),
    [
        (
            "chargebee_alert_in_alarm",
            lambda p: p["content"]["alert"].update(threshold="80"),
            r"alert\.threshold is not an object",
        ),
        (
            "chargebee_alert_in_alarm",
            lambda p: p["content"]["alert"].update(threshold=[80]),
            r"alert\.threshold is not an object",
        ),
        (
            "chargebee_alert_in_alarm",
            lambda p: p["content"]["alert"].update(type=7),
            r"alert\.type",
        ),
        (
            "chargebee_alert_spend_exceeded",
            lambda p: p["content"]["alert"].update(currency_code=["USD"]),
            r"alert\.currency_code",
        ),
        (
            "chargebee_alert_in_alarm",
            lambda p: p["content"]["alert"].update(metered_feature_id=5),
            r"alert\.metered_feature_id",
        ),
        (
            "chargebee_alert_in_alarm",
            lambda p: p["content"]["alert_status"].update(alarm_triggered_at="soon"),
            r"alert_status\.alarm_triggered_at",
        ),
        (
            "chargebee_alert_in_alarm",
            lambda p: p["content"]["alert_status"].update(alarm_triggered_at=10**20),
            r"alarm_triggered_at is out of range",
        ),
        (
            "chargebee_alert_in_alarm_legacy_status",
            lambda p: p["content"]["alert_status"].update(alert_status="paused"),
            r"'paused' is neither in_alarm nor within_limit",
        ),
        (
            "chargebee_alert_in_alarm_legacy_status",
            lambda p: p["content"]["alert_status"].pop("alert_status"),
            r"None is neither in_alarm nor within_limit",
        ),
        (
            "chargebee_alert_in_alarm_legacy_status",
            lambda p: _alarm_start_only_on_the_alert(p, "soon"),
            r"alert\.alarm_triggered_at",
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


def test_current_status_name_wins_over_the_former_one() -> None:
    payload = load_fixture("chargebee_alert_in_alarm_legacy_status")
    payload["content"]["alert_status"]["alarm_status"] = "within_limit"
    assert normalize(payload).type == "alert.cleared"


def test_alarm_start_falls_back_to_where_the_alert_kept_it() -> None:
    payload = load_fixture("chargebee_alert_in_alarm_legacy_status")
    del payload["content"]["alert_status"]["alarm_triggered_at"]
    payload["content"]["alert"]["alarm_triggered_at"] = 1746000000
    assert normalize(payload).triggered_at == datetime.fromtimestamp(1746000000, tz=timezone.utc)
