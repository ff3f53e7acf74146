"""plan/apply for Metronome end to end against its loopback fake: ownership in the uniqueness
key (with hashes of the fields Metronome does not list back), every change a replace (create,
then archive), creates made idempotent by the uniqueness key, unmanaged alerts untouched,
``--prune``, and the table's rules one line each."""

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
from alerthooks.manager.metronome import MetronomeCredentials, split_uniqueness_key
from alerthooks.testing.metronome import FakeMetronome

FAST = RetryPolicy(attempts=4, backoff=0.005, max_backoff=0.02, timeout=10)
SHORT_TIMEOUT = RetryPolicy(attempts=4, backoff=0.005, max_backoff=0.02, timeout=0.3)


@pytest.fixture(scope="module")
def served() -> Iterator[FakeMetronome]:
    with FakeMetronome(hang=1.0, page_size=10) as fake:
        yield fake


@pytest.fixture
def metronome_api(served: FakeMetronome) -> FakeMetronome:
    served.reset()
    return served


def usage(key: str, **fields: Any) -> dict[str, Any]:
    alert = {
        "key": key,
        "name": f"Usage {key}",
        "alert_type": "usage_threshold_reached",
        "threshold": 1000,
        "billable_metric_id": "bm_calls",
        "customer_id": "cus_1",
    }
    alert.update(fields)
    return alert


async def sync(
    alerts: list[dict[str, Any]],
    fake: FakeMetronome,
    *,
    prune: bool = False,
    apply: bool = True,
    retry: RetryPolicy = FAST,
    **table: Any,
) -> tuple[Plan, ApplyResult | None]:
    config = parse_config({"metronome": {"alerts": alerts, **table}})
    async with AlertManager(config, Credentials.from_env(fake.env()), retry=retry) as manager:
        plan = await manager.plan(prune=prune)
        result = await manager.apply(plan) if apply else None
    return plan, result


def kinds(plan: Plan) -> list[tuple[str, str]]:
    return sorted((c.kind.value, c.key) for c in plan.changes)


def live(fake: FakeMetronome) -> dict[str, list[dict[str, Any]]]:
    """Alerts that are not archived, by the key in their uniqueness key."""
    found: dict[str, list[dict[str, Any]]] = {}
    for alert in fake.alerts():
        owned = split_uniqueness_key(alert["uniqueness_key"])
        if owned and alert["status"] != "archived":
            found.setdefault(owned[0], []).append(alert)
    return found


async def test_create_then_converge(metronome_api: FakeMetronome) -> None:
    alerts = [
        usage("calls"),
        usage("spend", alert_type="spend_threshold_reached", customer_id=None),
    ]
    plan, result = await sync(alerts, metronome_api, lookup_customer_id="cus_1")
    assert kinds(plan) == [("create", "calls"), ("create", "spend")]
    assert result is not None, "applied"
    assert result.ok, result.failed
    made = {k: v[0] for k, v in live(metronome_api).items()}
    assert made["calls"]["name"] == "Usage calls [alerthooks:calls]"
    assert made["calls"]["_customer_id"] == "cus_1" and made["spend"]["_customer_id"] is None
    assert made["calls"]["_billable_metric_id"] == "bm_calls"
    again, _ = await sync(alerts, metronome_api, apply=False, lookup_customer_id="cus_1")
    assert not again.has_changes


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"threshold": 5}, "threshold: 1000.0 → 5.0"),
        ({"name": "Renamed"}, "name: 'Usage calls' → 'Renamed'"),
        ({"billable_metric_id": "bm_other"}, "billable_metric_id: '(other)' → 'bm_other'"),
        ({"credit_type_id": "ct_eur"}, "credit_type_id: '(other)' → 'ct_eur'"),
    ],
)
async def test_every_change_is_a_replace_create_then_archive(
    metronome_api: FakeMetronome, change: dict[str, Any], detail: str
) -> None:
    await sync([usage("calls")], metronome_api)
    (old,) = live(metronome_api)["calls"]
    plan, result = await sync([usage("calls", **change)], metronome_api)
    assert kinds(plan) == [("replace", "calls")]
    assert detail in plan.changes[0].detail
    assert result is not None, "applied"
    assert result.ok, result.failed
    assert result.outcomes[0].message.endswith(f", archived {old['id']}")
    (new,) = live(metronome_api)["calls"]
    assert new["id"] != old["id"]
    assert {a["id"]: a["status"] for a in metronome_api.alerts()}[old["id"]] == "archived"
    assert not (await sync([usage("calls", **change)], metronome_api, apply=False))[0].has_changes


async def test_an_alert_disabled_in_the_app_is_replaced_by_an_enabled_one(
    metronome_api: FakeMetronome,
) -> None:
    await sync([usage("calls")], metronome_api)
    (old,) = live(metronome_api)["calls"]
    metronome_api._alerts[old["id"]]["status"] = "disabled"
    plan, result = await sync([usage("calls")], metronome_api)
    assert kinds(plan) == [("replace", "calls")]
    assert "status: 'disabled' → 'enabled'" in plan.changes[0].detail
    assert result is not None and result.ok
    assert [a["status"] for a in live(metronome_api)["calls"]] == ["enabled"]


async def test_unmanaged_alerts_are_never_touched(metronome_api: FakeMetronome) -> None:
    mine = metronome_api.add_alert("By hand", "spend_threshold_reached", 5, customer_id="cus_1")
    marked = metronome_api.add_alert(
        "Copied [alerthooks:calls]",
        "usage_threshold_reached",
        1,
        customer_id="cus_1",
        uniqueness_key="someone-else",
    )
    plan, result = await sync([usage("calls")], metronome_api, prune=True)
    assert kinds(plan) == [("create", "calls")]
    assert plan.providers[0].unmanaged == 2
    assert result is not None and result.ok
    by_id = {a["id"]: a for a in metronome_api.alerts()}
    assert by_id[mine["id"]]["status"] == by_id[marked["id"]]["status"] == "enabled"


async def test_keys_that_left_the_config_stay_unless_pruned(metronome_api: FakeMetronome) -> None:
    await sync([usage("a"), usage("b")], metronome_api)
    plan, _ = await sync([usage("a")], metronome_api)
    assert kinds(plan) == [("keep", "b")]
    assert sorted(live(metronome_api)) == ["a", "b"]
    plan, result = await sync([usage("a")], metronome_api, prune=True)
    assert kinds(plan) == [("delete", "b")]
    assert result is not None and result.ok
    assert sorted(live(metronome_api)) == ["a"]


async def test_a_retried_create_finds_the_alert_its_first_attempt_made(
    metronome_api: FakeMetronome,
) -> None:
    metronome_api.inject("reset", method="POST", path="/v1/alerts/create", after=True)
    _, result = await sync([usage("calls")], metronome_api)
    assert result is not None, "applied"
    assert result.ok, result.failed
    assert metronome_api.calls["POST /v1/alerts/create"] == 2  # the second answered 409
    assert len(live(metronome_api)["calls"]) == 1
    assert not (await sync([usage("calls")], metronome_api, apply=False))[0].has_changes


async def test_lost_create_answers_do_not_duplicate_on_rerun(metronome_api: FakeMetronome) -> None:
    metronome_api.inject("timeout", method="POST", path="/v1/alerts/create", after=True, times=4)
    _, result = await sync([usage("calls")], metronome_api, retry=SHORT_TIMEOUT)
    assert result is not None and len(result.failed) == 1
    plan, _ = await sync([usage("calls")], metronome_api)
    assert not plan.has_changes
    assert len(live(metronome_api)["calls"]) == 1


async def test_an_alert_archived_by_hand_is_created_anew(metronome_api: FakeMetronome) -> None:
    await sync([usage("calls")], metronome_api)
    (old,) = live(metronome_api)["calls"]
    metronome_api._alerts[old["id"]]["status"] = "archived"
    plan, result = await sync([usage("calls")], metronome_api)
    assert kinds(plan) == [("create", "calls")]
    assert result is not None, "applied"
    assert result.ok, result.failed
    (new,) = live(metronome_api)["calls"]
    assert new["id"] != old["id"] and new["uniqueness_key"] != old["uniqueness_key"]


@pytest.mark.parametrize(("kind", "after"), [("429", False), ("500", True)])
async def test_faults_are_retried_without_duplicates(
    metronome_api: FakeMetronome, kind: Any, after: bool
) -> None:
    metronome_api.inject(kind, path="/v1/alerts/create", times=2, after=after)
    metronome_api.inject(kind, path="/v1/customer-alerts/list")
    alerts = [usage("a"), usage("b")]
    _, result = await sync(alerts, metronome_api)
    assert result is not None, "applied"
    assert result.ok, result.failed
    assert {k: len(v) for k, v in live(metronome_api).items()} == {"a": 1, "b": 1}


async def test_lists_every_page(metronome_api: FakeMetronome) -> None:
    for index in range(25):
        metronome_api.add_alert(f"Other {index}", "spend_threshold_reached", 1, customer_id="cus_1")
    plan, _ = await sync([usage("calls")], metronome_api, apply=False)
    assert plan.providers[0].unmanaged == 25
    assert metronome_api.calls["POST /v1/customer-alerts/list"] == 3


@pytest.mark.parametrize(
    ("table", "line"),
    [
        (
            {"alerts": [usage("a", enabled=False)]},
            "metronome.alerts[0] (key 'a'): enabled: Metronome alerts cannot be disabled",
        ),
        (
            {"alerts": [usage("a", billable_metric_id=None)]},
            "metronome.alerts[0] (key 'a'): billable_metric_id: required",
        ),
        ({"alerts": [usage("a", threshold="x")]}, "(key 'a'): threshold: must be a number"),
        (
            {"alerts": [usage("a", customer_id=None)]},
            "metronome: lookup_customer_id: required by metronome.alerts[0] (key 'a')",
        ),
        (
            {"webhook_url": "https://example.com/m"},
            "metronome: webhook_url: Metronome's API has no webhook endpoints",
        ),
    ],
)
def test_table_rules_are_one_line_naming_key_and_field(table: dict[str, Any], line: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config({"metronome": table})
    (only,) = str(refused.value).splitlines()
    assert line in only


def test_credentials_come_from_the_environment_and_hide_the_key() -> None:
    env = {"METRONOME_API_KEY": "tok", "ALERTHOOKS_METRONOME_API_BASE": "http://x"}
    creds = MetronomeCredentials.from_env(env)
    assert repr(creds) == "MetronomeCredentials(api_key=set, api_base='http://x', mode=None)"
    with pytest.raises(ConfigError, match=r"^METRONOME_API_KEY: not set"):
        AlertManager(parse_config({"metronome": {"alerts": []}}), Credentials.from_env({}))
