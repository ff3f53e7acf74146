"""CLI tables and diffs: styled on a terminal, plain (no escape codes) when stdout is not a
terminal or NO_COLOR is set."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from alerthooks import AlertHooks, cli
from alerthooks.providers import Stripe
from alerthooks.testing import AlertHooksClient, stripe_alert_triggered, stripe_customer_created
from alerthooks.testing.fakes import FakeStripe

CONFIG = """
[stripe]

[[stripe.alerts]]
key = "api-100"
title = "API calls reached 100"
meter = "mtr_1"
gte = 100
"""
ESC = "\x1b["


@pytest.fixture
def plan_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    for name in ("NO_COLOR", "FORCE_COLOR", "CHARGEBEE_API_KEY", "CHARGEBEE_SITE"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "alerts.toml"
    config.write_text(CONFIG)
    with FakeStripe() as stripe_api:
        for name, value in stripe_api.env().items():
            monkeypatch.setenv(name, value)
        yield ["plan", "--config", str(config)]


@pytest.mark.parametrize(
    ("env", "styled"),
    [({}, False), ({"FORCE_COLOR": "1"}, True), ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, False)],
    ids=["not-a-terminal", "terminal", "terminal-no-color"],
)
def test_plan_diff_is_styled_only_on_a_terminal_without_no_color(
    plan_env: list[str], env: dict[str, str], styled: bool
) -> None:
    result = CliRunner().invoke(cli.cli, plan_env, env=env)
    assert result.exit_code == 0, result.output
    assert "api-100" in result.stdout
    assert (ESC in result.stdout) is styled


@pytest.fixture
async def store(tmp_path: Path) -> list[str]:
    """A SQLite store holding two delivered events: an alert and an event that is not one."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    hooks = AlertHooks(providers=[Stripe("whsec_output")], store=url)
    hooks.on("alert.triggered", name="notify")(lambda event: None)
    async with AlertHooksClient(hooks) as client:
        assert (await client.send_stripe(stripe_alert_triggered(id="evt_shown"))).is_success
        assert (await client.send_stripe(stripe_customer_created(id="evt_other"))).is_success
    return ["--store", url]


@pytest.mark.parametrize(
    ("env", "styled"),
    [({"FORCE_COLOR": "1"}, True), ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, False)],
    ids=["terminal", "terminal-no-color"],
)
def test_events_table_is_plain_under_no_color(
    store: list[str], monkeypatch: pytest.MonkeyPatch, env: dict[str, str], styled: bool
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(cli.core, "is_terminal", lambda: True)
    result = CliRunner().invoke(cli.cli, ["events", *store], env={**env, "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "2 event(s)" in result.stdout
    assert "evt_shown" in result.stdout
    assert (ESC in result.stdout) is styled


def test_events_without_a_terminal_are_tab_separated(store: list[str]) -> None:
    result = CliRunner().invoke(cli.cli, ["events", *store], env={"FORCE_COLOR": "1"})
    assert result.stdout.startswith("received\tprovider\tevent\t")
    rows = {line.split("\t")[2]: line for line in result.stdout.splitlines()[1:]}
    # The time carries its zone (UTC); the type is the normalized one, not Stripe's own.
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", rows["evt_shown"].split("\t")[0])
    assert "\tstripe\tevt_shown\talert.triggered\tusage\tnotify\tdone\t" in rows["evt_shown"]
    # Not an alert: the provider's own type.
    assert rows["evt_other"].split("\t")[3] == "customer.created"


@pytest.mark.parametrize("env", [{}, {"FORCE_COLOR": "1"}], ids=["not-a-terminal", "terminal"])
def test_apply_shows_progress_only_on_a_terminal(plan_env: list[str], env: dict[str, str]) -> None:
    apply = ["apply", *plan_env[1:], "--yes"]
    result = CliRunner().invoke(cli.cli, apply, env={**env, "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "done: stripe create api-100: created alrt_" in result.stdout
    assert ("applying" in result.stdout) is bool(env)  # the bar, cleared when done


async def test_apply_reports_each_outcome_as_it_finishes(plan_env: list[str]) -> None:
    from alerthooks.manager import AlertManager, Credentials, Outcome, load_config

    seen: list[Outcome] = []
    async with AlertManager(load_config(plan_env[2]), Credentials.from_env()) as manager:
        plan = await manager.plan()
        result = await manager.apply(plan, on_outcome=seen.append)
    assert seen and sorted(map(id, seen)) == sorted(map(id, result.outcomes))
