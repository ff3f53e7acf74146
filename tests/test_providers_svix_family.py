"""What is particular to the three Svix-delivered providers, OpenMeter, Autumn and Flexprice:
each alert shape through the app into AlertEvent fields, and Flexprice's unsigned self-hosted
delivery. Their signatures are the Standard Webhooks scheme, checked with its official vectors
in tests/test_provider_contract.py."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import Autumn, Flexprice, OpenMeter, Provider
from alerthooks.testing.autumn import autumn_event
from alerthooks.testing.flexprice import flexprice_event
from alerthooks.testing.openmeter import openmeter_event

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def _deliver(
    provider: Provider, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[dict[str, Any], list[AlertEvent]]:
    hooks = AlertHooks(providers=[provider], store="memory://")
    seen: list[AlertEvent] = []
    hooks.add_handler(seen.append, "*", name="svix.seen")
    body = json.dumps(payload).encode()
    sent = provider.sign(body) if headers is None else headers
    transport = httpx.ASGITransport(app=hooks)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post(f"/{provider.name}", content=body, headers=sent)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer, seen


# -- OpenMeter ---------------------------------------------------------------------------------


async def test_openmeter_usage_percentage_threshold() -> None:
    payload = openmeter_event("openmeter_balance_threshold")
    answer, [event] = await _deliver(OpenMeter(SECRET), payload)
    assert answer == {"status": "accepted"}
    assert (event.id, event.type, event.provider) == (payload["id"], "alert.triggered", "openmeter")
    assert event.alert_id == "01JC8XZ2F3G4H5J6K7M8N9P0QR"  # the entitlement
    assert (event.meter_id, event.customer_id) == ("gpt4_tokens", "01JC8XT9C0D1E2F3G4H5J6K7LM")
    assert (event.threshold, event.threshold_mode) == (Decimal(80), "percentage")
    assert event.value == Decimal(85)  # usage 850000 of 1000000 granted
    assert event.alert_type == "usage_percentage"
    assert (event.kind, event.external_customer_id) == ("usage", "acme-corp")
    assert event.occurred_at == datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00"))


async def test_openmeter_balance_value_threshold_without_a_customer() -> None:
    payload = openmeter_event("openmeter_balance_threshold_balance_value")
    _, [event] = await _deliver(OpenMeter(SECRET), payload)
    assert (event.threshold, event.threshold_mode) == (Decimal(100000), "absolute")
    assert event.value == Decimal(90000)  # the remaining balance
    assert event.customer_id == "customer-1"  # the subject's key
    assert event.kind == "credit_balance"


async def test_openmeter_usage_value_and_reset() -> None:
    usage = openmeter_event(data={"threshold": {"type": "usage_value", "value": 500000}})
    _, [triggered] = await _deliver(OpenMeter(SECRET), usage)
    assert (triggered.threshold, triggered.value) == (Decimal(500000), Decimal(850000))
    reset = openmeter_event("openmeter_entitlements_reset")
    _, [cleared] = await _deliver(OpenMeter(SECRET), reset)
    assert (cleared.type, cleared.alert_id) == ("alert.cleared", triggered.alert_id)
    assert cleared.threshold is None


async def test_openmeter_unknown_threshold_type_is_unparsed() -> None:
    payload = openmeter_event(data={"threshold": {"type": "bogus", "value": 1}})
    answer, seen = await _deliver(OpenMeter(SECRET), payload)
    assert (answer, seen) == ({"status": "unparsed"}, [])


# -- Autumn ------------------------------------------------------------------------------------


async def test_autumn_usage_alert() -> None:
    answer, [event] = await _deliver(Autumn(SECRET), autumn_event())
    assert answer == {"status": "accepted"}
    assert event.id.startswith("msg_")  # webhook-id: Autumn's payloads have no id
    assert event.alert_id == "api_calls:workspace_abc:usage_percentage:80"
    assert (event.alert_name, event.meter_id) == ("80% usage warning", "api_calls")
    assert event.customer_id == "org_123"
    assert (event.threshold, event.threshold_mode) == (Decimal(80), "percentage")
    assert (event.kind, event.external_customer_id) == ("usage", "org_123")
    assert (datetime.now(timezone.utc) - event.occurred_at).total_seconds() < 60


@pytest.mark.parametrize(
    ("sample", "alert_id", "alert_type"),
    [
        ("autumn_usage_alert_remaining", "credits:_:remaining:500", "remaining"),
        ("autumn_limit_reached", "api_calls:workspace_abc:limit:included", "included"),
        ("autumn_customer_threshold_reached", "api_calls:_:limit_reached", "limit_reached"),
    ],
)
async def test_autumn_other_alert_shapes(sample: str, alert_id: str, alert_type: str) -> None:
    _, [event] = await _deliver(Autumn(SECRET), autumn_event(sample))
    assert event.kind == ("credit_balance" if "remaining" in sample else "usage")
    assert (event.type, event.alert_id, event.alert_type) == (
        "alert.triggered",
        alert_id,
        alert_type,
    )
    assert event.customer_id == "org_123"


async def test_autumn_redelivery_with_the_same_webhook_id_is_a_duplicate() -> None:
    autumn = Autumn(SECRET)
    body = json.dumps(autumn_event()).encode()
    headers = {k.lower(): v for k, v in autumn.sign(body, msg_id="msg_same").items()}
    hooks = AlertHooks(providers=[autumn], store="memory://")
    first = await hooks.receive(autumn, body, headers)
    again = await hooks.receive(autumn, body, headers)
    assert [json.loads(a.body) for a in (first, again)] == [
        {"status": "accepted"},
        {"status": "duplicate"},
    ]


# -- Flexprice ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "fields"),
    [
        (
            "flexprice_subscription_spend_threshold_reached",
            {
                "type": "alert.triggered",
                "alert_id": "subs_01JC8Z0A1B2C3D4E5F6G7H8J9K:subscription_spend",
                "subscription_id": "subs_01JC8Z0A1B2C3D4E5F6G7H8J9K",
                "threshold": Decimal(1000),
                "value": Decimal("1250.00"),
                "currency": "usd",
                "kind": "spend",
            },
        ),
        (
            "flexprice_subscription_spend_threshold_recovered",
            {"type": "alert.cleared", "threshold": None, "value": Decimal(0)},
        ),
        (
            "flexprice_wallet_credit_balance_dropped",
            {
                "type": "alert.triggered",
                "alert_id": "wallet_01JC8Z3D4E5F6G7H8J9K0L1M2N:low_credit_balance",
                "threshold": Decimal(50),
                "value": Decimal(45),
                "customer_id": "cust_01JC8Z1B2C3D4E5F6G7H8J9K0L",
                "kind": "credit_balance",
            },
        ),
        (
            "flexprice_wallet_ongoing_balance_recovered",
            {"type": "alert.cleared", "threshold": Decimal(50), "value": Decimal(500)},
        ),
        (
            "flexprice_feature_wallet_balance_alert",
            {
                "type": "alert.triggered",
                "meter_id": "feat_01JC8Z4E5F6G7H8J9K0L1M2N3P",
                "value": Decimal(80),
            },
        ),
        (
            "flexprice_entitlement_grant_exhausted",
            {
                "type": "alert.triggered",
                "alert_id": "entgr_01JC8Z6G7H8J9K0L1M2N3P4Q5R",
                "value": Decimal(1),
                "kind": "usage",
            },
        ),
    ],
)
async def test_flexprice_alert_shapes(sample: str, fields: dict[str, Any]) -> None:
    answer, [event] = await _deliver(Flexprice(SECRET), flexprice_event(sample))
    assert answer == {"status": "accepted"}
    assert {name: getattr(event, name) for name in fields} == fields


async def test_flexprice_unsigned_delivery_is_refused_unless_opted_into() -> None:
    payload = flexprice_event()
    hooks = AlertHooks(providers=[Flexprice()], store="memory://")
    transport = httpx.ASGITransport(app=hooks)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        refused = await client.post("/flexprice", json=payload)
    assert refused.status_code == 503
    # A signing secret set: the opt-in does not apply, a signature is required.
    signed_only = Flexprice(SECRET, allow_unauthenticated=True)
    assert not signed_only.unsigned


async def test_flexprice_self_hosted_unsigned_delivery_when_opted_into() -> None:
    # Native delivery: no Svix headers, and a spend alert without event_type.
    payload = flexprice_event()
    del payload["event_type"]
    flexprice = Flexprice(allow_unauthenticated=True)
    hooks = AlertHooks(providers=[flexprice], store="memory://")
    seen: list[AlertEvent] = []
    hooks.add_handler(seen.append, "*", name="flexprice.seen")
    transport = httpx.ASGITransport(app=hooks)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        first = await client.post("/flexprice", json=payload)
        again = await client.post("/flexprice", json=payload)
        recovered = flexprice_event("flexprice_subscription_spend_threshold_recovered")
        del recovered["event_type"]
        cleared = await client.post("/flexprice", json=recovered)
    assert [r.json() for r in (first, again, cleared)] == [
        {"status": "accepted"},
        {"status": "duplicate"},
        {"status": "accepted"},
    ]
    assert [e.type for e in seen] == ["alert.triggered", "alert.cleared"]
    assert seen[0].id.startswith("fx_")


async def test_flexprice_other_events_and_unknown_alert_types() -> None:
    flexprice = Flexprice(SECRET)
    answer, _ = await _deliver(flexprice, {"alert_type": "something_new", "alert_status": "ok"})
    assert answer == {"status": "ignored"}
    broken = flexprice_event("flexprice_wallet_credit_balance_dropped", wallet="gone")
    answer, _ = await _deliver(flexprice, broken)
    assert answer == {"status": "unparsed"}
