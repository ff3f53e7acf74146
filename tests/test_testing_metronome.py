"""The Metronome test kit: its samples registered with their default, ``metronome_event``
fresh with its alert timestamp now (written with ``Z``, as Metronome does, and read on every
Python), and ``deliver("metronome", ...)`` signed as Metronome signs."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import Metronome, metronome
from alerthooks.store.memory import MemoryStore
from alerthooks.testing import SyncAlertHooksClient, build_sample, default_sample, sample_names
from alerthooks.testing.metronome import metronome_event


def test_metronome_samples_are_registered_with_their_default() -> None:
    assert default_sample("metronome") == "metronome_usage_threshold_reached"
    assert sample_names("metronome") == [
        "metronome_invoice_finalized",
        "metronome_low_remaining_credit_balance_reached",
        "metronome_spend_threshold_reached",
        "metronome_usage_threshold_reached",
        "metronome_usage_threshold_resolved",
    ]


def test_metronome_event_is_fresh_and_its_alert_timestamp_now() -> None:
    first, second = metronome_event(), metronome_event()
    assert first["id"] != second["id"] and len(first["id"]) == 36
    stamp = first["properties"]["timestamp"]
    assert stamp.endswith("Z") and len(stamp) == len("2024-10-07T17:15:45.789Z")
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert abs(moment.timestamp() - time.time()) < 5
    given = metronome_event(
        "metronome_usage_threshold_resolved",
        timestamp=datetime(2025, 1, 2, 3, 4, 5, 6000, tzinfo=timezone.utc),
    )
    assert given["properties"]["timestamp"] == "2025-01-02T03:04:05.006Z"
    invoice = metronome_event("metronome_invoice_finalized")
    assert "timestamp" not in invoice["properties"]  # only alerts carry one


def test_a_z_timestamp_reads_as_utc() -> None:
    expected = datetime(2025, 1, 2, 3, 4, 5, 6000, tzinfo=timezone.utc)
    assert metronome.parse_date("2025-01-02T03:04:05.006Z") == expected
    assert metronome.parse_date(" 2025-01-02T03:04:05.006z ") == expected
    event = metronome.normalize(metronome_event(timestamp=expected))
    assert event.occurred_at == expected == event.triggered_at


def test_client_delivers_every_metronome_sample_signed() -> None:
    seen: list[AlertEvent] = []
    hooks = AlertHooks(providers=[Metronome(secret="metronome-secret")], store=MemoryStore())
    hooks.on("*")(seen.append)
    with SyncAlertHooksClient(hooks) as client:
        names = sample_names("metronome")
        answers = {name: client.deliver("metronome", build_sample(name)) for name in names}
        unsigned = client.post("/metronome", json=metronome_event())
    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 200)
    assert unsigned.status_code == 400
    assert sorted(e.type for e in seen) == ["alert.cleared"] + ["alert.triggered"] * 3
