"""The Orb test kit: its samples registered with their default, ``orb_event`` fresh and dated
now, ``deliver("orb", ...)`` signed as Orb signs, and timestamps with ``Z`` read on every
Python (``datetime.fromisoformat`` reads ``Z`` only from 3.11 on)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import Orb, orb
from alerthooks.store.memory import MemoryStore
from alerthooks.testing import SyncAlertHooksClient, build_sample, default_sample, sample_names
from alerthooks.testing.orb import orb_event


def test_orb_samples_are_registered_with_their_default() -> None:
    assert default_sample("orb") == "orb_subscription_usage_exceeded"
    assert sample_names("orb") == [
        "orb_customer_created",
        "orb_customer_credit_balance_depleted",
        "orb_customer_credit_balance_dropped",
        "orb_customer_credit_balance_recovered",
        "orb_subscription_cost_exceeded",
        "orb_subscription_usage_exceeded",
    ]


def test_orb_event_is_fresh_and_dated_now_unless_given() -> None:
    first, second = orb_event(), orb_event("orb_subscription_cost_exceeded")
    assert first["id"] != second["id"] and len(first["id"]) == 16 and first["id"].isalnum()
    created = datetime.fromisoformat(first["created_at"])
    assert abs(created.timestamp() - time.time()) < 5 and first["created_at"].endswith("+00:00")
    assert second["type"] == "subscription.cost_exceeded"
    given = orb_event(
        id="evt_orb",
        created_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        properties={"evaluated_quantity": 2000.0},
    )
    assert (given["id"], given["created_at"]) == ("evt_orb", "2025-01-02T03:04:05+00:00")
    assert given["properties"]["evaluated_quantity"] == 2000.0
    assert given["properties"]["quantity_threshold"] == 1000.0  # merged, not replaced


def test_a_z_timestamp_reads_as_utc() -> None:
    assert orb._zulu("2025-01-02T03:04:05.678Z") == "2025-01-02T03:04:05.678+00:00"
    expected = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
    assert orb.parse_timestamp("2025-01-02T03:04:05.678Z") == expected
    event = orb.normalize(orb_event(created_at=expected) | {"created_at": "2025-01-02T03:04:05Z"})
    assert event.occurred_at == expected.replace(microsecond=0)


def test_a_z_signature_timestamp_is_verified_over_the_header_as_sent() -> None:
    body = b'{"id": "evt_1"}'
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    headers = orb.signature_headers(body, "orb-secret", stamp)
    assert headers[orb.TIMESTAMP_HEADER] == stamp
    orb.verify(body, stamp, headers[orb.SIGNATURE_HEADER], ["orb-secret"])


def test_client_delivers_every_orb_sample_signed() -> None:
    seen: list[AlertEvent] = []
    hooks = AlertHooks(providers=[Orb(secret="orb-secret")], store=MemoryStore())
    hooks.on("*")(seen.append)
    with SyncAlertHooksClient(hooks) as client:
        answers = {name: client.deliver("orb", build_sample(name)) for name in sample_names("orb")}
        unsigned = client.post("/orb", json=orb_event())
    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 200)
    assert unsigned.status_code == 400
    assert sorted(e.type for e in seen) == ["alert.cleared"] + ["alert.triggered"] * 4
    assert {e.provider for e in seen} == {"orb"}


def test_the_pytest_fixtures_give_fresh_orb_and_metronome_alerts(
    orb_alert: dict[str, object], metronome_alert: dict[str, object]
) -> None:
    assert orb_alert["type"] == "subscription.usage_exceeded"
    assert metronome_alert["type"] == "alerts.usage_threshold_reached"
    assert orb_alert["id"] != build_sample("orb_subscription_usage_exceeded")["id"]
    assert metronome_alert["id"] != build_sample("metronome_usage_threshold_reached")["id"]
