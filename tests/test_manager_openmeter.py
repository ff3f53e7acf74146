"""OpenMeter's API end to end against its loopback fake: plan/apply of notification rules
(ownership in the rule's metadata, every field changed in place, enabling and disabling, unmanaged
rules untouched, ``--prune``, a create whose answer was lost found rather than repeated), the
table's rules one line each, and catch-up from ``GET /api/v1/notification/events``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from alerthooks import AlertHooks
from alerthooks.manager import (
    AlertManager,
    ApplyResult,
    ConfigError,
    Credentials,
    Plan,
    RetryPolicy,
    parse_config,
)
from alerthooks.providers import OpenMeter
from alerthooks.testing.openmeter import FakeOpenMeter, openmeter_event

FAST = RetryPolicy(attempts=4, backoff=0.005, max_backoff=0.02, timeout=10)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(scope="module")
def served() -> Iterator[FakeOpenMeter]:
    with FakeOpenMeter(hang=1.0, page_size=2) as fake:
        yield fake


@pytest.fixture
def openmeter_api(served: FakeOpenMeter) -> FakeOpenMeter:
    served.reset()
    return served


def rule(key: str, **fields: Any) -> dict[str, Any]:
    alert = {
        "key": key,
        "name": f"Tokens {key}",
        "thresholds": [{"value": 80, "type": "usage_percentage"}],
        "features": ["gpt4_tokens"],
    }
    alert.update(fields)
    return alert


async def sync(
    alerts: list[dict[str, Any]],
    fake: FakeOpenMeter,
    channel: str,
    *,
    prune: bool = False,
    apply: bool = True,
) -> tuple[Plan, ApplyResult | None]:
    config = parse_config({"openmeter": {"channel_id": channel, "alerts": alerts}})
    async with AlertManager(config, Credentials.from_env(fake.env()), retry=FAST) as manager:
        plan = await manager.plan(prune=prune)
        result = await manager.apply(plan) if apply else None
    return plan, result


def kinds(plan: Plan) -> list[tuple[str, str]]:
    return sorted((c.kind.value, c.key) for c in plan.changes)


def owned(fake: FakeOpenMeter) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["alerthooks_key"]: r for r in fake.rules() if r["metadata"]}


async def test_create_change_disable_and_prune(openmeter_api: FakeOpenMeter) -> None:
    channel = openmeter_api.add_channel()
    openmeter_api.add_rule(
        type="entitlements.balance.threshold",
        name="By hand",
        thresholds=[{"value": 1, "type": "usage_value"}],
        channels=[channel],
    )
    alerts = [rule("a"), rule("b"), rule("c", features=[])]
    plan, result = await sync(alerts, openmeter_api, channel)
    assert kinds(plan) == [("create", "a"), ("create", "b"), ("create", "c")]
    assert result is not None and result.ok
    made = owned(openmeter_api)
    assert made["a"]["name"] == "Tokens a [alerthooks:a]"
    assert [c["id"] for c in made["a"]["channels"]] == [channel]
    again, _ = await sync(alerts, openmeter_api, channel, apply=False)
    assert again.changes == []  # every page read (page size 2, four rules)
    first_id = made["a"]["id"]

    changed = [
        rule("a", thresholds=[{"value": 90, "type": "usage_percentage"}]),
        rule("b", enabled=False),
        rule("c", features=[]),
    ]
    plan, result = await sync(changed, openmeter_api, channel)
    assert kinds(plan) == [("deactivate", "b"), ("update", "a")]
    assert result is not None and result.ok, result
    made = owned(openmeter_api)
    assert made["a"]["thresholds"] == [{"value": 90, "type": "usage_percentage"}]
    assert made["a"]["id"] == first_id  # in place
    assert made["b"]["disabled"] is True

    plan, result = await sync(changed[:1], openmeter_api, channel, prune=True)
    assert kinds(plan) == [("delete", "b"), ("delete", "c")]
    assert result is not None and result.ok
    assert sorted(r["name"] for r in openmeter_api.rules()) == [
        "By hand",
        "Tokens a [alerthooks:a]",
    ]


async def test_a_create_whose_answer_was_lost_is_found_not_repeated(
    openmeter_api: FakeOpenMeter,
) -> None:
    channel = openmeter_api.add_channel()
    openmeter_api.inject("reset", method="POST", path="/api/v1/notification/rules", after=True)
    _, result = await sync([rule("a")], openmeter_api, channel)
    assert result is not None and result.ok, result
    assert len(openmeter_api.rules()) == 1
    assert openmeter_api.calls["POST /api/v1/notification/rules"] == 1


@pytest.mark.parametrize(
    ("table", "line"),
    [
        ({"alerts": [rule("a")]}, "channel_id: required"),
        ({"channel_id": "ch", "alerts": [rule("a", thresholds=[])]}, "thresholds"),
        (
            {"channel_id": "ch", "alerts": [rule("a", thresholds=[{"value": 1, "type": "x"}])]},
            "thresholds.0.type",
        ),
        ({"webhook_url": "https://example.com/openmeter"}, "OPENMETER_WEBHOOK_SECRET"),
    ],
)
def test_table_rules_are_one_line(table: dict[str, Any], line: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"openmeter": table})
    assert line in str(info.value)
    assert "\n" not in str(info.value)


# -- catch-up ----------------------------------------------------------------------------------


async def test_catch_up_reads_the_notification_events_never_delivered(
    openmeter_api: FakeOpenMeter, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in openmeter_api.env().items():
        monkeypatch.setenv(name, value)
    now = datetime.now(timezone.utc)
    delivered = openmeter_event(timestamp=now - timedelta(hours=1))
    missed = [openmeter_event(timestamp=now - timedelta(hours=h)) for h in (2, 3, 4)] + [
        openmeter_event("openmeter_entitlements_reset", timestamp=now - timedelta(hours=5))
    ]
    too_old = openmeter_event(timestamp=now - timedelta(days=5))
    for payload in (delivered, *missed, too_old, openmeter_event("openmeter_invoice_created")):
        moment = datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00"))
        openmeter_api.add_event(payload, created_at=moment)
    openmeter = OpenMeter(SECRET)
    hooks = AlertHooks(providers=[openmeter], store="memory://")
    seen: list[str] = []
    hooks.add_handler(lambda event: seen.append(event.id), "*", name="openmeter.seen")
    body = json.dumps(delivered).encode()
    headers = {k.lower(): v for k, v in openmeter.sign(body).items()}
    assert (await hooks.receive(openmeter, body, headers)).status == 200

    [result] = await hooks.catch_up(timedelta(hours=72))

    assert result.line() == "openmeter: 5 fetched, 4 new, 1 already received"
    assert sorted(seen) == sorted([delivered["id"], *(p["id"] for p in missed)])
    again = await hooks.catch_up(timedelta(hours=72))
    assert again[0].line() == "openmeter: 5 fetched, 0 new, 5 already received"
    await hooks.shutdown()


async def test_catch_up_without_an_api_key_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENMETER_API_KEY", raising=False)
    hooks = AlertHooks(providers=[OpenMeter(SECRET)], store="memory://")
    [result] = await hooks.catch_up(timedelta(hours=1))
    assert "OPENMETER_API_KEY: not set" in result.line()
    await hooks.shutdown()


async def test_a_hand_made_rule_is_declared_and_adopted_in_place(
    openmeter_api: FakeOpenMeter,
) -> None:
    channel = openmeter_api.add_channel()
    hand = openmeter_api.add_rule(
        type="entitlements.balance.threshold",
        name="Tokens at 80",
        thresholds=[{"value": 80, "type": "usage_percentage"}],
        features=["gpt4_tokens"],
        channels=[channel],
    )
    config = parse_config({"openmeter": {"channel_id": channel, "alerts": [rule("a")]}})
    credentials = Credentials.from_env(openmeter_api.env())
    async with AlertManager(config, credentials, retry=FAST) as manager:
        assert len((await manager.plan()).refusals) == 1  # a create would duplicate it
        plan = await manager.plan(adopt=True)
        assert [(c.kind.value, c.key) for c in plan.changes] == [("adopt", "a")]
        assert (await manager.apply(plan)).ok
        assert not (await manager.plan(adopt=True)).has_changes
    [made] = openmeter_api.rules()
    assert made["id"] == hand["id"]
    assert made["metadata"]["alerthooks_key"] == "a"
    assert made["name"] == "Tokens a [alerthooks:a]"
