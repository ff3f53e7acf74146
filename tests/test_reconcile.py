"""Reconciliation: the stored alert states against the statuses Chargebee reports for the
subscriptions in the state and for global alerts, on the stateful fake."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from alerthooks import AlertState
from alerthooks.catchup import Drift, compare, reconcile
from alerthooks.providers import Chargebee, Metronome, RemoteStatus, Stripe
from alerthooks.testing.fakes import FakeChargebee, FakeMetronome

from .test_catchup import API_VARIABLES

SINCE = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeChargebee]:
    with FakeChargebee(hang=1.0) as chargebee_api:
        yield chargebee_api


@pytest.fixture
def chargebee_api(fake: FakeChargebee, monkeypatch: pytest.MonkeyPatch) -> FakeChargebee:
    for name in API_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    fake.reset()
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    return fake


def state(alert_id: str, subscription: str, value: str, provider: str = "chargebee") -> AlertState:
    return AlertState(
        provider=provider,
        alert_id=alert_id,
        subscription_id=subscription if provider == "chargebee" else None,
        customer_id=subscription if provider != "chargebee" else None,
        state=value,  # type: ignore[arg-type]
        since=SINCE,
        event_id="ev_1",
    )


def drift(alert_id: str, subject: str, local: str | None, remote: str | None) -> Drift:
    return Drift("chargebee", alert_id, subject, local, remote, subscription_id=subject)


async def test_no_drift_when_chargebee_agrees(chargebee_api: FakeChargebee) -> None:
    alert = chargebee_api.add_alert("Calls", "api-calls", "absolute", 100, subscription_id="sub_1")
    chargebee_api.set_alert_status(alert["id"], "sub_1", "in_alarm")
    chargebee_api.set_alert_status(alert["id"], "sub_2", "within_limit")
    states = [state(alert["id"], "sub_1", "in_alarm"), state(alert["id"], "sub_2", "within_limit")]
    assert await reconcile(states, [Chargebee()]) == []
    assert chargebee_api.calls["GET /api/v2/subscriptions/{id}/alert_statuses"] == 2
    assert chargebee_api.calls["GET /api/v2/alerts/{id}/alert_statuses"] == 0


async def test_a_subject_whose_status_differs_is_a_drift(chargebee_api: FakeChargebee) -> None:
    alert = chargebee_api.add_alert("Calls", "api-calls", "absolute", 100, subscription_id="sub_1")
    chargebee_api.set_alert_status(alert["id"], "sub_1", "within_limit")
    chargebee_api.set_alert_status(alert["id"], "sub_2", "in_alarm")
    states = [state(alert["id"], "sub_1", "in_alarm"), state(alert["id"], "sub_2", "within_limit")]
    assert await reconcile(states, [Chargebee()]) == [
        drift(alert["id"], "sub_1", "in_alarm", "within_limit"),
        drift(alert["id"], "sub_2", "within_limit", "in_alarm"),
    ]


async def test_a_global_alert_in_alarm_for_a_subscription_not_in_the_state_is_a_drift(
    chargebee_api: FakeChargebee,
) -> None:
    alert = chargebee_api.add_alert("Calls", "api-calls", "percentage", 80)  # global
    chargebee_api.set_alert_status(alert["id"], "sub_1", "in_alarm")
    chargebee_api.set_alert_status(alert["id"], "sub_9", "in_alarm")
    chargebee_api.set_alert_status(alert["id"], "sub_8", "within_limit")
    states = [state(alert["id"], "sub_1", "in_alarm")]
    assert await reconcile(states, [Chargebee()]) == [
        drift(alert["id"], "sub_9", None, "in_alarm"),
    ]
    assert chargebee_api.calls["GET /api/v2/alerts/{id}/alert_statuses"] == 1


async def test_statuses_set_by_events_the_fake_keeps_are_read(chargebee_api: FakeChargebee) -> None:
    from alerthooks.testing.chargebee import chargebee_alert_status_changed

    alert = chargebee_api.add_alert("Calls", "api-calls", "absolute", 100, subscription_id="sub_1")
    for status, at in (("in_alarm", 100), ("within_limit", 200)):
        chargebee_api.add_event(
            chargebee_alert_status_changed(
                status,  # type: ignore[arg-type]
                alert_id=alert["id"],
                subscription_id="sub_1",
                occurred_at=1_764_000_000 + at,
            )
        )
    assert await reconcile([state(alert["id"], "sub_1", "in_alarm")], [Chargebee()]) == [
        drift(alert["id"], "sub_1", "in_alarm", "within_limit")
    ]


async def test_429s_are_retried(chargebee_api: FakeChargebee) -> None:
    alert = chargebee_api.add_alert("Calls", "api-calls", "absolute", 100, subscription_id="sub_1")
    chargebee_api.set_alert_status(alert["id"], "sub_1", "within_limit")
    chargebee_api.inject("429", path="/api/v2/subscriptions/{id}/alert_statuses", times=2)
    assert len(await reconcile([state(alert["id"], "sub_1", "in_alarm")], [Chargebee()])) == 1
    assert chargebee_api.calls["GET /api/v2/subscriptions/{id}/alert_statuses"] == 3


async def test_an_api_refusing_the_key_raises(
    chargebee_api: FakeChargebee, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHARGEBEE_API_KEY", "wrong")
    with pytest.raises(Exception, match="HTTP 401"):
        await reconcile([state("alert_1", "sub_1", "in_alarm")], [Chargebee()])


async def test_providers_that_cannot_say_are_noted_not_compared(
    chargebee_api: FakeChargebee, monkeypatch: pytest.MonkeyPatch
) -> None:
    notes: list[str] = []
    states = [state("alrt_1", "cus_1", "in_alarm", provider="stripe")]
    assert await reconcile(states, [Stripe(), Chargebee()], notes=notes) == []
    assert notes == ["stripe: not reconciled: no alert-status API"]
    monkeypatch.delenv("CHARGEBEE_API_KEY")
    notes.clear()
    assert await reconcile([state("a", "sub_1", "in_alarm")], [Chargebee()], notes=notes) == []
    assert notes == ["chargebee: not reconciled: no API credentials (CHARGEBEE_API_KEY: not set)"]
    assert chargebee_api.total_calls == 0


def test_only_what_the_provider_reports_can_drift() -> None:
    local = [state("a", "sub_1", "within_limit"), state("a", "sub_2", "in_alarm")]
    remote = [
        RemoteStatus("a", "within_limit", subscription_id="sub_3"),
        RemoteStatus("a", "in_alarm", subscription_id="sub_4"),
    ]
    assert compare("chargebee", local, remote) == [drift("a", "sub_4", None, "in_alarm")]


# -- Metronome: each customer's alert statuses ------------------------------------------------


@pytest.fixture
def metronome_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMetronome]:
    with FakeMetronome(hang=1.0) as fake:
        monkeypatch.delenv("METRONOME_API_KEY", raising=False)
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        yield fake


def customer_state(alert_id: str, customer: str, value: str) -> AlertState:
    return state(alert_id, customer, value, provider="metronome")


async def test_metronome_customer_statuses_are_compared(metronome_api: FakeMetronome) -> None:
    own = metronome_api.add_alert("Spend", "spend_threshold_reached", 100, customer_id="cus_1")
    everyone = metronome_api.add_alert(
        "Calls", "usage_threshold_reached", 10, billable_metric_id="m"
    )
    metronome_api.set_customer_status(own["id"], "cus_1", "in_alarm")
    metronome_api.set_customer_status(everyone["id"], "cus_2", "in_alarm")
    metronome_api.set_customer_status(everyone["id"], "cus_1", "evaluating")
    states = [
        customer_state(own["id"], "cus_1", "in_alarm"),  # agrees
        customer_state(everyone["id"], "cus_1", "in_alarm"),  # evaluating: says nothing
        customer_state(everyone["id"], "cus_2", "within_limit"),  # in alarm at Metronome
    ]
    drifts = await reconcile(states, [Metronome()])
    assert drifts == [
        Drift(
            "metronome", everyone["id"], "cus_2", "within_limit", "in_alarm", customer_id="cus_2"
        ),
    ]
    assert metronome_api.calls["POST /v1/customer-alerts/list"] == 2
