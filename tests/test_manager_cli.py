"""`alerthooks plan` and `alerthooks apply`: flags, exit codes, and one-line errors."""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from alerthooks import cli
from alerthooks.manager import AlertManager, RetryPolicy
from alerthooks.testing.fakes import FakeChargebee, FakeStripe

CONFIG = """
[stripe]
webhook_url = "https://example.com/hooks/stripe"

[[stripe.alerts]]
key = "api-100"
title = "API calls reached 100"
meter = "mtr_1"
gte = 100

[chargebee]

[[chargebee.alerts]]
key = "calls-80"
name = "Calls at 80%"
metered_feature_id = "api-calls"
threshold = { mode = "percentage", value = 80 }
"""

UNSET = {
    name: None
    for name in (
        "STRIPE_API_KEY",
        "CHARGEBEE_API_KEY",
        "CHARGEBEE_SITE",
        "ALERTHOOKS_STRIPE_API_BASE",
        "ALERTHOOKS_CHARGEBEE_API_BASE",
        "CHARGEBEE_WEBHOOK_USERNAME",
        "CHARGEBEE_WEBHOOK_PASSWORD",
        "NO_COLOR",
    )
}


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeStripe, FakeChargebee]]:
    with FakeStripe() as stripe_api, FakeChargebee() as chargebee_api:
        yield stripe_api, chargebee_api


@pytest.fixture
def env(fakes: tuple[FakeStripe, FakeChargebee]) -> dict[str, str | None]:
    for fake in fakes:
        fake.reset()
    return {**UNSET, **fakes[0].env(), **fakes[1].env()}


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(CONFIG)
    return path


def run(args: list[str], env: dict[str, str | None], input: str | None = None) -> Result:
    return CliRunner().invoke(cli.cli, args, env=env, input=input, catch_exceptions=False)


def calls(fakes: tuple[FakeStripe, FakeChargebee]) -> int:
    return fakes[0].total_calls + fakes[1].total_calls


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_plan_apply_converge_with_detailed_exit_codes(
    fakes: tuple[FakeStripe, FakeChargebee], env: dict[str, Any], config_file: Path
) -> None:
    plan = run(["plan", "--config", str(config_file), "--detailed-exitcode"], env)
    assert plan.exit_code == 2, plan.output
    assert "stripe: test mode (sk_test_…): 2 changes" in plan.stdout
    assert "chargebee: test mode (site acme-test): 1 change," in plan.stdout
    assert "create endpoint  https://example.com/hooks/stripe" in plan.stdout
    assert "\x1b[" not in plan.stdout  # plain when not a terminal
    writes = [k for k in fakes[0].calls if k.startswith("POST")]
    assert writes == []
    assert run(["plan", "--config", str(config_file)], env).exit_code == 0

    applied = run(["apply", "--config", str(config_file), "--yes"], env)
    assert applied.exit_code == 0, applied.output
    assert "done: stripe create api-100: created alrt_" in applied.stdout
    assert "signing secret (shown only once): whsec_" in applied.stdout
    # Where to put it comes from the provider (its env_hint), on the line after the secret.
    assert "\nPut it in STRIPE_WEBHOOK_SECRET where the receiver runs.\n" in applied.stdout
    assert "Applied 3 changes." in applied.stdout

    plan = run(["plan", "--config", str(config_file), "--detailed-exitcode"], env)
    assert plan.exit_code == 0, plan.output
    assert "No changes." in plan.stdout
    again = run(["apply", "--config", str(config_file), "--yes"], env)
    assert again.exit_code == 0
    assert "whsec_" not in again.stdout and "No changes." in again.stdout


def test_prune_flag_removes_managed_alerts_that_left_the_config(
    fakes: tuple[FakeStripe, FakeChargebee], env: dict[str, Any], config_file: Path
) -> None:
    assert run(["apply", "--config", str(config_file), "--yes"], env).exit_code == 0
    config_file.write_text(CONFIG.replace('key = "calls-80"', 'key = "calls-81"'))
    plan = run(["plan", "--config", str(config_file)], env)
    assert "keep" in plan.stdout and "--prune removes it" in plan.stdout
    kept = run(["apply", "--config", str(config_file), "--yes"], env)
    assert kept.exit_code == 0
    assert len(fakes[1].alerts()) == 2
    pruned = run(["apply", "--config", str(config_file), "--yes", "--prune"], env)
    assert pruned.exit_code == 0, pruned.output
    assert "done: chargebee delete calls-80" in pruned.stdout
    assert len(fakes[1].alerts()) == 1


def test_plan_prune_shows_the_deletes_and_its_exit_code_says_apply_prune_would_change(
    fakes: tuple[FakeStripe, FakeChargebee], env: dict[str, Any], config_file: Path
) -> None:
    assert run(["apply", "--config", str(config_file), "--yes"], env).exit_code == 0
    start = CONFIG.index("[[chargebee.alerts]]")
    config_file.write_text(CONFIG[:start])  # the chargebee alert left the config
    plan = run(["plan", "--config", str(config_file), "--detailed-exitcode"], env)
    assert plan.exit_code == 0, plan.output
    assert "--prune removes it" in plan.stdout
    pruning = run(["plan", "--config", str(config_file), "--detailed-exitcode", "--prune"], env)
    assert pruning.exit_code == 2, pruning.output
    assert "delete" in pruning.stdout and "calls-80" in pruning.stdout
    assert "--prune removes it" not in pruning.stdout
    assert len(fakes[1].alerts()) == 1  # plan writes nothing
    pruned = run(["apply", "--config", str(config_file), "--yes", "--prune"], env)
    assert "done: chargebee delete calls-80" in pruned.stdout
    after = run(["plan", "--config", str(config_file), "--detailed-exitcode", "--prune"], env)
    assert after.exit_code == 0, after.output


def test_a_new_endpoint_secret_names_where_it_goes() -> None:
    from alerthooks.cli.manage import _secret_env
    from alerthooks.manager import NewEndpointSecret

    assert _secret_env(NewEndpointSecret("stripe", "https://e.x/s", "whsec_1")) == (
        "STRIPE_WEBHOOK_SECRET"
    )
    assert _secret_env(NewEndpointSecret("elsewhere", "https://e.x/s", "k")) is None

    class WithEnv(NewEndpointSecret):
        env = "MY_PROVIDER_SECRET"  # what the manager may give

    assert _secret_env(WithEnv("stripe", "https://e.x/s", "whsec_1")) == "MY_PROVIDER_SECRET"


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("[stripe\n", ("invalid TOML",)),
        (
            CONFIG.replace("gte = 100", "gte = 1.5"),
            ("stripe.alerts[0] (key 'api-100'): gte:",),
        ),
        (
            CONFIG.replace('name = "Calls at 80%"', f'name = "{"n" * 51}"'),
            ("chargebee.alerts[0] (key 'calls-80'): name:", "at most 50 characters"),
        ),
    ],
)
@pytest.mark.parametrize("command", ["plan", "apply"])
def test_invalid_config_is_rejected_before_any_call(
    fakes: tuple[FakeStripe, FakeChargebee],
    env: dict[str, Any],
    config_file: Path,
    command: str,
    text: str,
    fragments: tuple[str, ...],
) -> None:
    config_file.write_text(text)
    result = run([command, "--config", str(config_file), "--yes"][: 3 + (command == "apply")], env)
    assert_one_line_error(result, *fragments)
    assert calls(fakes) == 0


def test_missing_config_file_and_credentials_are_one_line(
    fakes: tuple[FakeStripe, FakeChargebee], env: dict[str, Any], tmp_path: Path
) -> None:
    assert_one_line_error(
        run(["plan", "--config", str(tmp_path / "nope.toml")], env), "nope.toml: no such file"
    )
    config_file = tmp_path / "alerts.toml"
    config_file.write_text(CONFIG)
    result = run(["plan", "--config", str(config_file)], {**env, "STRIPE_API_KEY": None})
    assert_one_line_error(result, "STRIPE_API_KEY: not set")
    result = run(["plan", "--config", str(config_file)], {**env, "STRIPE_API_KEY": "pk_test_1"})
    assert_one_line_error(result, "STRIPE_API_KEY: expected a secret")
    config_file.write_text(
        CONFIG.replace("[chargebee]", '[chargebee]\nwebhook_url = "https://e.x/cb"')
    )
    result = run(["plan", "--config", str(config_file)], env)
    assert_one_line_error(result, "CHARGEBEE_WEBHOOK_USERNAME/CHARGEBEE_WEBHOOK_PASSWORD: not set")
    assert calls(fakes) == 0


def test_provider_limit_is_one_line_and_nothing_is_written(
    fakes: tuple[FakeStripe, FakeChargebee], env: dict[str, Any], config_file: Path
) -> None:
    for i in range(25):
        fakes[0].add_alert(f"manual {i}", "mtr_1", i + 1)
    result = run(["apply", "--config", str(config_file), "--yes"], env)
    assert_one_line_error(result, "(key 'api-100'): meter: 26 alerts would exist on meter 'mtr_1'")
    assert [k for k in fakes[0].calls if k.startswith("POST")] == []


def test_apply_asks_and_refuses_without_a_terminal(
    fakes: tuple[FakeStripe, FakeChargebee],
    env: dict[str, Any],
    config_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = run(["apply", "--config", str(config_file)], env)
    assert_one_line_error(result, "stdin is not a terminal; pass --yes")
    assert calls(fakes) == 0
    monkeypatch.setattr(cli.core, "can_prompt", lambda: True)
    declined = run(["apply", "--config", str(config_file)], env, input="n\n")
    assert declined.exit_code == 1
    assert "Apply these changes?" in declined.stdout
    assert "error: apply cancelled" in declined.stderr
    assert fakes[0].alerts() == [] and fakes[1].alerts() == []
    accepted = run(["apply", "--config", str(config_file)], env, input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert len(fakes[0].alerts()) == 1


def test_live_credentials_need_the_live_flag(config_file: Path) -> None:
    with FakeStripe(api_key="sk_live_abc") as stripe_api, FakeChargebee(site="acme") as cb_api:
        env = {**UNSET, **stripe_api.env(), **cb_api.env()}
        plan = run(["plan", "--config", str(config_file)], env)
        assert plan.exit_code == 0
        assert "stripe: live mode (sk_live_…)" in plan.stdout
        assert "chargebee: live mode (site acme)" in plan.stdout
        calls_after_plan = stripe_api.total_calls + cb_api.total_calls
        refused = run(["apply", "--config", str(config_file), "--yes"], env)
        assert_one_line_error(refused, "stripe, chargebee: live-mode credentials; pass --live")
        assert stripe_api.total_calls + cb_api.total_calls == calls_after_plan
        applied = run(["apply", "--config", str(config_file), "--yes", "--live"], env)
        assert applied.exit_code == 0, applied.output
        assert len(stripe_api.alerts()) == 1 and len(cb_api.alerts()) == 1


def test_failed_changes_exit_1_and_the_next_apply_finishes(
    fakes: tuple[FakeStripe, FakeChargebee],
    env: dict[str, Any],
    config_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast = RetryPolicy(attempts=2, backoff=0.001, max_backoff=0.001, timeout=1)
    monkeypatch.setattr(cli.manage, "AlertManager", functools.partial(AlertManager, retry=fast))
    fakes[1].inject("500", method="POST", path="/api/v2/alerts", times=2)
    failed = run(["apply", "--config", str(config_file), "--yes", "--concurrency", "2"], env)
    assert failed.exit_code == 1
    assert "failed: chargebee create calls-80" in failed.stdout
    assert "error: 1 of 3 changes failed; run apply again to finish" in failed.stderr
    assert "Traceback" not in failed.output
    finished = run(["apply", "--config", str(config_file), "--yes"], env)
    assert finished.exit_code == 0, finished.output
    assert "Applied 1 change." in finished.stdout


def test_concurrency_must_be_positive(env: dict[str, Any], config_file: Path) -> None:
    result = run(["apply", "--config", str(config_file), "--concurrency", "0"], env)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_fakes_serve_from_the_command_line(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "alerthooks.testing.fakes", "--latency", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        env: dict[str, str | None] = dict(UNSET)
        for _ in range(5):
            name, _, value = proc.stdout.readline().strip().removeprefix("export ").partition("=")
            env[name] = value
        assert env["ALERTHOOKS_STRIPE_API_BASE"].startswith("http://127.0.0.1:")  # type: ignore[union-attr]
        config_file = tmp_path / "alerts.toml"
        config_file.write_text(CONFIG.replace("webhook_url", "# webhook_url"))
        applied = run(["apply", "--config", str(config_file), "--yes"], env)
        assert applied.exit_code == 0, applied.output
        plan = run(["plan", "--config", str(config_file), "--detailed-exitcode"], env)
        assert plan.exit_code == 0, plan.output
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)


def test_provider_refusals_are_one_line(
    fakes: tuple[FakeStripe, FakeChargebee], env: dict[str, Any], config_file: Path
) -> None:
    result = run(["plan", "--config", str(config_file)], {**env, "STRIPE_API_KEY": "sk_test_x"})
    assert_one_line_error(result, "stripe: list alerts: HTTP 401: invalid API key")
    result = run(["plan", "--config", str(config_file)], {**env, "CHARGEBEE_API_KEY": "wrong"})
    assert_one_line_error(result, "chargebee: list alerts: HTTP 401: invalid API key")
