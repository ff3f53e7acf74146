"""plan/apply for Lago end to end against its loopback fake: ownership in the alert's name (and
its code set to the key), name/thresholds/metric changed in place, a new type or scope a replace
(delete first: Lago allows one alert per type there), unmanaged alerts untouched, ``--prune``,
retried creates found by their code, and the table's rules one line each."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from alerthooks.manager import (
    AlertManager,
    ApplyResult,
    ConfigError,
    Credentials,
    Plan,
    RetryPolicy,
    parse_config,
)
from alerthooks.marker import split_marker
from alerthooks.testing.lago import FakeLago

FAST = RetryPolicy(attempts=4, backoff=0.005, max_backoff=0.02, timeout=10)


@pytest.fixture(scope="module")
def served() -> Iterator[FakeLago]:
    with FakeLago(hang=1.0, page_size=3) as fake:
        yield fake


@pytest.fixture
def lago_api(served: FakeLago) -> FakeLago:
    served.reset()
    return served


def units(key: str, **fields: Any) -> dict[str, Any]:
    alert = {
        "key": key,
        "name": f"Units {key}",
        "alert_type": "billable_metric_current_usage_units",
        "external_subscription_id": "sub_1",
        "billable_metric_code": f"metric_{key}",
        "thresholds": [1000, 2000],
    }
    alert.update(fields)
    return alert


def wallet(key: str, **fields: Any) -> dict[str, Any]:
    alert = {
        "key": key,
        "name": f"Wallet {key}",
        "alert_type": "wallet_credits_balance",
        "external_customer_id": "cus_1",
        "wallet_code": "main",
        "thresholds": [{"value": 100, "code": "low"}, {"value": 50}],
    }
    alert.update(fields)
    return alert


async def sync(
    alerts: list[dict[str, Any]], fake: FakeLago, *, prune: bool = False, apply: bool = True
) -> tuple[Plan, ApplyResult | None]:
    config = parse_config({"lago": {"alerts": alerts}})
    env = fake.env()
    async with AlertManager(config, Credentials.from_env(env), retry=FAST) as manager:
        plan = await manager.plan(prune=prune)
        result = await manager.apply(plan) if apply else None
    return plan, result


def kinds(plan: Plan) -> list[tuple[str, str]]:
    return sorted((c.kind.value, c.key) for c in plan.changes)


def owned(fake: FakeLago) -> dict[str, dict[str, Any]]:
    return {
        key: alert
        for alert in fake.alerts()
        if (key := split_marker(alert["name"] or "")[1]) is not None
    }


async def test_create_then_converge(lago_api: FakeLago) -> None:
    alerts = [units("calls"), units("tokens"), wallet("credits")]
    plan, result = await sync(alerts, lago_api)
    assert kinds(plan) == [("create", "calls"), ("create", "credits"), ("create", "tokens")]
    assert result is not None and result.ok
    made = owned(lago_api)
    assert set(made) == {"calls", "tokens", "credits"}
    assert made["calls"]["code"] == "calls"
    assert made["calls"]["name"] == "Units calls [alerthooks:calls]"
    assert [t["value"] for t in made["credits"]["thresholds"]] == ["100.0", "50.0"]
    assert made["credits"]["_scope"] == "wallet:cus_1/main"
    again, _ = await sync(alerts, lago_api, apply=False)
    assert again.changes == []


async def test_name_thresholds_and_metric_change_in_place(lago_api: FakeLago) -> None:
    await sync([units("calls")], lago_api)
    before = owned(lago_api)["calls"]["lago_id"]
    changed = units("calls", name="Renamed", thresholds=[1500], billable_metric_code="other")
    plan, result = await sync([changed], lago_api)
    assert kinds(plan) == [("update", "calls")]
    assert result is not None and result.ok
    after = owned(lago_api)["calls"]
    assert after["lago_id"] == before
    assert (after["name"], [t["value"] for t in after["thresholds"]]) == (
        "Renamed [alerthooks:calls]",
        ["1500.0"],
    )
    assert after["billable_metric"]["code"] == "other"


async def test_a_new_type_is_a_replace_that_deletes_first(lago_api: FakeLago) -> None:
    await sync([units("calls")], lago_api)
    before = owned(lago_api)["calls"]["lago_id"]
    amount = units("calls", alert_type="billable_metric_current_usage_amount")
    plan, result = await sync([amount], lago_api)
    assert kinds(plan) == [("replace", "calls")]
    assert result is not None and result.ok, result
    after = owned(lago_api)["calls"]
    assert after["lago_id"] != before and after["alert_type"].endswith("_amount")
    assert len(lago_api.alerts()) == 1


async def test_unmanaged_alerts_are_never_touched_and_prune_deletes_managed_ones(
    lago_api: FakeLago,
) -> None:
    lago_api.add_alert(
        "subscription:sub_1",
        alert_type="current_usage_amount",
        code="by_hand",
        name="Made in Lago",
        thresholds=[{"value": 10}],
    )
    await sync([units("calls"), units("gone")], lago_api)
    plan, _ = await sync([units("calls")], lago_api, apply=False)
    assert kinds(plan) == [("keep", "gone")]  # reported, kept unless pruned
    plan, result = await sync([units("calls")], lago_api, prune=True)
    assert kinds(plan) == [("delete", "gone")]
    assert result is not None and result.ok
    assert {a["code"] for a in lago_api.alerts()} == {"calls", "by_hand"}


async def test_a_retried_create_finds_the_alert_its_first_attempt_made(
    lago_api: FakeLago,
) -> None:
    lago_api.inject("reset", method="POST", path="/api/v1/subscriptions/{sub}/alerts", after=True)
    _, result = await sync([units("calls")], lago_api)
    assert result is not None and result.ok, result
    assert len(lago_api.alerts()) == 1
    assert lago_api.calls["POST /api/v1/subscriptions/{sub}/alerts"] == 2


async def test_lists_every_page(lago_api: FakeLago) -> None:
    alerts = [
        units(f"a{i}", external_subscription_id="sub_2", alert_type=kind)
        for i, kind in enumerate(
            [
                "billable_metric_current_usage_units",
                "billable_metric_current_usage_amount",
                "billable_metric_lifetime_usage_units",
            ]
        )
    ] + [
        units("b", external_subscription_id="sub_2", billable_metric_code="other_metric"),
        units(
            "c",
            external_subscription_id="sub_2",
            alert_type="current_usage_amount",
            billable_metric_code=None,
        ),
    ]
    _, result = await sync(alerts, lago_api)
    assert result is not None and result.ok, result
    plan, _ = await sync(alerts, lago_api, apply=False)
    assert plan.changes == []
    assert lago_api.calls["GET /api/v1/subscriptions/{sub}/alerts"] == 1 + 2  # 5 in pages of 3


@pytest.mark.parametrize(
    ("alert", "line"),
    [
        (units("x", enabled=False), "lago.alerts[0] (key 'x'): enabled: Lago alerts have no"),
        (units("x", billable_metric_code=None), "billable_metric_code: required"),
        (units("x", external_subscription_id=None), "external_subscription_id: required"),
        (wallet("x", wallet_code=None), "external_customer_id, wallet_code: required"),
        (units("x", thresholds=[1, 1]), "thresholds: the values must differ"),
        (units("x", thresholds=["many"]), "thresholds.0.value"),
    ],
)
def test_table_rules_are_one_line_naming_key_and_field(alert: dict[str, Any], line: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"lago": {"alerts": [alert]}})
    assert line in str(info.value)
    assert "\n" not in str(info.value)


def test_webhook_url_is_refused_naming_what_to_do() -> None:
    with pytest.raises(ConfigError, match="LAGO_WEBHOOK_SECRET"):
        parse_config({"lago": {"webhook_url": "https://example.com/lago", "alerts": []}})


async def test_a_hand_made_alert_at_an_entrys_identity_is_adopted_in_place(
    lago_api: FakeLago,
) -> None:
    hand = lago_api.add_alert(
        "subscription:sub_1",
        alert_type="billable_metric_current_usage_units",
        code="made_by_hand",
        name="Calls (by hand)",
        billable_metric_code="metric_calls",
        thresholds=[{"value": 500}],
    )
    config = parse_config({"lago": {"alerts": [units("calls")]}})
    async with AlertManager(config, Credentials.from_env(lago_api.env()), retry=FAST) as manager:
        refused = await manager.plan()  # without --adopt: a create would duplicate it
        assert len(refused.refusals) == 1 and hand["lago_id"] in refused.refusals[0]
        plan = await manager.plan(adopt=True)
        assert [(c.kind.value, c.key) for c in plan.changes] == [("adopt", "calls")]
        assert (await manager.apply(plan)).ok
        assert not (await manager.plan(adopt=True)).has_changes
    [alert] = lago_api.alerts()
    assert alert["lago_id"] == hand["lago_id"]  # in place
    assert (alert["code"], alert["name"]) == ("calls", "Units calls [alerthooks:calls]")
    assert [t["value"] for t in alert["thresholds"]] == ["1000.0", "2000.0"]
