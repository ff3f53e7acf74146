"""Metronome: signature verification (with the published vector), normalization of threshold
notifications, and the provider served by AlertHooks."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import BUILTIN, Metronome, NotAnAlert, Rejected
from alerthooks.providers.metronome import normalize, signature_headers, verify

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SECRET = "metronome-test-secret"


def sample(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((FIXTURES / f"metronome_{name}.json").read_text())
    return result


# Published test vector: Metronome-Industries/metronome-node, tests/api-resources/webhooks.test.ts
# (the same request is in docs.metronome.com's "Webhooks" guide, "Verify Signatures").
VECTOR_BODY = b"""{
  "id": "b2c9e307-624e-4e7d-a5a4-1b74107d78c4",
  "type": "widget_created",
  "properties": {
    "customer_id": "5f794d50-085a-4db6-8d15-286e518b7225",
    "widget_id": "0891458d-b6f0-4fdd-a41e-380aae1a1e38"
  }
}"""
VECTOR_SIGNATURE = "b82652fa2246cf1d8a27e591f155c865f68b46c19b9213fd9c052f2419b4742b"
VECTOR_DATE = "Mon, 02 Jan 2006 22:04:05 GMT"
VECTOR_SECRET = "correct-horse-battery-staple"
VECTOR_NOW = datetime(2006, 1, 2, 22, 4, 5, tzinfo=timezone.utc)
VECTOR_HEADERS = {"x-metronome-date": VECTOR_DATE, "metronome-webhook-signature": VECTOR_SIGNATURE}


def verify_vector(
    headers: dict[str, str] = VECTOR_HEADERS,
    *,
    now: datetime = VECTOR_NOW,
    secret: str = VECTOR_SECRET,
    body: bytes = VECTOR_BODY,
) -> None:
    verify(body, headers, [secret], now=now)


def test_published_vector_verifies() -> None:
    verify_vector()


def test_published_vector_verifies_from_the_date_header_alone() -> None:
    verify_vector({"date": VECTOR_DATE, "metronome-webhook-signature": VECTOR_SIGNATURE})


def test_x_metronome_date_wins_over_a_rewritten_date() -> None:
    verify_vector({**VECTOR_HEADERS, "date": "Tue, 01 Dec 2026 15:00:00 GMT"})


def test_published_vector_signs_to_the_published_signature() -> None:
    headers = signature_headers(VECTOR_BODY, VECTOR_SECRET, VECTOR_DATE)
    assert headers == {
        "x-metronome-date": VECTOR_DATE,
        "date": VECTOR_DATE,
        "metronome-webhook-signature": VECTOR_SIGNATURE,
    }


@pytest.mark.parametrize("minutes", [4, -4])
def test_vector_four_minutes_off_either_way_passes(minutes: int) -> None:
    verify_vector(now=VECTOR_NOW + timedelta(minutes=minutes))


@pytest.mark.parametrize("minutes", [6, -6])
def test_vector_six_minutes_off_either_way_is_rejected(minutes: int) -> None:
    with pytest.raises(Rejected) as info:
        verify_vector(now=VECTOR_NOW + timedelta(minutes=minutes))
    assert (info.value.status, info.value.reason) == (400, "timestamp outside tolerance")


@pytest.mark.parametrize("secret", ["invalid secret", "Zm9v"])
def test_wrong_secret_is_rejected(secret: str) -> None:
    with pytest.raises(Rejected) as info:
        verify_vector(secret=secret)
    assert (info.value.status, info.value.reason) == (400, "signature mismatch")


def test_tampered_body_is_rejected() -> None:
    with pytest.raises(Rejected, match="signature mismatch"):
        verify_vector(body=VECTOR_BODY.replace(b"widget_created", b"widget_deleted"))


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"metronome-webhook-signature": VECTOR_SIGNATURE}, "missing X-Metronome-Date header"),
        ({"x-metronome-date": VECTOR_DATE}, "missing Metronome-Webhook-Signature header"),
        (
            {"x-metronome-date": "nan", "metronome-webhook-signature": VECTOR_SIGNATURE},
            "malformed X-Metronome-Date header",
        ),
        (
            {"x-metronome-date": VECTOR_DATE, "metronome-webhook-signature": "b8\u00e9"},
            "signature mismatch",
        ),
        (
            {"x-metronome-date": VECTOR_DATE, "metronome-webhook-signature": VECTOR_SIGNATURE[:-1]},
            "signature mismatch",
        ),
    ],
)
def test_missing_or_malformed_headers_are_rejected_with_400(
    headers: dict[str, str], reason: str
) -> None:
    with pytest.raises(Rejected) as info:
        verify_vector(headers)
    assert (info.value.status, info.value.reason) == (400, reason)


def test_an_iso_date_is_accepted_too() -> None:
    date = "2006-01-02T22:04:05Z"
    headers = signature_headers(VECTOR_BODY, VECTOR_SECRET, date)
    verify_vector(headers)


# -- the provider --------------------------------------------------------------------------------


def test_sign_dates_in_rfc_1123_like_metronome() -> None:
    headers = Metronome(secret=VECTOR_SECRET).sign(VECTOR_BODY, date=VECTOR_NOW)
    assert headers["x-metronome-date"] == VECTOR_DATE
    assert headers["metronome-webhook-signature"] == VECTOR_SIGNATURE


def test_from_secret_signs_and_verifies_with_that_secret() -> None:
    provider = Metronome.from_secret(VECTOR_SECRET)
    assert provider.sign(VECTOR_BODY, date=VECTOR_DATE)["metronome-webhook-signature"] == (
        VECTOR_SIGNATURE
    )


def test_registered_as_a_builtin_and_every_alerts_type_is_an_alert_type() -> None:
    assert Metronome in BUILTIN
    assert (Metronome.name, Metronome.env_hint) == ("metronome", "METRONOME_WEBHOOK_SECRET")
    assert "alerts.usage_threshold_reached" in set(Metronome.alert_types)
    assert "alerts.some_future_notification_reached" in Metronome.alert_types
    assert "invoice.finalized" not in Metronome.alert_types


# -- normalization ---------------------------------------------------------------------------------


def test_usage_threshold_reached_is_triggered() -> None:
    event = normalize(sample("usage_threshold_reached"))
    at = datetime(2024, 10, 7, 17, 15, 45, 789000, tzinfo=timezone.utc)
    assert event.model_dump(exclude={"raw"}) == {
        "id": "0c9f6b8e-6d1f-4a8e-9b1a-2f7d3c4e5a61",
        "provider": "metronome",
        "type": "alert.triggered",
        "alert_id": "e5f6a7b8-c9d0-4e12-8f34-5a6b7c8d9e0f",
        "kind": "usage",
        "alert_name": "API calls threshold exceeded",
        "meter_id": "a7b8c9d0-e1f2-4a34-b567-8c9d0e1f2a34",
        "customer_id": "f6a7b8c9-d0e1-4f23-a456-7b8c9d0e1f23",
        "external_customer_id": None,
        "subscription_id": None,
        "threshold": Decimal(1000000),
        "threshold_mode": "absolute",
        "value": Decimal(1250000),
        "occurred_at": at,
        "livemode": None,
        "alert_type": "usage_threshold_reached",
        "currency": None,
        "triggered_at": at,
        "alert_key": None,
    }
    assert event.raw == sample("usage_threshold_reached")


def test_usage_threshold_resolved_is_cleared_for_the_same_alert() -> None:
    reached = normalize(sample("usage_threshold_reached"))
    resolved = normalize(sample("usage_threshold_resolved"))
    assert resolved.type == "alert.cleared"
    assert (resolved.alert_id, resolved.alert_type) == (reached.alert_id, reached.alert_type)
    assert resolved.value == Decimal(0)
    assert resolved.triggered_at is None


def test_spend_threshold_reached_is_triggered_with_its_credit_type() -> None:
    event = normalize(sample("spend_threshold_reached"))
    assert (event.type, event.alert_type) == ("alert.triggered", "spend_threshold_reached")
    assert (event.threshold, event.value) == (Decimal(10000), Decimal(12500))
    assert event.currency == "2714e483-4ff1-48e4-9e25-ac732e8f24f2"
    assert event.meter_id is None


def test_low_remaining_credit_balance_reached_is_triggered_with_the_remaining_balance() -> None:
    event = normalize(sample("low_remaining_credit_balance_reached"))
    assert (event.type, event.alert_type, event.alert_name) == (
        "alert.triggered",
        "low_remaining_credit_balance_reached",
        "Credit balance low",
    )
    assert (event.threshold, event.value) == (Decimal(20000), Decimal(5000))


def test_percentage_notifications_have_a_percentage_threshold() -> None:
    payload = sample("low_remaining_credit_balance_reached")
    payload["type"] = "alerts.low_remaining_contract_credit_percentage_reached"
    payload["properties"]["threshold"] = 10
    assert normalize(payload).threshold_mode == "percentage"


def test_environment_type_sets_livemode() -> None:
    payload = sample("spend_threshold_reached")
    payload["environment_type"] = "SANDBOX"
    assert normalize(payload).livemode is False
    payload["properties"]["environment_type"] = "PRODUCTION"
    assert normalize(payload).livemode is True


@pytest.mark.parametrize(
    "event_type", ["invoice.finalized", "alerts.usage_threshold", "contract.create", None]
)
def test_non_threshold_notification_is_not_an_alert(event_type: str | None) -> None:
    payload = sample("invoice_finalized")
    payload["type"] = event_type
    with pytest.raises(NotAnAlert, match="not a threshold notification"):
        normalize(payload)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("id",), None, "event.id"),
        (("properties",), "x", "event.properties"),
        (("properties", "alert_id"), None, "properties.alert_id"),
        (("properties", "timestamp"), None, "properties.timestamp"),
        (("properties", "timestamp"), "soon", "timestamp"),
        (("properties", "threshold"), "a lot", "properties.threshold"),
        (("properties", "current_usage"), float("inf"), "finite"),
        (("properties", "current_usage"), [1], "properties.current_usage"),
        (("properties", "customer_id"), 12, "properties.customer_id"),
    ],
)
def test_notification_missing_a_field_metronome_always_sends_is_not_an_alert(
    path: tuple[str, ...], value: Any, message: str
) -> None:
    payload = sample("usage_threshold_reached")
    target = payload
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(NotAnAlert, match=message):
        normalize(payload)


# -- served by AlertHooks ----------------------------------------------------------------------


async def test_default_app_routes_orb_and_metronome_from_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("METRONOME_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("ORB_WEBHOOK_SECRET", "orb-secret")
    hooks = AlertHooks(store="memory://")
    assert {"orb", "metronome"} <= set(hooks.providers)
    seen: list[AlertEvent] = []
    hooks.add_handler(seen.append, "*")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=hooks), base_url="http://t"
    ) as client:
        body = json.dumps(sample("usage_threshold_reached")).encode()
        headers = Metronome(secret=SECRET).sign(body)
        assert (await client.post("/metronome", content=body, headers=headers)).status_code == 200
    assert [e.provider for e in seen] == ["metronome"]


async def test_default_app_warns_at_startup_for_unconfigured_orb_and_metronome(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("METRONOME_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("ORB_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_x")
    monkeypatch.setenv("CHARGEBEE_WEBHOOK_USERNAME", "u")
    monkeypatch.setenv("CHARGEBEE_WEBHOOK_PASSWORD", "p")
    hooks = AlertHooks(store="memory://")
    with caplog.at_level(logging.WARNING, logger="alerthooks"):
        await hooks.startup()
        await hooks.shutdown()
    warned = [r.getMessage() for r in caplog.records if "no credentials" in r.getMessage()]
    assert (
        "metronome webhooks are refused: no credentials configured (set METRONOME_WEBHOOK_SECRET)"
        in warned
    )
    assert "orb webhooks are refused: no credentials configured (set ORB_WEBHOOK_SECRET)" in warned
    assert not any(m.startswith(("stripe", "chargebee")) for m in warned)
