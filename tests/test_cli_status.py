"""``alerthooks status``: the alert states of a store, tab-separated or as a table, filtered."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner

from alerthooks.cli import cli
from alerthooks.store import StateChange, open_store
from alerthooks.testing import (
    AlertHooksClient,
    chargebee_alert_status_changed,
    stripe_alert_recovered,
    stripe_alert_triggered,
)

from .helpers import make_hooks
from .stores import POSTGRES_URL, with_schema
from .test_state_fold import cb, write_v2

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_790_000_000  # 2026-09-21 14:13:20 UTC
HEADER = "provider\talert\tkind\tsubject\tstate\tsince\tevent"


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/inbox.db"
        return
    if not POSTGRES_URL:
        pytest.skip("ALERTHOOKS_TEST_POSTGRES_URL is not set")
    schema = f"alerthooks_test_{uuid.uuid4().hex[:12]}"
    try:
        yield with_schema(POSTGRES_URL, schema)
    finally:

        async def drop() -> None:
            conn = await asyncpg.connect(POSTGRES_URL)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()

        asyncio.run(drop())


def seed(url: str, *deliveries: tuple[str, dict[str, Any]]) -> None:
    """Deliver each (provider, payload) through a receiver on ``url``."""

    async def run() -> None:
        async with AlertHooksClient(make_hooks(url)) as client:
            for provider, payload in deliveries:
                response = await client.deliver(provider, payload)
                assert response.status_code == 200, response.text

    asyncio.run(run())


def chargebee(alarm: str, event_id: str, occurred: int, sub: str | None) -> dict[str, Any]:
    payload = chargebee_alert_status_changed(
        alarm,  # type: ignore[arg-type]
        id=event_id,
        alert_id="al_1",
        occurred_at=T0 + occurred,
        subscription_id=sub,
    )
    if sub is None:  # an alert on no subscription: the alert as a whole
        del payload["content"]["alert_status"]["subscription_id"]
    return payload


@pytest.fixture
def seeded(url: str) -> str:
    seed(
        url,
        ("chargebee", chargebee("within_limit", "ev_c", 60, "sub_1")),
        ("chargebee", chargebee("in_alarm", "ev_t", 0, "sub_1")),  # arrives late, occurred first
        ("chargebee", chargebee("in_alarm", "ev_2", 30, "sub_2")),
        ("chargebee", chargebee("in_alarm", "ev_g", 5, None)),
        (
            "stripe",
            stripe_alert_triggered(
                id="evt_s1", alert_id="alrt_1", customer="cus_1", created=T0 + 1
            ),
        ),
    )
    return url


def run_status(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["status", *args])
    return result.exit_code, result.stdout, result.stderr


def test_status_prints_every_state_tab_separated(seeded: str) -> None:
    code, out, err = run_status("--store", seeded)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        HEADER,
        "chargebee\tal_1\tusage\t-\tin_alarm\t2026-09-21 14:13:25Z\tev_g",
        "chargebee\tal_1\tusage\tsub_1\twithin_limit\t2026-09-21 14:14:20Z\tev_c",
        "chargebee\tal_1\tusage\tsub_2\tin_alarm\t2026-09-21 14:13:50Z\tev_2",
        "stripe\talrt_1\tusage\tcus_1\tin_alarm\t2026-09-21 14:13:21Z\tevt_s1",
    ]


def test_status_in_alarm_keeps_the_subjects_in_alarm(seeded: str) -> None:
    code, out, _ = run_status("--store", seeded, "--in-alarm")
    assert code == 0
    assert [line.split("\t")[-1] for line in out.splitlines()] == [
        "event",
        "ev_g",
        "ev_2",
        "evt_s1",
    ]


def test_status_provider_keeps_that_providers_states(seeded: str) -> None:
    code, out, _ = run_status("--store", seeded, "--provider", "stripe")
    assert code == 0
    assert out.splitlines() == [
        HEADER,
        "stripe\talrt_1\tusage\tcus_1\tin_alarm\t2026-09-21 14:13:21Z\tevt_s1",
    ]
    code, out, _ = run_status("--store", seeded, "--provider", "chargebee", "--in-alarm")
    assert [line.split("\t")[3] for line in out.splitlines()[1:]] == ["-", "sub_2"]


def test_status_of_an_unknown_provider_is_one_error_line(seeded: str) -> None:
    code, out, err = run_status("--store", seeded, "--provider", "stirpe")
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "error: --provider: no provider named 'stirpe' (known: autumn, chargebee, flexprice, "
        "lago, metronome, openmeter, orb, stripe)"
    ]


def test_status_on_a_terminal_is_a_table(seeded: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from alerthooks.cli import core

    monkeypatch.setattr(core, "is_terminal", lambda: True)
    monkeypatch.setenv("COLUMNS", "160")
    result = CliRunner().invoke(cli, ["status", "--store", seeded, "--in-alarm"])
    assert result.exit_code == 0, result.output
    assert "3 alert state(s)" in result.output
    assert "\t" not in result.output
    for cell in ("provider", "subject", "since", "sub_2", "cus_1", "2026-09-21 14:13:21Z"):
        assert cell in result.output
    assert "within_limit" not in result.output


def test_status_shows_each_alerts_kind_and_a_recovered_alert_within_limit(url: str) -> None:
    seed(
        url,
        ("stripe", stripe_alert_triggered(id="evt_u", alert_id="alrt_u", customer="cus_1")),
        ("stripe", stripe_alert_triggered(id="evt_c", alert_type="credit_balance_threshold")),
        ("stripe", stripe_alert_recovered(id="evt_r", created=int(time.time()) + 60)),
        ("stripe", stripe_alert_triggered(id="evt_s", alert_type="spend_threshold")),
    )
    code, out, _ = run_status("--store", url)
    assert code == 0
    rows = [line.split("\t") for line in out.splitlines()[1:]]
    assert sorted((r[2], r[4], r[6]) for r in rows) == [
        ("credit_balance", "within_limit", "evt_r"),
        ("spend", "in_alarm", "evt_s"),
        ("usage", "in_alarm", "evt_u"),
    ]


def test_status_of_an_empty_store_prints_the_header(url: str) -> None:
    seed(url)
    assert run_status("--store", url) == (0, HEADER + "\n", "")


def test_status_without_a_store_file_says_so(tmp_path: Path) -> None:
    code, out, err = run_status("--store", f"sqlite:///{tmp_path}/missing.db")
    assert (code, out) == (1, "")
    assert err.startswith("error: no store at ")
    assert not (tmp_path / "missing.db").exists()


def test_status_folds_a_schema_2_store_with_the_builtin_providers(url: str, tmp_path: Path) -> None:
    asyncio.run(
        write_v2(url, tmp_path, [cb("in_alarm", "ev_t", 60), cb("within_limit", "ev_c", 0)])
    )
    code, out, _ = run_status("--store", url)
    assert code == 0
    assert out.splitlines() == [
        HEADER,
        "chargebee\tal_1\tusage\tsub_1\tin_alarm\t2026-09-21 14:14:20Z\tev_t",
    ]


def test_status_app_reads_the_apps_store(seeded: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("ALERTHOOKS_STORE", seeded)
    monkeypatch.setenv("ALERTHOOKS_TEST_OUT", "/dev/null")
    sys.modules.pop("tests.inbox_app", None)  # its AlertHooks reads the env when imported
    try:
        code, out, _ = run_status("--app", "tests.inbox_app:hooks", "--provider", "stripe")
    finally:
        sys.modules.pop("tests.inbox_app", None)
    assert code == 0
    assert out.splitlines()[1:] == [
        "stripe\talrt_1\tusage\tcus_1\tin_alarm\t2026-09-21 14:13:21Z\tevt_s1"
    ]


def test_status_provider_lists_a_provider_only_the_store_knows(url: str) -> None:
    # States of a provider neither built in nor in an --app (a plug-in the receiver had).
    async def put() -> None:
        store = open_store(url)
        try:
            since = datetime.fromtimestamp(T0, timezone.utc)
            change = StateChange("thr_1", None, "acct_1", None, "in_alarm", since)
            await store.fold([("acme", "acme_ev_1", change)])
        finally:
            await store.close()

    seed(url)
    asyncio.run(put())
    code, out, _ = run_status("--store", url, "--provider", "acme")
    assert code == 0
    assert out.splitlines() == [
        HEADER,
        "acme\tthr_1\tother\tacct_1\tin_alarm\t2026-09-21 14:13:20Z\tacme_ev_1",
    ]
