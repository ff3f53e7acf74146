"""The manager meets the alerts that already exist: ``plan`` lists them and flags lookalikes,
refuses to duplicate one, ``import`` declares them, ``--adopt`` takes them over (idempotently).

One walk-through, parametrized over every provider's stateful fake: at every step each declared
entry has exactly one live alert and no two live alerts share their identifying fields (the fake
checks it). The other tests pin the edges on Stripe's fake.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from alerthooks import cli
from alerthooks.manager import (
    AlertEntry,
    AlertManager,
    ChangeKind,
    Credentials,
    Plan,
    ProviderPlan,
    RemoteAlert,
    RetryPolicy,
    apply_plan,
    diff_alerts,
    load_config,
)
from alerthooks.manager.api import Declaration
from alerthooks.testing.fakes import FakeAPI, FakeChargebee, FakeMetronome, FakeOrb, FakeStripe

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FAST = RetryPolicy(attempts=3, backoff=0.005, max_backoff=0.02, timeout=10)
UNSET: dict[str, str | None] = {
    name: None
    for name in (
        "STRIPE_API_KEY",
        "ALERTHOOKS_STRIPE_API_BASE",
        "CHARGEBEE_API_KEY",
        "CHARGEBEE_SITE",
        "ALERTHOOKS_CHARGEBEE_API_BASE",
        "CHARGEBEE_WEBHOOK_USERNAME",
        "CHARGEBEE_WEBHOOK_PASSWORD",
        "ORB_API_KEY",
        "ALERTHOOKS_ORB_API_BASE",
        "ALERTHOOKS_ORB_MODE",
        "METRONOME_API_KEY",
        "ALERTHOOKS_METRONOME_API_BASE",
        "ALERTHOOKS_METRONOME_MODE",
        "NO_COLOR",
    )
}


@dataclass(frozen=True)
class Case:
    """One provider's walk-through: its fake, the table the config starts with (Orb and
    Metronome list alerts per subscription or customer, which the table names), what exists
    before alerthooks runs, and the hand-made alert to meet."""

    name: str
    fake: Callable[[], FakeAPI]
    table: str
    #: Alerts the starting table's entries already have (made by hand at their identity).
    existing: Callable[[Any], None]
    hand_made: Callable[[Any], dict[str, Any]]
    adopts: bool = True  # False: the provider owns alerts by identity (Orb)


CASES = [
    Case(
        "stripe",
        FakeStripe,
        "[stripe]\n",
        lambda fake: None,
        lambda fake: fake.add_alert("API calls", "mtr_api_calls", 1000, customer="cus_acme"),
    ),
    Case(
        "chargebee",
        FakeChargebee,
        "[chargebee]\n",
        lambda fake: None,
        lambda fake: fake.add_alert(
            "Calls at 80%", "api-calls", "percentage", 80, subscription_id="sub_1"
        ),
    ),
    Case(
        "orb",
        FakeOrb,
        '[orb]\n\n[[orb.alerts]]\nkey = "usage"\ntype = "usage_exceeded"\n'
        'subscription_id = "sub_1"\nmetric_id = "m_1"\nthresholds = [100]\n',
        lambda fake: fake.add_alert(
            "usage_exceeded", subscription_id="sub_1", metric_id="m_1", thresholds=[100]
        ),
        lambda fake: fake.add_alert("cost_exceeded", subscription_id="sub_1", thresholds=[50]),
        adopts=False,
    ),
    Case(
        "metronome",
        FakeMetronome,
        '[metronome]\nlookup_customer_id = "cus_1"\n',
        lambda fake: None,
        lambda fake: fake.add_alert("Spend 5000", "spend_threshold_reached", 5000),
    ),
]


@pytest.fixture(params=CASES, ids=lambda case: case.name)
def case(request: pytest.FixtureRequest) -> Iterator[tuple[Case, FakeAPI]]:
    with request.param.fake() as fake:
        yield request.param, fake


def run(args: list[str], env: dict[str, str | None]) -> Result:
    return CliRunner().invoke(cli.cli, args, env=env, catch_exceptions=False)


def flat(text: str) -> str:
    """``text`` with its line wrapping undone (rich wraps long lines at the console width)."""
    return " ".join(text.split())


def writes(fake: FakeAPI) -> int:
    """Calls that change something (Metronome lists alerts with a POST)."""
    reads = ("GET ", "POST /v1/customer-alerts/list")
    return sum(n for call, n in fake.calls.items() if not call.startswith(reads))


def check_one_live_each(fake: FakeAPI, entries: int) -> None:
    assert fake.live_duplicates() == {}
    assert len(fake.live_alerts()) == entries


def test_a_hand_made_alert_is_listed_flagged_imported_and_adopted_once(
    case: tuple[Case, FakeAPI], tmp_path: Path
) -> None:
    spec, fake = case
    env = {**UNSET, **fake.env()}
    spec.existing(fake)
    hand_id = str(spec.hand_made(fake)["id"])
    base = tmp_path / "alerts.toml"
    base.write_text(spec.table)
    declared = len(load_config(base).tables[spec.name].alerts)

    # Listed, with its identifying fields, and left alone.
    listed = run(["plan", "--config", str(base)], env)
    assert listed.exit_code == 0, listed.output
    assert re.search(rf"^  unmanaged {re.escape(hand_id)}: \w+=", listed.stdout, re.M)
    assert "1 unmanaged alert left alone" in flat(listed.stdout)
    check_one_live_each(fake, declared + 1)

    # Imported: one entry naming the alert, with a key derived from it (stable).
    imported = tmp_path / "imported.toml"
    done = run(["import", "--config", str(base), "--output", str(imported)], env)
    assert done.exit_code == 0, done.output
    text = imported.read_text()
    assert f"# {spec.name} alert {hand_id}\n" in text
    (entry,) = tomllib.loads(text)[spec.name]["alerts"]
    again = run(["import", "--config", str(base)], env)
    assert again.exit_code == 0 and again.stdout == text
    refused = run(["import", "--config", str(base), "--output", str(imported)], env)
    assert refused.exit_code == 1 and "refusing to overwrite" in refused.stderr
    assert imported.read_text() == text
    merged = tmp_path / "merged.toml"
    merged.write_text(spec.table + "\n" + text)
    key = entry["key"]
    check_one_live_each(fake, declared + 1)

    if spec.adopts:
        # Flagged as a lookalike; neither plan nor apply duplicates it.
        flagged = run(["plan", "--config", str(merged), "--detailed-exitcode"], env)
        assert flagged.exit_code == 1, flagged.output
        assert f"unmanaged {hand_id}: " in flagged.stdout
        assert f"lookalike of {key}" in flat(flagged.stdout)
        (error,) = flagged.stderr.strip().splitlines()
        assert error.startswith("error: ") and key in error and hand_id in error
        before = writes(fake)
        blocked = run(["apply", "--config", str(merged), "--yes"], env)
        assert blocked.exit_code == 1 and hand_id in blocked.stderr
        assert writes(fake) == before
        check_one_live_each(fake, declared + 1)

        # plan --adopt shows only the adopt, and exits 2 (pending) with --detailed-exitcode.
        planned = run(["plan", "--config", str(merged), "--adopt", "--detailed-exitcode"], env)
        assert planned.exit_code == 2, planned.output
        lines = planned.stdout.splitlines()
        table = lines[next(i for i, line in enumerate(lines) if line.startswith("action")) :]
        rows = [line.split()[0] for line in table[1:] if line[:1].strip()]
        assert rows == ["adopt"], planned.stdout
        assert f"adopt (replace)  {key} ← {hand_id}" in planned.stdout

        adopted = run(["apply", "--config", str(merged), "--yes", "--adopt"], env)
        assert adopted.exit_code == 0, adopted.output
        assert f"done: {spec.name} adopt (replace) {key}: created " in adopted.stdout
        assert hand_id not in {str(a["id"]) for a in fake.live_alerts()}
    else:
        # Orb owns alerts by type and scope: declaring the alert takes it over.
        assert "owns alerts by type and scope" in flat(listed.stdout)
        planned = run(["plan", "--config", str(merged), "--adopt", "--detailed-exitcode"], env)
        assert planned.exit_code == 0, planned.output
        assert "0 unmanaged alerts" in flat(planned.stdout) and "No changes." in planned.stdout
    check_one_live_each(fake, declared + 1)

    # A second apply is a no-op; plan has no changes; nothing is left to import.
    before = writes(fake)
    rerun = run(["apply", "--config", str(merged), "--yes", "--adopt"], env)
    assert rerun.exit_code == 0 and "No changes." in rerun.stdout, rerun.output
    assert writes(fake) == before
    final = run(["plan", "--config", str(merged), "--detailed-exitcode"], env)
    assert final.exit_code == 0 and "0 unmanaged alerts" in flat(final.stdout), final.output
    nothing = run(["import", "--config", str(merged)], env)
    assert nothing.exit_code == 0 and f"[[{spec.name}.alerts]]" not in nothing.stdout
    check_one_live_each(fake, declared + 1)


# -- the edges, on Stripe's fake ----------------------------------------------------------


ENTRY = """
[[stripe.alerts]]
key = "{key}"
title = "API calls at {gte}"
meter = "mtr_api_calls"
gte = {gte}
customer = "cus_acme"
"""


@pytest.fixture(scope="module")
def served_stripe() -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def stripe_api(served_stripe: FakeStripe) -> FakeStripe:
    served_stripe.reset()
    return served_stripe


def stripe_config(tmp_path: Path, *entries: tuple[str, int]) -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text("[stripe]\n" + "".join(ENTRY.format(key=k, gte=g) for k, g in entries))
    return path


def test_allow_duplicates_creates_beside_the_lookalike(
    stripe_api: FakeStripe, tmp_path: Path
) -> None:
    hand = stripe_api.add_alert("API calls", "mtr_api_calls", 1000, customer="cus_acme")
    config = stripe_config(tmp_path, ("api-1000", 1000))
    env = {**UNSET, **stripe_api.env()}
    done = run(["apply", "--config", str(config), "--yes", "--allow-duplicates"], env)
    assert done.exit_code == 0, done.output
    assert f"duplicates unmanaged {hand['id']}" in flat(done.stdout)
    assert len(stripe_api.live_duplicates()) == 1  # asked for: two alerts, same fields
    # Later plans list the lookalike but have nothing to refuse (the key has its alert).
    plan = run(["plan", "--config", str(config), "--detailed-exitcode"], env)
    assert plan.exit_code == 0 and "lookalike of api-1000" in flat(plan.stdout)


def test_prune_never_removes_an_alert_adopted_in_the_same_run(
    stripe_api: FakeStripe, tmp_path: Path
) -> None:
    env = {**UNSET, **stripe_api.env()}
    assert run(["apply", "--config", str(stripe_config(tmp_path, ("old", 5))), "--yes"], env)
    hand = stripe_api.add_alert("API calls", "mtr_api_calls", 1000, customer="cus_acme")
    config = stripe_config(tmp_path, ("api-1000", 1000))
    done = run(["apply", "--config", str(config), "--yes", "--adopt", "--prune"], env)
    assert done.exit_code == 0, done.output
    assert "done: stripe delete old: archived" in done.stdout
    assert f"archived {hand['id']}" in done.stdout
    (live,) = stripe_api.live_alerts()
    assert live["title"] == "API calls at 1000 [alerthooks:api-1000]"
    again = run(["apply", "--config", str(config), "--yes", "--adopt", "--prune"], env)
    assert "No changes." in again.stdout
    assert stripe_api.live_alerts() == [live]


async def test_an_adopt_cut_short_is_finished_by_the_next_run(
    stripe_api: FakeStripe, tmp_path: Path
) -> None:
    hand = stripe_api.add_alert("API calls", "mtr_api_calls", 1000, customer="cus_acme")
    config = load_config(stripe_config(tmp_path, ("api-1000", 1000)))
    credentials = Credentials.from_env(stripe_api.env())
    stripe_api.inject("500", path="/v1/billing/alerts/{id}/archive", times=FAST.attempts)
    async with AlertManager(config, credentials, retry=FAST) as manager:
        result = await manager.apply(await manager.plan(adopt=True))
        assert not result.ok
        assert len(stripe_api.live_alerts()) == 2  # the new one is made first: never unwatched
        plan = await manager.plan(adopt=True)
        assert [(c.kind, c.key, c.remote and c.remote.id) for c in plan.changes] == [
            (ChangeKind.ADOPT_MERGE, "api-1000", hand["id"])
        ]
        assert (await manager.apply(plan)).ok
        assert not (await manager.plan(adopt=True)).has_changes
    assert stripe_api.live_duplicates() == {} and len(stripe_api.live_alerts()) == 1


def test_import_keys_are_unique_against_the_config_and_each_other(
    stripe_api: FakeStripe, tmp_path: Path
) -> None:
    for title in ("one", "two"):
        stripe_api.add_alert(title, "mtr_api_calls", 1000, customer="cus_acme")
    config = tmp_path / "alerts.toml"
    config.write_text(
        ENTRY.format(key="mtr_api_calls-cus_acme-1000", gte=7).replace(
            "[[stripe", "[stripe]\n\n[[stripe", 1
        )
    )
    env = {**UNSET, **stripe_api.env()}
    out = run(["import", "--config", str(config)], env)
    assert out.exit_code == 0, out.output
    keys = [a["key"] for a in tomllib.loads(out.stdout)["stripe"]["alerts"]]
    assert keys == ["mtr_api_calls-cus_acme-1000-2", "mtr_api_calls-cus_acme-1000-3"]
    assert "stripe: test mode (sk_test_…): 2 unmanaged alerts declared" in out.stderr


def test_import_without_credentials_says_what_to_set(tmp_path: Path) -> None:
    out = run(["import", "--config", str(tmp_path / "none.toml")], dict(UNSET))
    assert out.exit_code == 1
    assert "STRIPE_API_KEY" in out.stderr and out.stderr.startswith("error: ")
    named = run(["import", "--provider", "chargebee"], dict(UNSET))
    assert named.exit_code == 1 and "CHARGEBEE_API_KEY: not set" in named.stderr


# -- a provider whose API can write the marker in place (the generic path) ------------------


class Label(AlertEntry):
    label: str
    limit: int


class InPlaceAPI:
    """A provider API that can mark an existing alert: adopting writes the marker in place."""

    name = "toy"
    mode = "test"
    account = "test mode"
    updatable: frozenset[str] = frozenset({"limit"})
    event = "limit.reached"
    endpoint_api_version = None
    endpoint_version_in_place = False
    removed = "deleted"
    adopt_mode = "in_place"
    identity_fields = ("limit",)

    def __init__(self, alerts: dict[str, dict[str, Any]]) -> None:
        self.alerts = alerts
        self.calls: list[tuple[str, str]] = []

    def key_of(self, alert: Label) -> str:
        return alert.key

    def desired_spec(self, alert: Label) -> dict[str, Any]:
        return {"label": alert.label, "limit": alert.limit}

    def identity(self, alert: Label) -> tuple[Any, ...]:
        return (alert.limit,)

    def remote_identities(self, remote: RemoteAlert) -> tuple[tuple[Any, ...], ...]:
        return ((remote.spec["limit"],),)

    def declare(self, remote: RemoteAlert) -> Declaration | None:
        return Declaration({"label": remote.spec["label"], "limit": remote.spec["limit"]})

    async def adopt_alert(self, alert_id: str, alert: Label, idempotency_key: str) -> None:
        self.calls.append(("adopt", alert_id))
        self.alerts[alert_id]["key"] = alert.key

    async def remove_alert(self, alert_id: str, idempotency_key: str) -> None:
        self.calls.append(("remove", alert_id))
        del self.alerts[alert_id]

    def remote(self) -> list[RemoteAlert]:
        return [
            RemoteAlert("toy", id, a.get("key"), True, {"label": a["label"], "limit": a["limit"]})
            for id, a in self.alerts.items()
        ]


async def test_where_the_api_can_mark_an_alert_adopting_marks_it_in_place() -> None:
    api = InPlaceAPI({"t1": {"label": "by hand", "limit": 5}, "t2": {"label": "copy", "limit": 5}})
    entry = Label(key="five", label="five", limit=5)
    refused = diff_alerts(api, [entry], api.remote())  # type: ignore[arg-type]
    assert [(c.kind, c.lookalike and c.lookalike.id) for c in refused] == [
        (ChangeKind.CREATE, "t1")
    ]
    changes = diff_alerts(api, [entry], api.remote(), adopt=True)  # type: ignore[arg-type]
    assert [(c.kind.value, c.remote and c.remote.id) for c in changes] == [
        ("adopt", "t1"),
        ("adopt (merge)", "t2"),
    ]
    assert changes[0].detail == "marker written in place; then label: 'by hand' → 'five'"
    plan = Plan((ProviderPlan("toy", "test", "test mode", tuple(changes)),))
    result = await apply_plan(plan, {"toy": api})  # type: ignore[dict-item]
    assert result.ok and sorted(api.calls) == [("adopt", "t1"), ("remove", "t2")]
    assert api.alerts == {"t1": {"label": "by hand", "limit": 5, "key": "five"}}
    # Marked now: the next plan updates the label like any managed alert, adopts nothing.
    after = diff_alerts(api, [entry], api.remote(), adopt=True)  # type: ignore[arg-type]
    assert [c.kind for c in after] == [ChangeKind.REPLACE]


def test_import_says_what_the_api_does_not_tell(tmp_path: Path) -> None:
    config = tmp_path / "alerts.toml"
    config.write_text('[metronome]\nlookup_customer_id = "cus_1"\n')
    with FakeMetronome() as fake:
        made = fake.add_alert("Calls", "usage_threshold_reached", 10, billable_metric_id="bm_1")
        out = run(["import", "--config", str(config)], {**UNSET, **fake.env()})
    assert out.exit_code == 0, out.output
    (entry,) = tomllib.loads(out.stdout)["metronome"]["alerts"]
    assert "billable_metric_id" not in entry  # Metronome does not list it
    assert f"# metronome alert {made['id']}\n" in out.stdout
    assert "# billable_metric_id: Metronome does not list it" in out.stdout
    assert re.search(r"^# fix before merging: billable_metric_id: required", out.stdout, re.M)


def test_import_reads_every_customer_and_subscription_not_only_the_named_ones(
    tmp_path: Path,
) -> None:
    """Orb and Metronome list alerts per subscription or customer: import reads them all."""
    with FakeOrb() as orb, FakeMetronome() as metronome:
        orb.add_alert("cost_exceeded", subscription_id="sub_9", thresholds=[50])
        orb.add_alert("credit_balance_depleted", customer_id="cus_8", currency="USD")
        metronome.customers.add("cus_1")
        metronome.add_alert("Own", "spend_threshold_reached", 70, customer_id="cus_9")
        metronome.add_alert("Everyone", "spend_threshold_reached", 90)
        env = {**UNSET, **orb.env(), **metronome.env()}
        out = run(["import", "--config", str(tmp_path / "absent.toml")], env)
    assert out.exit_code == 0, out.output
    found = tomllib.loads(out.stdout)
    assert sorted(
        (a["type"], a.get("subscription_id"), a.get("customer_id")) for a in found["orb"]["alerts"]
    ) == [
        ("cost_exceeded", "sub_9", None),
        ("credit_balance_depleted", None, "cus_8"),
    ]
    by_name = {a["name"]: a for a in found["metronome"]["alerts"]}
    assert by_name["Own"]["customer_id"] == "cus_9"  # only cus_9's list shows it
    assert "customer_id" not in by_name["Everyone"]  # every customer's list shows it
