"""``alerthooks status --reconcile``: drift rows for the subjects whose provider status differs
from the stored state, and exit codes 0 (none), 2 (some), 1 (error), on the stateful fake."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from alerthooks.cli import cli
from alerthooks.testing.chargebee import chargebee_alert_status_changed
from alerthooks.testing.fakes import FakeChargebee

from .test_catchup import API_VARIABLES, ago


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeChargebee]:
    with FakeChargebee(hang=1.0) as chargebee_api:
        yield chargebee_api


@pytest.fixture
def chargebee_api(fake: FakeChargebee, monkeypatch: pytest.MonkeyPatch) -> FakeChargebee:
    for name in API_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    fake.reset()
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    return fake


@pytest.fixture
def store(tmp_path: Path, chargebee_api: FakeChargebee) -> str:
    """A store holding two subscriptions' states of one alert, caught up from the fake (which
    then reports the same statuses)."""
    url = f"sqlite:///{tmp_path}/inbox.db"
    alert = chargebee_api.add_alert("Calls", "api-calls", "absolute", 100)
    for subscription, status in (("sub_1", "in_alarm"), ("sub_2", "within_limit")):
        chargebee_api.add_event(
            chargebee_alert_status_changed(
                status,  # type: ignore[arg-type]
                alert_id=alert["id"],
                subscription_id=subscription,
                occurred_at=ago(hours=1),
            )
        )
    caught = CliRunner().invoke(
        cli, ["catch-up", "tests.catchup_app:hooks", "--store", url, "--provider", "chargebee"]
    )
    assert caught.exit_code == 0, caught.output
    return url


def status(*args: str) -> tuple[int, list[str], str]:
    result = CliRunner().invoke(cli, ["status", *args])
    return result.exit_code, result.stdout.splitlines(), result.stderr


def test_no_drift_exits_0(store: str, chargebee_api: FakeChargebee) -> None:
    code, lines, err = status("--store", store, "--reconcile")
    assert (code, err) == (0, "")
    assert lines[0] == "provider\talert\tkind\tsubject\tstate\tsince\tevent"
    assert len(lines) == 3
    assert not [line for line in lines if line.startswith("drift")]


def test_each_differing_subject_is_a_drift_row_and_exits_2(
    store: str, chargebee_api: FakeChargebee
) -> None:
    alert = chargebee_api.alerts()[0]["id"]
    chargebee_api.set_alert_status(alert, "sub_1", "within_limit")
    chargebee_api.set_alert_status(alert, "sub_3", "in_alarm")  # never received here
    code, lines, _ = status("--store", store, "--reconcile")
    assert code == 2
    assert [line for line in lines if line.startswith("drift")] == [
        f"drift\tchargebee\t{alert}\tsub_1\tin_alarm\twithin_limit",
        f"drift\tchargebee\t{alert}\tsub_3\t-\tin_alarm",
    ]


def test_without_reconcile_the_provider_is_not_asked(
    store: str, chargebee_api: FakeChargebee
) -> None:
    chargebee_api.set_alert_status(chargebee_api.alerts()[0]["id"], "sub_1", "within_limit")
    calls = chargebee_api.total_calls
    code, lines, _ = status("--store", store)
    assert code == 0 and len(lines) == 3
    assert chargebee_api.total_calls == calls


def test_a_provider_api_failing_exits_1_in_one_line(
    store: str, chargebee_api: FakeChargebee, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHARGEBEE_API_KEY", "wrong")
    code, _, err = status("--store", store, "--reconcile")
    assert code == 1
    assert err.startswith("error: reconcile: chargebee: ") and "HTTP 401" in err
    assert err.count("\n") == 1


def test_a_provider_without_credentials_is_noted_and_not_a_drift(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHARGEBEE_API_KEY")
    code, _, err = status("--store", store, "--reconcile")
    assert code == 0
    assert err == ("chargebee: not reconciled: no API credentials (CHARGEBEE_API_KEY: not set)\n")


def test_in_alarm_narrows_the_rows_shown_not_what_is_compared(
    store: str, chargebee_api: FakeChargebee
) -> None:
    alert = chargebee_api.alerts()[0]["id"]
    chargebee_api.set_alert_status(alert, "sub_2", "in_alarm")  # within the limit here
    code, lines, _ = status("--store", store, "--reconcile", "--in-alarm")
    assert code == 2
    assert [line.split("\t")[3] for line in lines[1:] if not line.startswith("drift")] == ["sub_1"]
    assert [line for line in lines if line.startswith("drift")] == [
        f"drift\tchargebee\t{alert}\tsub_2\twithin_limit\tin_alarm"
    ]
