"""The fake provider APIs as a user meets them: ``python -m alerthooks.testing.fakes`` and its
export lines, the registry of fakes, and every import path they had."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from alerthooks.testing.fakeserver import FakeAPI, fake_apis, register_fake

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "examples" / "alerts.toml"
CLI = [sys.executable, "-c", "from alerthooks.cli import main; main()"]


def clean_env() -> dict[str, str]:
    """This process's environment without any provider credentials or API bases."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STRIPE_", "CHARGEBEE_", "ALERTHOOKS_")) and k != "NO_COLOR"
    }


class Served:
    def __init__(self, proc: subprocess.Popen[str], exports: dict[str, str]) -> None:
        self.proc, self.exports = proc, exports


@pytest.fixture
def served() -> Iterator[Served]:
    """``python -m alerthooks.testing.fakes`` running, with the exports it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-W", "default", "-m", "alerthooks.testing.fakes"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert proc.stdout is not None
        exports: dict[str, str] = {}
        for line in proc.stdout:
            if line.startswith("#"):
                break
            words = shlex.split(line)
            assert words[0] == "export" and len(words) == 2, line
            name, _, value = words[1].partition("=")
            exports[name] = value
        else:
            pytest.fail(f"the fakes exited early: {proc.wait(10)}")
        yield Served(proc, exports)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.wait(10)


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)


def test_module_prints_the_exports_plan_and_apply_need_without_a_warning(
    served: Served,
) -> None:
    assert set(served.exports) == {
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
        "LAGO_API_KEY",
        "LAGO_API_URL",
        "ALERTHOOKS_LAGO_MODE",
        "OPENMETER_API_KEY",
        "ALERTHOOKS_OPENMETER_API_BASE",
        "ALERTHOOKS_OPENMETER_MODE",
    }
    env = {**clean_env(), **served.exports}
    # The README's example config, as is: it has both webhook_url keys.
    plan = cli("plan", "--config", str(EXAMPLE_CONFIG), "--detailed-exitcode", env=env)
    assert plan.returncode == 2, plan.stdout + plan.stderr  # 2: there are changes
    keys = ("api-100", "api-10k-all", "calls-80pct", "calls-1m", "calls-sub-1", "credits-low")
    for key in (*keys, "usage-1000", "spend-500"):
        assert key in plan.stdout
    applied = cli("apply", "--config", str(EXAMPLE_CONFIG), "--yes", env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    again = cli("plan", "--config", str(EXAMPLE_CONFIG), "--detailed-exitcode", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    # The fakes hold what apply made, including the webhook endpoint with the exported auth.
    base, key = served.exports["ALERTHOOKS_CHARGEBEE_API_BASE"], served.exports["CHARGEBEE_API_KEY"]
    listed = httpx.get(f"{base}/api/v2/alerts", auth=(key, "")).json()
    assert sorted(entry["alert"]["name"] for entry in listed["list"]) == [
        "Calls at 80%",
        "One million calls",
    ]

    served.proc.send_signal(signal.SIGINT)
    assert served.proc.wait(10) == 0
    assert served.proc.stderr is not None
    stderr = served.proc.stderr.read()
    assert "RuntimeWarning" not in stderr and "sys.modules" not in stderr, stderr
    assert stderr == ""


def test_sigterm_stops_the_fakes_cleanly(served: Served) -> None:
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(10) == 0
    assert served.proc.stderr is not None
    assert served.proc.stderr.read() == ""


def test_the_builtin_fakes_are_registered_in_route_order() -> None:
    from alerthooks.testing.chargebee import FakeChargebee
    from alerthooks.testing.lago import FakeLago
    from alerthooks.testing.metronome import FakeMetronome
    from alerthooks.testing.openmeter import FakeOpenMeter
    from alerthooks.testing.orb import FakeOrb
    from alerthooks.testing.stripe import FakeStripe

    assert fake_apis() == {
        "stripe": FakeStripe,
        "chargebee": FakeChargebee,
        "orb": FakeOrb,
        "metronome": FakeMetronome,
        "lago": FakeLago,
        "openmeter": FakeOpenMeter,
    }


def test_chargebee_exports_add_the_webhook_credentials_to_env() -> None:
    from alerthooks.testing.chargebee import FakeChargebee

    fake = FakeChargebee(webhook_username="u", webhook_password="p w")
    assert fake.exports() == {
        **fake.env(),
        "CHARGEBEE_WEBHOOK_USERNAME": "u",
        "CHARGEBEE_WEBHOOK_PASSWORD": "p w",
    }
    assert "CHARGEBEE_WEBHOOK_USERNAME" not in fake.env()


def test_a_fake_without_a_provider_name_is_refused() -> None:
    class Nameless(FakeAPI):
        pass

    with pytest.raises(ValueError, match=r"Nameless\.provider is not set"):
        register_fake(Nameless)


def test_every_former_import_path_still_works() -> None:
    from alerthooks.testing import (
        FakeChargebee,
        FakeStripe,
        Fault,
        builders,
        chargebee,
        fakes,
        signing,
        stripe,
    )

    assert fakes.FakeStripe is FakeStripe and fakes.FakeChargebee is FakeChargebee
    assert fakes.Fault is Fault
    assert fakes._FakeAPI is FakeAPI
    assert fakes.main.__module__ == "alerthooks.testing.fakeserver"
    assert builders.stripe_alert_triggered is stripe.stripe_alert_triggered
    assert builders.chargebee_alert_status_changed is chargebee.chargebee_alert_status_changed
    for name in ("build_sample", "load_sample", "sample_names", "default_sample"):
        assert callable(getattr(builders, name))
    assert signing.stripe_signature_header("{}", "whsec_x", 1).startswith("t=1,v1=")
    assert signing.chargebee_auth_headers("u", "p") == {"Authorization": "Basic dTpw"}
