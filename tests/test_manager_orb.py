"""plan/apply for Orb end to end against its loopback fake: alerts found by their identity
(type and scope: Orb alerts carry no marker), thresholds updated in place, enabled and disabled,
never deleted, retried without duplicates, and the table's rules one line each."""

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
from alerthooks.manager.orb import OrbAPI, OrbCredentials
from alerthooks.manager.plan import render_plan
from alerthooks.testing.orb import FakeOrb

FAST = RetryPolicy(attempts=4, backoff=0.005, max_backoff=0.02, timeout=10)
SHORT_TIMEOUT = RetryPolicy(attempts=4, backoff=0.005, max_backoff=0.02, timeout=0.3)


@pytest.fixture(scope="module")
def served() -> Iterator[FakeOrb]:
    with FakeOrb(hang=1.0) as fake:
        yield fake


@pytest.fixture
def orb_api(served: FakeOrb) -> FakeOrb:
    served.reset()
    return served


def usage(key: str, **fields: Any) -> dict[str, Any]:
    alert = {
        "key": key,
        "type": "usage_exceeded",
        "subscription_id": "sub_1",
        "metric_id": f"metric_{key}",
        "thresholds": [100, 1000],
    }
    alert.update(fields)
    return alert


def credit(key: str, **fields: Any) -> dict[str, Any]:
    alert = {
        "key": key,
        "type": "credit_balance_dropped",
        "customer_id": "cus_1",
        "currency": "USD",
        "thresholds": [10],
    }
    alert.update(fields)
    return alert


async def sync(
    alerts: list[dict[str, Any]],
    fake: FakeOrb,
    *,
    prune: bool = False,
    apply: bool = True,
    retry: RetryPolicy = FAST,
) -> tuple[Plan, ApplyResult | None]:
    config = parse_config({"orb": {"alerts": alerts}})
    async with AlertManager(config, Credentials.from_env(fake.env()), retry=retry) as manager:
        plan = await manager.plan(prune=prune)
        result = await manager.apply(plan) if apply else None
    return plan, result


def kinds(plan: Plan) -> list[tuple[str, str]]:
    return sorted((c.kind.value, c.key) for c in plan.changes)


def thresholds(alert: dict[str, Any]) -> list[float]:
    return [t["value"] for t in alert["thresholds"] or ()]


async def test_create_then_converge(orb_api: FakeOrb) -> None:
    alerts = [usage("calls"), usage("cost", type="cost_exceeded", metric_id=None), credit("low")]
    plan, result = await sync(alerts, orb_api)
    assert kinds(plan) == [("create", "calls"), ("create", "cost"), ("create", "low")]
    assert result is not None, "applied"
    assert result.ok, result.failed
    made = {a["type"]: a for a in orb_api.alerts()}
    assert made["usage_exceeded"]["metric"] == {"id": "metric_calls"}
    assert made["usage_exceeded"]["subscription"] == {"id": "sub_1"}
    assert thresholds(made["cost_exceeded"]) == [100.0, 1000.0]
    assert made["credit_balance_dropped"]["customer"]["id"] == "cus_1"
    assert made["credit_balance_dropped"]["currency"] == "USD"
    again, _ = await sync(alerts, orb_api, apply=False)
    assert not again.has_changes
    assert orb_api.calls["GET /v1/alerts"] == 4  # sub_1 and cus_1, twice


async def test_thresholds_and_enabled_change_in_place(orb_api: FakeOrb) -> None:
    await sync([usage("calls"), credit("low")], orb_api)
    ids = {a["type"]: a["id"] for a in orb_api.alerts()}
    alerts = [usage("calls", thresholds=[5000, 50]), credit("low", enabled=False)]
    plan, result = await sync(alerts, orb_api)
    assert kinds(plan) == [("deactivate", "low"), ("update", "calls")]
    assert "thresholds: [100, 1000] → [50, 5000]" in plan.changes[0].detail
    assert result is not None, "applied"
    assert result.ok, result.failed
    after = {a["type"]: a for a in orb_api.alerts()}
    assert {t: a["id"] for t, a in after.items()} == ids  # the same alerts
    assert sorted(thresholds(after["usage_exceeded"])) == [50.0, 5000.0]
    assert after["credit_balance_dropped"]["enabled"] is False
    assert orb_api.calls["PUT /v1/alerts/{id}"] == 1
    plan, result = await sync([usage("calls", thresholds=[7]), credit("low")], orb_api)
    assert kinds(plan) == [("activate", "low"), ("update", "calls")]
    assert result is not None and result.ok
    assert all(a["enabled"] for a in orb_api.alerts())
    assert not (await sync([usage("calls", thresholds=[7]), credit("low")], orb_api))[0].has_changes


async def test_an_alert_created_disabled_is_disabled_after_creation(orb_api: FakeOrb) -> None:
    _, result = await sync([credit("low", enabled=False)], orb_api)
    assert result is not None and result.ok
    (alert,) = orb_api.alerts()
    assert alert["enabled"] is False
    assert orb_api.calls["POST /v1/alerts/{id}/disable"] == 1


async def test_alerts_at_other_identities_are_unmanaged_and_untouched(orb_api: FakeOrb) -> None:
    other = orb_api.add_alert(
        "usage_exceeded", subscription_id="sub_1", metric_id="m_x", thresholds=[1]
    )
    plan_alert = orb_api.add_alert(
        "usage_exceeded",
        subscription_id="sub_1",
        metric_id="metric_calls",
        thresholds=[9],
        plan_id="plan_1",
    )
    plan, result = await sync([usage("calls")], orb_api, prune=True)
    assert kinds(plan) == [("create", "calls")]
    assert plan.providers[0].unmanaged == 2
    assert result is not None and result.ok
    untouched = {a["id"]: a for a in orb_api.alerts()}
    assert untouched[other["id"]] == other and untouched[plan_alert["id"]] == plan_alert


async def test_an_alert_made_by_hand_at_a_configured_identity_is_adopted(orb_api: FakeOrb) -> None:
    made = orb_api.add_alert(
        "usage_exceeded", subscription_id="sub_1", metric_id="metric_calls", thresholds=[3]
    )
    plan, result = await sync([usage("calls")], orb_api)
    assert kinds(plan) == [("update", "calls")]
    assert result is not None and result.ok
    (alert,) = orb_api.alerts()
    assert alert["id"] == made["id"] and thresholds(alert) == [100.0, 1000.0]


async def test_an_entry_leaving_the_file_leaves_its_alert_alone_even_with_prune(
    orb_api: FakeOrb,
) -> None:
    await sync([usage("calls"), credit("low")], orb_api)
    before = orb_api.alerts()
    plan, _ = await sync([credit("low")], orb_api, prune=True)
    assert not plan.has_changes
    assert plan.providers[0].unmanaged == 0  # sub_1 is no longer read at all
    assert orb_api.alerts() == before


async def test_changing_an_identity_creates_the_new_alert_and_leaves_the_old(
    orb_api: FakeOrb,
) -> None:
    await sync([usage("calls")], orb_api)
    plan, result = await sync([usage("calls", metric_id="metric_new")], orb_api)
    assert kinds(plan) == [("create", "calls")]
    assert plan.providers[0].unmanaged == 1
    assert result is not None and result.ok
    assert sorted(a["metric"]["id"] for a in orb_api.alerts()) == ["metric_calls", "metric_new"]


@pytest.mark.parametrize(("kind", "after"), [("429", False), ("500", True), ("reset", True)])
async def test_faults_are_retried_without_duplicates(
    orb_api: FakeOrb, kind: Any, after: bool
) -> None:
    orb_api.inject(
        kind, method="POST", path="/v1/alerts/subscription_id/{id}", times=2, after=after
    )
    orb_api.inject(kind, method="GET", path="/v1/alerts")
    alerts = [usage("a"), usage("b")]
    _, result = await sync(alerts, orb_api, retry=SHORT_TIMEOUT)
    assert result is not None, "applied"
    assert result.ok, result.failed
    assert sorted(a["metric"]["id"] for a in orb_api.alerts()) == ["metric_a", "metric_b"]
    assert not (await sync(alerts, orb_api, apply=False))[0].has_changes


async def test_lost_create_answers_do_not_duplicate_on_rerun(orb_api: FakeOrb) -> None:
    orb_api.inject(
        "timeout", method="POST", path="/v1/alerts/customer_id/{id}", after=True, times=4
    )
    _, result = await sync([credit("low")], orb_api, retry=SHORT_TIMEOUT)
    assert result is not None and len(result.failed) == 1
    assert "gave up after 4 attempts" in (result.failed[0].error or "")
    plan, result = await sync([credit("low")], orb_api)
    assert not plan.has_changes
    assert len(orb_api.alerts()) == 1


async def test_lists_every_page(orb_api: FakeOrb) -> None:
    for index in range(230):
        orb_api.add_alert(
            "usage_exceeded", subscription_id="sub_1", metric_id=f"m{index}", thresholds=[1]
        )
    plan, _ = await sync([usage("calls")], orb_api, apply=False)
    assert plan.providers[0].unmanaged == 230
    assert orb_api.calls["GET /v1/alerts"] == 3


async def test_a_refusal_is_one_line_naming_the_alert(orb_api: FakeOrb) -> None:
    orb_api.add_alert("cost_exceeded", subscription_id="sub_1", thresholds=[1], plan_id="plan_1")
    api = OrbAPI("orb_test_fake", [], api_base=orb_api.url, retry=FAST)
    try:
        config = parse_config(
            {"orb": {"alerts": [usage("x", metric_id=None, type="cost_exceeded")]}}
        )
        alert = config.orb.alerts[0]
        await api.create_alert(alert, "k1")
        with pytest.raises(Exception) as refused:
            await api.create_alert(alert, "k2")
    finally:
        await api.aclose()
    assert str(refused.value) == (
        "orb: create alert 'x': HTTP 400: an alert of type cost_exceeded already exists here"
    )


async def test_the_plan_says_how_orb_alerts_are_found_and_where_endpoints_are_set(
    orb_api: FakeOrb,
) -> None:
    from rich.console import Console

    plan, _ = await sync([usage("calls")], orb_api, apply=False)
    console = Console(record=True, width=200)
    render_plan(plan, console)
    header = console.export_text().splitlines()[0]
    assert header.startswith("orb: test mode (ALERTHOOKS_ORB_MODE; key orb_te…); alerts found")
    assert "webhook endpoints set in the Orb dashboard" in header


@pytest.mark.parametrize(
    ("entry", "line"),
    [
        (usage("a", subscription_id=None), "orb.alerts[0] (key 'a'): subscription_id: required"),
        (usage("a", metric_id=None), "orb.alerts[0] (key 'a'): metric_id: required"),
        (usage("a", thresholds=[]), "orb.alerts[0] (key 'a'): thresholds: at least one"),
        (usage("a", thresholds=["x"]), "thresholds: must be a list of numbers >= 0"),
        (credit("a", currency=None), "orb.alerts[0] (key 'a'): customer_id and currency: required"),
        (credit("a", metric_id="m"), "orb.alerts[0] (key 'a'): subscription_id/metric_id: not for"),
        (usage("a", type="spend"), "orb.alerts[0] (key 'a'): type: Input should be"),
    ],
)
def test_table_rules_are_one_line_naming_key_and_field(entry: dict[str, Any], line: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config({"orb": {"alerts": [entry]}})
    (only,) = str(refused.value).splitlines()
    assert line in only


def test_one_alert_per_identity_and_no_webhook_url() -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config({"orb": {"alerts": [usage("a", metric_id="m"), usage("b", metric_id="m")]}})
    assert "orb.alerts[1] (key 'b') is the same alert as orb.alerts[0] (key 'a')" in str(
        refused.value
    )
    with pytest.raises(ConfigError) as refused:
        parse_config({"orb": {"webhook_url": "https://example.com/orb", "alerts": []}})
    assert str(refused.value).startswith(
        "alerts.toml: orb: webhook_url: Orb's API has no webhook endpoints"
    )


def test_credentials_come_from_the_environment_and_hide_the_key() -> None:
    creds = OrbCredentials.from_env({"ORB_API_KEY": " k_1 ", "ALERTHOOKS_ORB_API_BASE": "http://x"})
    assert (creds.api_key, creds.api_base) == ("k_1", "http://x")
    assert repr(creds) == "OrbCredentials(api_key=set, api_base='http://x', mode=None)"
    with pytest.raises(ConfigError, match=r"^ORB_API_KEY: not set \(\[orb\] is configured\)$"):
        AlertManager(parse_config({"orb": {"alerts": []}}), Credentials.from_env({}))


def test_the_example_file_shows_every_orb_and_metronome_field() -> None:
    from pathlib import Path

    from alerthooks.manager import load_config

    config = load_config(Path(__file__).resolve().parents[1] / "examples" / "alerts.toml")
    for table in (config.orb, config.metronome):
        assert table is not None
        fields = set().union(*(a.model_fields_set for a in table.alerts))
        assert fields == set(type(table.alerts[0]).model_fields)
    assert config.metronome.lookup_customer_id


@pytest.mark.parametrize("provider", ["orb", "metronome"])
async def test_the_mode_is_live_unless_the_environment_says_test(provider: str) -> None:
    config = parse_config({provider: {"alerts": []}})
    key = {f"{provider.upper()}_API_KEY": "k_1"}
    mode = f"ALERTHOOKS_{provider.upper()}_MODE"
    async with AlertManager(config, Credentials.from_env(key)) as manager:
        assert manager.live_providers() == [provider]
    async with AlertManager(config, Credentials.from_env({**key, mode: "test"})) as manager:
        assert manager.live_providers() == []
    with pytest.raises(ConfigError) as refused:
        AlertManager(config, Credentials.from_env({**key, mode: "prod"}))
    assert str(refused.value) == f"{mode}: must be live or test, got 'prod'"
