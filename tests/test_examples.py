"""Every example in examples/ runs here, so the documentation cannot rot: each app is imported
and driven in-process, and examples/run.py (`make run`) is started as a real server that the
`alerthooks send` lines it prints deliver every sample to."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from click.testing import CliRunner

from alerthooks.cli import cli
from alerthooks.testing import (
    AlertHooksClient,
    chargebee_alert_status_changed,
    sample_names,
    stripe_alert_triggered,
)
from alerthooks.testing.autumn import autumn_event
from alerthooks.testing.flexprice import flexprice_event
from alerthooks.testing.lago import lago_event
from alerthooks.testing.metronome import metronome_event
from alerthooks.testing.openmeter import openmeter_event
from alerthooks.testing.orb import orb_event

from .conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
APPS = sorted(p for p in EXAMPLES.glob("*.py") if p.name not in ("run.py", "custom_provider.py"))
DEV_ENV = {
    "STRIPE_WEBHOOK_SECRET": "whsec_examples",
    "CHARGEBEE_WEBHOOK_USERNAME": "examples",
    "CHARGEBEE_WEBHOOK_PASSWORD": "pass:word",
    "ORB_WEBHOOK_SECRET": "orb_examples",
    "METRONOME_WEBHOOK_SECRET": "metronome_examples",
    "LAGO_WEBHOOK_SECRET": "lago_examples",
    "OPENMETER_WEBHOOK_SECRET": "whsec_b3Blbm1ldGVyLWV4YW1wbGVz",
    "AUTUMN_WEBHOOK_SECRET": "whsec_YXV0dW1uLWV4YW1wbGVz",
    "FLEXPRICE_WEBHOOK_SECRET": "whsec_ZmxleHByaWNlLWV4YW1wbGVz",
}
PROVIDERS = ("stripe", "chargebee", "orb", "metronome", "lago", "openmeter", "autumn", "flexprice")


def _import(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in DEV_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ALERTHOOKS_STORE", f"sqlite:///{tmp_path / 'example.db'}")
    monkeypatch.chdir(tmp_path)


def test_every_example_is_covered() -> None:
    """A new example must be driven by this module (or by its own test, named here)."""
    assert {p.name for p in EXAMPLES.iterdir()} == {
        "app.py",  # test_each_example_app_receives_every_provider, test_make_run_…
        "fastapi_app.py",  # test_each_example_app_receives_every_provider
        "run.py",  # test_make_run_prints_send_lines_that_deliver_every_sample
        "custom_provider.py",  # tests/test_provider_contract.py
        "alerts.toml",  # tests/test_manager_config.py
    }


@pytest.mark.usefixtures("example_env")
@pytest.mark.parametrize("path", APPS, ids=[p.stem for p in APPS])
async def test_each_example_app_receives_every_provider(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = _import(path)
    stripe = stripe_alert_triggered()
    in_alarm = chargebee_alert_status_changed("in_alarm")
    cleared = chargebee_alert_status_changed("within_limit")
    orb, metronome = orb_event(), metronome_event("metronome_usage_threshold_resolved")
    async with AlertHooksClient(module.app) as client:
        assert client.prefix == "/webhooks"
        answers = [
            await client.send_stripe(stripe),
            await client.send_chargebee(in_alarm),
            await client.send_chargebee(cleared),
            await client.deliver("orb", orb),
            await client.deliver("metronome", metronome),
            await client.deliver("lago", lago_event()),
            await client.deliver("openmeter", openmeter_event()),
            await client.deliver("autumn", autumn_event()),
            await client.deliver("flexprice", flexprice_event()),
        ]
    assert [r.status_code for r in answers] == [200] * 9, [r.text for r in answers]
    printed = capsys.readouterr().out
    stripe_alert_id = stripe["data"]["object"]["alert"]["id"]
    if path.name == "app.py":
        assert f"triggered ({stripe['id']})" in printed
        assert f"triggered ({in_alarm['id']})" in printed
        assert f"cleared ({cleared['id']})" in printed
        alert_id = orb["properties"]["alert_configuration"]["id"]
        assert f"[orb] {alert_id!r} triggered ({orb['id']})" in printed
        assert f"[metronome] 'API calls threshold exceeded' cleared ({metronome['id']})" in printed
    elif path.name == "fastapi_app.py":
        assert printed.startswith(f"stripe alert {stripe_alert_id} on meter mtr_")
        assert in_alarm["id"] not in printed
    else:  # an example added later: at least something reached a handler
        assert printed


class Server:
    """examples/run.py in a subprocess, its stdout and stderr in one log file."""

    def __init__(self, log: Path, env: dict[str, str]) -> None:
        self.log = log
        self.port = int(env["PORT"])
        self._handle = log.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "examples/run.py"],
            cwd=ROOT,
            env=env,
            stdout=self._handle,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.output(), re.MULTILINE)
            if match:
                return match
            assert self.popen.poll() is None, f"server exited:\n{self.output()}"
            assert time.monotonic() < deadline, f"no {pattern!r} in:\n{self.output()}"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._handle.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    env = {k: v for k, v in os.environ.items() if k not in DEV_ENV}
    env.update(
        PORT=str(free_port()),
        ALERTHOOKS_STORE=f"sqlite:///{tmp_path / 'run.db'}",
        PYTHONUNBUFFERED="1",
        NO_COLOR="1",
    )
    running = Server(tmp_path / "server.log", env)
    try:
        running.wait_for(r"Application startup complete")
        assert httpx.get(f"http://127.0.0.1:{running.port}/health").text == "ok"
        yield running
    finally:
        running.stop()


NOT_ALERTS = {
    "stripe_customer_created",
    "chargebee_subscription_created",
    "orb_customer_created",
    "metronome_invoice_finalized",
    "lago_invoice_created",
    "openmeter_invoice_created",
    "autumn_customer_products_updated",
    "flexprice_wallet_ongoing_balance_updated",
}
CLEARED = ("within_limit", "recovered", "resolved", "entitlements_reset")


def test_make_run_prints_send_lines_that_deliver_every_sample(server: Server) -> None:
    lines = {
        m.group(1): m.group(0).strip()
        for m in re.finditer(
            rf"^  \S*alerthooks send ({'|'.join(PROVIDERS)}) .*$", server.output(), re.M
        )
    }
    assert set(lines) == set(PROVIDERS), server.output()
    if Path(sys.executable).parent == ROOT / ".venv" / "bin":  # as under `make run`
        assert lines["stripe"].startswith(".venv/bin/alerthooks send stripe --sample ")
    # Each printed line as printed, a fresh Python process each, all at once; every other
    # sample through the same command line in this process (a fresh interpreter per sample
    # would take minutes on a busy machine).
    running: dict[str, subprocess.Popen[str]] = {}
    for line in lines.values():
        running[line.split("--sample ")[1].split()[0]] = subprocess.Popen(
            shlex.split(line), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    for sample, proc in running.items():
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        _check_sent(server, sample, out)
    for sample in sample_names():
        if sample in running:
            continue
        argv = shlex.split(lines[sample.split("_")[0]])
        argv[argv.index("--sample") + 1] = sample
        result = CliRunner().invoke(cli, argv[1:])
        assert result.exit_code == 0, result.output
        _check_sent(server, sample, result.output)


def _check_sent(server: Server, sample: str, out: str) -> None:
    """The sample was answered 200 and the server did with it what its kind calls for."""
    provider = sample.split("_")[0]
    assert "200 OK" in out
    event_id = re.search(r"event (\S+)\)", out)
    assert event_id, out
    eid = re.escape(event_id.group(1))
    if sample in NOT_ALERTS:
        server.wait_for(rf"{provider} event {eid} is not an alert")
    elif "_thin_" in sample:  # read from Stripe's API, and `make run` sets no API key
        server.wait_for(rf"{provider} event {eid} \(.+\) kept as unparsed")
    elif sample.endswith(CLEARED):
        server.wait_for(rf"^\[{provider}\] '.+' cleared \({eid}\)")
    else:
        server.wait_for(rf"^\[{provider}\] '.+' triggered \({eid}\): value=")
