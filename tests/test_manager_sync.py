"""plan/apply end to end against the loopback fakes of Stripe and Chargebee."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from alerthooks.manager import (
    AlertManager,
    ApplyResult,
    ChangeKind,
    Credentials,
    Plan,
    PlanError,
    RetryPolicy,
    parse_config,
)
from alerthooks.manager.stripe import API_VERSION
from alerthooks.testing.fakes import FakeChargebee, FakeStripe

# Quick backoff; a timeout long enough that a loaded machine never trips it by accident...
FAST = RetryPolicy(attempts=4, backoff=0.005, max_backoff=0.02, timeout=10)
# ...and a short one for the tests that inject timeouts (the fakes hold those answers 1 s).
SHORT_TIMEOUT = RetryPolicy(attempts=4, backoff=0.005, max_backoff=0.02, timeout=0.3)
CB_AUTH = {"CHARGEBEE_WEBHOOK_USERNAME": "hook-user", "CHARGEBEE_WEBHOOK_PASSWORD": "hook-pass"}


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeStripe, FakeChargebee]]:
    with FakeStripe(hang=1.0) as stripe_api, FakeChargebee(hang=1.0) as chargebee_api:
        yield stripe_api, chargebee_api


@pytest.fixture
def stripe_api(fakes: tuple[FakeStripe, FakeChargebee]) -> FakeStripe:
    fakes[0].reset()
    return fakes[0]


@pytest.fixture
def chargebee_api(fakes: tuple[FakeStripe, FakeChargebee]) -> FakeChargebee:
    fakes[1].reset()
    return fakes[1]


def s_alert(key: str, **fields: Any) -> dict[str, Any]:
    alert = {"key": key, "title": f"Alert {key}", "meter": "mtr_1", "gte": 100}
    alert.update(fields)
    return alert


def c_alert(key: str, **fields: Any) -> dict[str, Any]:
    alert = {
        "key": key,
        "name": f"Alert {key}",
        "metered_feature_id": "api-calls",
        "threshold": {"mode": "absolute", "value": 100},
    }
    alert.update(fields)
    return alert


def config(
    stripe_alerts: list[dict[str, Any]] | None = None,
    chargebee_alerts: list[dict[str, Any]] | None = None,
    **sections: dict[str, Any],
) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if stripe_alerts is not None:
        data["stripe"] = {"alerts": stripe_alerts, **sections.get("stripe", {})}
    if chargebee_alerts is not None:
        data["chargebee"] = {"alerts": chargebee_alerts, **sections.get("chargebee", {})}
    return data


async def sync(
    data: dict[str, Any],
    stripe_api: FakeStripe,
    chargebee_api: FakeChargebee,
    *,
    prune: bool = False,
    apply: bool = True,
    concurrency: int = 8,
    retry: RetryPolicy = FAST,
    allow_duplicates: bool = False,
) -> tuple[Plan, ApplyResult | None]:
    env = {**stripe_api.env(), **chargebee_api.env(), **CB_AUTH}
    manager = AlertManager(
        parse_config(data), Credentials.from_env(env), concurrency=concurrency, retry=retry
    )
    async with manager:
        plan = await manager.plan(prune=prune, allow_duplicates=allow_duplicates)
        result = await manager.apply(plan) if apply else None
    return plan, result


def kinds(plan: Plan) -> list[tuple[str, str, str]]:
    return sorted((c.provider, c.kind.value, c.key) for c in plan.changes)


def managed(fake: FakeStripe | FakeChargebee) -> dict[str, list[dict[str, Any]]]:
    """Live alerts by key, read straight from the fake's state."""
    found: dict[str, list[dict[str, Any]]] = {}
    for alert in fake.alerts():
        if isinstance(fake, FakeStripe):
            title = alert["title"]
            key = title.rsplit("[alerthooks:", 1)[1][:-1] if "[alerthooks:" in title else None
        else:
            key = json.loads(alert["meta"])["alerthooks"]["key"] if alert.get("meta") else None
        if key:
            found.setdefault(key, []).append(alert)
    return found


async def test_create_from_empty_then_converge(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee
) -> None:
    data = config(
        [s_alert("a"), s_alert("b", customer="cus_1", enabled=False)],
        [c_alert("x"), c_alert("y", subscription_id="sub_1", description="d", enabled=False)],
    )
    plan, result = await sync(data, stripe_api, chargebee_api)
    assert kinds(plan) == [
        ("chargebee", "create", "x"),
        ("chargebee", "create", "y"),
        ("stripe", "create", "a"),
        ("stripe", "create", "b"),
    ]
    assert result is not None and result.ok
    stripe_state = managed(stripe_api)
    assert sorted(stripe_state) == ["a", "b"]
    b = stripe_state["b"][0]
    assert b["title"] == "Alert b [alerthooks:b]"
    assert b["status"] == "inactive"
    assert b["usage_threshold"]["filters"] == [{"customer": "cus_1", "type": "customer"}]
    chargebee_state = managed(chargebee_api)
    assert sorted(chargebee_state) == ["x", "y"]
    y = chargebee_state["y"][0]
    assert (y["status"], y["subscription_id"], y["description"]) == ("disabled", "sub_1", "d")
    assert y["threshold"] == {"mode": "absolute", "value": 100}

    writes_before = _writes(stripe_api) + _writes(chargebee_api)
    again, result = await sync(data, stripe_api, chargebee_api)
    assert not again.has_changes and again.changes == []
    assert result is not None and result.outcomes == []
    assert _writes(stripe_api) + _writes(chargebee_api) == writes_before


def _writes(fake: FakeStripe | FakeChargebee) -> int:
    return sum(n for endpoint, n in fake.calls.items() if endpoint.startswith("POST"))


@pytest.mark.parametrize(
    "change",
    [{"gte": 200}, {"title": "Renamed"}, {"meter": "mtr_2"}, {"customer": "cus_9"}],
)
async def test_stripe_edits_are_replaces(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee, change: dict[str, Any]
) -> None:
    fields = {"customer": "cus_1", **change}
    await sync(config([s_alert("a", customer="cus_1")]), stripe_api, chargebee_api)
    (old,) = managed(stripe_api)["a"]
    plan, result = await sync(config([s_alert("a", **fields)]), stripe_api, chargebee_api)
    assert kinds(plan) == [("stripe", "replace", "a")]
    assert result is not None and result.ok
    (new,) = managed(stripe_api)["a"]
    assert new["id"] != old["id"]
    archived = {a["id"]: a["status"] for a in stripe_api.alerts(archived=True)}
    assert archived[old["id"]] == "archived"
    again, _ = await sync(config([s_alert("a", **fields)]), stripe_api, chargebee_api, apply=False)
    assert not again.has_changes


async def test_stripe_enabled_toggles_in_place(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee
) -> None:
    await sync(config([s_alert("a")]), stripe_api, chargebee_api)
    (before,) = managed(stripe_api)["a"]
    plan, _ = await sync(config([s_alert("a", enabled=False)]), stripe_api, chargebee_api)
    assert kinds(plan) == [("stripe", "deactivate", "a")]
    assert managed(stripe_api)["a"][0]["status"] == "inactive"
    plan, _ = await sync(config([s_alert("a")]), stripe_api, chargebee_api)
    assert kinds(plan) == [("stripe", "activate", "a")]
    (after,) = managed(stripe_api)["a"]
    assert (after["id"], after["status"]) == (before["id"], "active")


async def test_chargebee_threshold_and_status_update_in_place(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee
) -> None:
    await sync(config(None, [c_alert("x")]), stripe_api, chargebee_api)
    (before,) = managed(chargebee_api)["x"]
    changed = c_alert("x", threshold={"mode": "percentage", "value": 80.5}, enabled=False)
    plan, result = await sync(config(None, [changed]), stripe_api, chargebee_api)
    assert kinds(plan) == [("chargebee", "update", "x")]
    assert "threshold: 100 → 80.5%" in plan.changes[0].detail
    assert result is not None and result.ok
    (after,) = managed(chargebee_api)["x"]
    assert after["id"] == before["id"]
    assert after["threshold"] == {"mode": "percentage", "value": 80.5}
    assert after["status"] == "disabled"
    plan, _ = await sync(config(None, [dict(changed, enabled=True)]), stripe_api, chargebee_api)
    assert kinds(plan) == [("chargebee", "activate", "x")]
    assert managed(chargebee_api)["x"][0]["status"] == "enabled"


@pytest.mark.parametrize(
    "change",
    [
        {"name": "Renamed"},
        {"metered_feature_id": "storage"},
        {"subscription_id": "sub_2"},
        {"description": "now described"},
    ],
)
async def test_chargebee_other_edits_are_replaces(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee, change: dict[str, Any]
) -> None:
    await sync(config(None, [c_alert("x")]), stripe_api, chargebee_api)
    (old,) = managed(chargebee_api)["x"]
    plan, result = await sync(config(None, [c_alert("x", **change)]), stripe_api, chargebee_api)
    assert kinds(plan) == [("chargebee", "replace", "x")]
    assert result is not None and result.ok
    (new,) = managed(chargebee_api)["x"]
    assert new["id"] != old["id"]
    assert old["id"] not in {a["id"] for a in chargebee_api.alerts()}


async def test_unmanaged_alerts_are_never_touched(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee
) -> None:
    manual_s = stripe_api.add_alert("Alert a", "mtr_1", 100)  # same fields, no marker
    manual_c = chargebee_api.add_alert("Alert x", "api-calls", "absolute", 100, meta='{"team":"x"}')
    plan, _ = await sync(
        config([s_alert("a")], [c_alert("x")]),
        stripe_api,
        chargebee_api,
        prune=True,
        allow_duplicates=True,  # lookalikes: without it the plan is refused (test_manager_adopt)
    )
    assert kinds(plan) == [("chargebee", "create", "x"), ("stripe", "create", "a")]
    assert plan.providers[0].unmanaged == 1
    assert manual_s in stripe_api.alerts()
    assert manual_c in chargebee_api.alerts()
    plan, _ = await sync(config([], []), stripe_api, chargebee_api, prune=True)
    assert kinds(plan) == [("chargebee", "delete", "x"), ("stripe", "delete", "a")]
    assert stripe_api.alerts() == [manual_s]
    assert chargebee_api.alerts() == [manual_c]


async def test_keys_that_left_the_config_stay_unless_pruned(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee
) -> None:
    await sync(
        config([s_alert("a"), s_alert("b")], [c_alert("x"), c_alert("y")]),
        stripe_api,
        chargebee_api,
    )
    smaller = config([s_alert("a")], [c_alert("x")])
    plan, result = await sync(smaller, stripe_api, chargebee_api)
    assert kinds(plan) == [("chargebee", "keep", "y"), ("stripe", "keep", "b")]
    assert not plan.has_changes
    assert all("--prune" in c.detail for c in plan.changes)
    assert result is not None and result.outcomes == []
    assert sorted(managed(stripe_api)) == ["a", "b"]
    plan, result = await sync(smaller, stripe_api, chargebee_api, prune=True)
    assert kinds(plan) == [("chargebee", "delete", "y"), ("stripe", "delete", "b")]
    assert result is not None and result.ok
    assert sorted(managed(stripe_api)) == ["a"]
    assert sorted(managed(chargebee_api)) == ["x"]
    assert [a["status"] for a in stripe_api.alerts(archived=True) if "b]" in a["title"]] == [
        "archived"
    ]


async def test_lists_every_page_of_100(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee
) -> None:
    for i in range(250):
        stripe_api.add_alert(f"manual {i}", f"mtr_{i}", 1)
        chargebee_api.add_alert(f"manual {i}", "api-calls", "absolute", i + 1)
    plan, _ = await sync(config([], []), stripe_api, chargebee_api, apply=False)
    assert [p.unmanaged for p in plan.providers] == [250, 250]
    assert stripe_api.calls["GET /v1/billing/alerts"] == 3
    assert chargebee_api.calls["GET /api/v2/alerts"] == 3


async def test_independent_calls_run_concurrently_within_the_limit(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee
) -> None:
    stripe_api.latency = chargebee_api.latency = 0.05
    data = config(
        [s_alert(f"s{i}", gte=i + 1) for i in range(24)],
        [c_alert(f"c{i}") for i in range(24)],
    )
    await sync(data, stripe_api, chargebee_api, concurrency=4)
    # The minimum: one list call, then one create per alert, no retrieves.
    assert dict(stripe_api.calls) == {"GET /v1/billing/alerts": 1, "POST /v1/billing/alerts": 24}
    assert dict(chargebee_api.calls) == {"GET /api/v2/alerts": 1, "POST /api/v2/alerts": 24}
    # Overlapping, never past the limit (how many overlap depends on the machine's load).
    assert 1 < stripe_api.max_in_flight <= 4
    assert 1 < chargebee_api.max_in_flight <= 4


@pytest.mark.parametrize(
    ("kind", "after"),
    [
        ("429", False),
        ("500", False),
        ("reset", False),
        ("timeout", False),
        # The write happens, then the answer is lost: the retry must replay, not duplicate.
        ("reset", True),
        ("timeout", True),
    ],
)
async def test_faults_are_retried_without_duplicates(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee, kind: Any, after: bool
) -> None:
    for fake, path in ((stripe_api, "/v1/billing/alerts"), (chargebee_api, "/api/v2/alerts")):
        fake.inject(kind, method="POST", path=path, times=2, after=after)
        fake.inject(kind, method="GET", path=path)
    data = config([s_alert("a"), s_alert("b")], [c_alert("x"), c_alert("y")])
    _, result = await sync(data, stripe_api, chargebee_api, retry=SHORT_TIMEOUT)
    assert result is not None
    assert result.ok, result.failed
    assert {k: len(v) for k, v in managed(stripe_api).items()} == {"a": 1, "b": 1}
    assert {k: len(v) for k, v in managed(chargebee_api).items()} == {"x": 1, "y": 1}
    again, _ = await sync(data, stripe_api, chargebee_api, apply=False)
    assert not again.has_changes


async def test_run_failing_midway_is_finished_by_the_next_apply(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee
) -> None:
    await sync(config([s_alert("a")], [c_alert("x")]), stripe_api, chargebee_api)
    # Replaces: the create goes through, every attempt to remove the old alert fails.
    stripe_api.inject("500", path="/v1/billing/alerts/{id}/archive", times=FAST.attempts)
    chargebee_api.inject("reset", path="/api/v2/alerts/{id}/delete", times=FAST.attempts)
    data = config([s_alert("a", gte=5)], [c_alert("x", name="New"), c_alert("z")])
    _, result = await sync(data, stripe_api, chargebee_api)
    assert result is not None and not result.ok
    assert len(managed(stripe_api)["a"]) == 2
    assert len(managed(chargebee_api)["x"]) == 2

    plan, result = await sync(data, stripe_api, chargebee_api)
    assert ("stripe", "delete", "a") in kinds(plan)
    assert ("chargebee", "delete", "x") in kinds(plan)
    assert result is not None and result.ok
    (a,) = managed(stripe_api)["a"]
    assert a["usage_threshold"]["gte"] == 5
    (x,) = managed(chargebee_api)["x"]
    assert x["name"] == "New"
    assert len(managed(chargebee_api)["z"]) == 1
    again, _ = await sync(data, stripe_api, chargebee_api, apply=False)
    assert not again.has_changes


async def test_lost_create_answers_do_not_duplicate_on_rerun(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee
) -> None:
    # Every attempt's answer is lost, though the first one created the alert.
    stripe_api.inject("reset", method="POST", path="/v1/billing/alerts", after=True, times=4)
    chargebee_api.inject("timeout", method="POST", path="/api/v2/alerts", after=True, times=4)
    data = config([s_alert("a")], [c_alert("x")])
    _, result = await sync(data, stripe_api, chargebee_api, retry=SHORT_TIMEOUT)
    assert result is not None and len(result.failed) == 2
    assert "gave up after 4 attempts" in (result.failed[0].error or "")
    _, result = await sync(data, stripe_api, chargebee_api)
    assert result is not None and result.ok
    assert len(managed(stripe_api)["a"]) == 1
    assert len(managed(chargebee_api)["x"]) == 1


async def test_stripe_limit_counts_unmanaged_alerts_before_any_write(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee
) -> None:
    for i in range(24):
        stripe_api.add_alert(f"manual {i}", "mtr_1", i + 1, customer="cus_1")
    data = config([s_alert("a", customer="cus_1"), s_alert("b", customer="cus_1", gte=7)])
    with pytest.raises(PlanError) as info:
        await sync(data, stripe_api, chargebee_api)
    message = str(info.value)
    assert message == (
        "stripe.alerts[0] (key 'a'): meter: 26 alerts would exist on meter 'mtr_1' for cus_1 "
        "(24 of them not in this file); Stripe allows at most 25"
    )
    assert _writes(stripe_api) == 0
    # Another customer is another pair.
    await sync(
        config([s_alert("a", customer="cus_1"), s_alert("b", customer="cus_2")]),
        stripe_api,
        chargebee_api,
    )
    assert sorted(managed(stripe_api)) == ["a", "b"]


async def test_webhook_endpoints_are_created_once(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee
) -> None:
    sections = {
        "stripe": {"webhook_url": "https://example.com/hooks/stripe"},
        "chargebee": {"webhook_url": "https://example.com/hooks/chargebee"},
    }
    data = config([], [], **sections)
    plan, result = await sync(data, stripe_api, chargebee_api)
    assert kinds(plan) == [
        ("chargebee", "create endpoint", "https://example.com/hooks/chargebee"),
        ("stripe", "create endpoint", "https://example.com/hooks/stripe"),
    ]
    assert result is not None and result.ok
    (secret,) = result.secrets
    assert secret.provider == "stripe" and secret.secret.startswith("whsec_")
    assert secret.env == "STRIPE_WEBHOOK_SECRET"
    (endpoint,) = stripe_api.endpoints()
    assert endpoint["enabled_events"] == ["billing.alert.triggered"]
    assert endpoint["api_version"] == API_VERSION == "2024-12-18.acacia"
    (cb_endpoint,) = chargebee_api.endpoints()
    assert cb_endpoint["enabled_events"] == ["alert_status_changed"]
    assert cb_endpoint["api_version"] == "v2"
    assert chargebee_api.endpoint_auth[cb_endpoint["id"]] == ("hook-user", "hook-pass")
    again, result = await sync(data, stripe_api, chargebee_api)
    assert again.changes == [] and result is not None and result.secrets == []
    assert len(stripe_api.endpoints()) == 1 and len(chargebee_api.endpoints()) == 1


async def test_webhook_endpoints_are_corrected(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee
) -> None:
    stripe_api.add_endpoint(
        "https://example.com/hooks/stripe", ["customer.created"], api_version=API_VERSION
    )
    chargebee_api.add_endpoint(
        "https://example.com/hooks/chargebee", ["alert_status_changed"], disabled=True
    )
    sections = {
        "stripe": {"webhook_url": "https://example.com/hooks/stripe"},
        "chargebee": {"webhook_url": "https://example.com/hooks/chargebee"},
    }
    plan, result = await sync(config([], [], **sections), stripe_api, chargebee_api)
    assert [c.kind for c in plan.changes] == [ChangeKind.UPDATE_ENDPOINT] * 2
    assert result is not None and result.ok and result.secrets == []
    (endpoint,) = stripe_api.endpoints()
    assert endpoint["enabled_events"] == ["customer.created", "billing.alert.triggered"]
    (cb_endpoint,) = chargebee_api.endpoints()
    assert cb_endpoint["disabled"] is False
    assert chargebee_api.endpoint_auth[cb_endpoint["id"]] == ("hook-user", "hook-pass")
    again, _ = await sync(config([], [], **sections), stripe_api, chargebee_api, apply=False)
    assert again.changes == []


async def test_a_second_endpoint_sending_alerts_is_shown_and_left_alone(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee
) -> None:
    url = "https://example.com/hooks/stripe"
    first = stripe_api.add_endpoint(url, ["billing.alert.triggered"], api_version=API_VERSION)
    second = stripe_api.add_endpoint(url, ["*"], api_version=API_VERSION)
    # Disabled, so it sends nothing (and its version does not matter).
    stripe_api.add_endpoint(url, ["billing.alert.triggered"], disabled=True)
    data = config([], [], stripe={"webhook_url": url})
    plan, result = await sync(data, stripe_api, chargebee_api)
    (extra,) = plan.changes
    assert extra.kind is ChangeKind.EXTRA_ENDPOINT and not extra.is_write
    assert extra.endpoint is not None
    kept = ({first["id"], second["id"]} - {extra.endpoint.id}).pop()
    assert extra.detail == (
        f"{extra.endpoint.id} also sends billing.alert.triggered here, so each alert arrives"
        f" twice (the receiver drops the copy); remove one of {kept}, {extra.endpoint.id} by hand"
    )
    assert not plan.has_changes
    assert result is not None and result.outcomes == []
    assert len(stripe_api.endpoints()) == 3


async def test_alert_removed_then_readded_is_created_anew(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee
) -> None:
    # The same planned create, so the same idempotency key; the provider replays the first
    # answer, naming an alert that no longer exists.
    data = config([s_alert("a")], [c_alert("x")])
    await sync(data, stripe_api, chargebee_api)
    first = (managed(stripe_api)["a"][0]["id"], managed(chargebee_api)["x"][0]["id"])
    await sync(config([], []), stripe_api, chargebee_api, prune=True)
    assert managed(stripe_api) == {} and managed(chargebee_api) == {}
    plan, result = await sync(data, stripe_api, chargebee_api)
    assert kinds(plan) == [("chargebee", "create", "x"), ("stripe", "create", "a")]
    assert result is not None and result.ok
    (a,) = managed(stripe_api)["a"]
    (x,) = managed(chargebee_api)["x"]
    assert (a["id"], x["id"]) != first and a["id"] != first[0] and x["id"] != first[1]
    again, _ = await sync(data, stripe_api, chargebee_api, apply=False)
    assert not again.has_changes


async def test_no_credential_or_secret_reaches_the_logs(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for fake, path in ((stripe_api, "/v1/billing/alerts"), (chargebee_api, "/api/v2/alerts")):
        fake.inject("reset", method="POST", path=path, after=True)
        fake.inject("500", method="POST", path=path)
    sections = {
        "stripe": {"webhook_url": "https://example.com/hooks/stripe"},
        "chargebee": {"webhook_url": "https://example.com/hooks/chargebee"},
    }
    env = {**stripe_api.env(), **chargebee_api.env(), **CB_AUTH}
    manager = AlertManager(
        parse_config(config([s_alert("a")], [c_alert("x")], **sections)),
        Credentials.from_env(env),
        retry=FAST,
    )
    async with manager:
        result = await manager.apply(await manager.plan())
    assert result.ok
    (secret,) = result.secrets
    assert "Request to Stripe api" in caplog.text  # the SDK did log at DEBUG
    assert "retrying" in caplog.text
    basic = base64.b64encode(f"{chargebee_api.api_key}:".encode()).decode()
    for value in (stripe_api.api_key, basic, "hook-pass", secret.secret):
        assert value not in caplog.text
        assert value not in repr(manager.apis) and value not in repr(result)


async def test_replace_in_a_full_stripe_pair_archives_first(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee
) -> None:
    stripe_api.add_alert("manual", "mtr_1", 1, customer="cus_1")  # unmanaged, counts too
    alerts = [s_alert(f"a{i}", gte=i + 2, customer="cus_1") for i in range(24)]
    await sync(config(alerts), stripe_api, chargebee_api)
    alerts[0] = s_alert("a0", gte=1000, customer="cus_1")
    plan, result = await sync(config(alerts), stripe_api, chargebee_api)
    (change,) = plan.changes
    assert change.kind is ChangeKind.REPLACE and change.remove_first
    assert "removed first" in change.detail
    assert result is not None
    assert result.ok, result.failed
    (a0,) = managed(stripe_api)["a0"]
    assert a0["usage_threshold"]["gte"] == 1000
    assert len(stripe_api.alerts()) == 25
    # With room in the pair (or a move to another pair) the new alert comes first.
    alerts[1] = s_alert("a1", gte=5, customer="cus_2")
    plan, _ = await sync(config(alerts), stripe_api, chargebee_api)
    (change,) = plan.changes
    assert change.kind is ChangeKind.REPLACE and not change.remove_first


async def test_an_endpoint_on_another_api_version_is_shown_or_moved(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee
) -> None:
    s_url, c_url = "https://example.com/hooks/stripe", "https://example.com/hooks/chargebee"
    old = stripe_api.add_endpoint(s_url, ["billing.alert.triggered"], api_version="2023-10-16")
    cb_old = chargebee_api.add_endpoint(c_url, ["alert_status_changed"], api_version="v1")
    data = config([], [], stripe={"webhook_url": s_url}, chargebee={"webhook_url": c_url})
    plan, result = await sync(data, stripe_api, chargebee_api)
    assert kinds(plan) == [
        ("chargebee", "update endpoint", c_url),
        ("stripe", "endpoint version", s_url),
    ]
    stripe_line, chargebee_line = (
        next(c.detail for c in plan.changes if c.provider == name)
        for name in ("stripe", "chargebee")
    )
    # Stripe cannot change an endpoint's version: shown, left alone, not a change.
    assert stripe_line.startswith(
        f"{old['id']} is on api_version 2023-10-16, alerthooks reads {API_VERSION}; stripe"
        " cannot change it in place"
    )
    (endpoint,) = stripe_api.endpoints()
    assert endpoint["api_version"] == "2023-10-16"
    # Chargebee can: moved to v2 in place.
    assert chargebee_line == f"{cb_old['id']}: api_version v1 → v2"
    assert result is not None and result.ok and result.secrets == []
    (cb_endpoint,) = chargebee_api.endpoints()
    assert (cb_endpoint["id"], cb_endpoint["api_version"]) == (cb_old["id"], "v2")
    again, _ = await sync(data, stripe_api, chargebee_api, apply=False)
    assert not again.has_changes
    assert kinds(again) == [("stripe", "endpoint version", s_url)]


async def test_outcomes_say_stripe_archives_and_chargebee_deletes(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee
) -> None:
    await sync(
        config([s_alert("a"), s_alert("b")], [c_alert("x"), c_alert("y")]),
        stripe_api,
        chargebee_api,
    )
    ids = {k: v[0]["id"] for fake in (stripe_api, chargebee_api) for k, v in managed(fake).items()}
    data = config([s_alert("a", gte=7)], [c_alert("x", name="New")])
    _, result = await sync(data, stripe_api, chargebee_api, prune=True)
    assert result is not None and result.ok
    messages = {(o.change.provider, o.change.key): o.message for o in result.outcomes}
    new = {k: v[0]["id"] for fake in (stripe_api, chargebee_api) for k, v in managed(fake).items()}
    assert messages == {
        ("stripe", "a"): f"created {new['a']}, archived {ids['a']}",
        ("stripe", "b"): f"archived {ids['b']}",
        ("chargebee", "x"): f"created {new['x']}, deleted {ids['x']}",
        ("chargebee", "y"): f"deleted {ids['y']}",
    }


def test_a_new_endpoint_secret_names_the_variable_the_receiver_reads() -> None:
    from alerthooks.manager import NewEndpointSecret

    assert NewEndpointSecret("stripe", "https://e.x/s", "whsec_1").env == "STRIPE_WEBHOOK_SECRET"
    assert NewEndpointSecret("chargebee", "https://e.x/c", "x").env == ""  # reveals no secret
    assert NewEndpointSecret("elsewhere", "https://e.x/s", "k").env == ""

    class WithEnv(NewEndpointSecret):
        env = "MY_PROVIDER_SECRET"  # type: ignore[assignment]

    assert WithEnv("stripe", "https://e.x/s", "whsec_1").env == "MY_PROVIDER_SECRET"
