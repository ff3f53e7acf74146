"""``alerthooks catch-up``: one line per provider, handlers run in this process, exit codes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from alerthooks.cli import cli
from alerthooks.testing.chargebee import chargebee_alert_status_changed
from alerthooks.testing.fakes import FakeChargebee, FakeStripe
from alerthooks.testing.stripe import stripe_alert_triggered

from . import catchup_app
from .conftest import free_port
from .test_catchup import API_VARIABLES, ago


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeStripe, FakeChargebee]]:
    with FakeStripe(hang=1.0) as stripe_api, FakeChargebee(hang=1.0) as chargebee_api:
        yield stripe_api, chargebee_api


@pytest.fixture
def env(
    fakes: tuple[FakeStripe, FakeChargebee], monkeypatch: pytest.MonkeyPatch
) -> tuple[FakeStripe, FakeChargebee]:
    for name in API_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for fake in fakes:
        fake.reset()
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
    catchup_app.handled.clear()
    return fakes


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/inbox.db"


def catch_up(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["catch-up", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("app", ["tests.catchup_app:hooks", "tests.catchup_app:queued"])
def test_catch_up_prints_one_line_per_provider_and_runs_the_handlers(
    env: tuple[FakeStripe, FakeChargebee], store: str, app: str
) -> None:
    stripe_api, chargebee_api = env
    events = [stripe_api.add_event(stripe_alert_triggered(created=ago(hours=h))) for h in (1, 2)]
    events.append(chargebee_api.add_event(chargebee_alert_status_changed(occurred_at=ago(hours=1))))

    code, out, err = catch_up(app, "--store", store)

    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "stripe: 2 fetched, 2 new, 0 already received",
        "chargebee: 1 fetched, 1 new, 0 already received",
        "orb: skipped: no events API to read",
        "metronome: skipped: no events API to read",
    ]
    assert sorted(catchup_app.handled) == sorted(e["id"] for e in events)

    code, out, _ = catch_up(app, "--store", store)
    assert code == 0
    assert out.splitlines()[:2] == [
        "stripe: 2 fetched, 0 new, 2 already received",
        "chargebee: 1 fetched, 0 new, 1 already received",
    ]
    assert len(catchup_app.handled) == 3


def test_provider_and_since_narrow_what_is_read(
    env: tuple[FakeStripe, FakeChargebee], store: str
) -> None:
    stripe_api, chargebee_api = env
    stripe_api.add_event(stripe_alert_triggered(created=ago(minutes=10)))
    stripe_api.add_event(stripe_alert_triggered(created=ago(hours=2)))
    chargebee_api.add_event(chargebee_alert_status_changed(occurred_at=ago(minutes=10)))
    code, out, _ = catch_up(
        "tests.catchup_app:hooks", "--store", store, "--provider", "stripe", "--since", "30m"
    )
    assert code == 0
    assert out.splitlines() == ["stripe: 1 fetched, 1 new, 0 already received"]
    assert chargebee_api.calls["GET /api/v2/events"] == 0


def test_a_provider_without_credentials_is_one_skipped_line(
    env: tuple[FakeStripe, FakeChargebee], store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRIPE_API_KEY")
    code, out, _ = catch_up("tests.catchup_app:hooks", "--store", store, "--provider", "stripe")
    assert code == 0
    assert out.splitlines() == ["stripe: skipped: no API credentials (STRIPE_API_KEY: not set)"]


def test_a_failing_api_is_its_line_and_exit_code_1(
    env: tuple[FakeStripe, FakeChargebee], store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHARGEBEE_API_KEY", "wrong")
    code, out, err = catch_up("tests.catchup_app:hooks", "--store", store)
    assert code == 1
    assert out.splitlines()[0] == "stripe: 0 fetched, 0 new, 0 already received"
    assert out.splitlines()[1].startswith("chargebee: 0 fetched, 0 new, 0 already received; error:")
    assert err == "error: catch-up incomplete: chargebee failed\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--since", "3 weeks"],
            "error: --since: '3 weeks' is neither a duration (30m, 72h, 7d) nor an ISO-8601 time\n",
        ),
        (["--provider", "paddle"], "error: --provider: tests.catchup_app:hooks has no provider"),
    ],
)
def test_bad_options_are_one_error_line(
    env: tuple[FakeStripe, FakeChargebee], store: str, args: list[str], message: str
) -> None:
    code, out, err = catch_up("tests.catchup_app:hooks", "--store", store, *args)
    assert code == 1
    assert out == ""
    assert err.startswith(message) and err.count("\n") == 1


def test_a_store_that_cannot_be_reached_is_one_error_line(
    env: tuple[FakeStripe, FakeChargebee],
) -> None:
    stripe_api, _ = env
    stripe_api.add_event(stripe_alert_triggered(created=ago(hours=1)))
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    code, out, err = catch_up("tests.catchup_app:hooks", "--store", url)
    assert code == 1
    assert out == ""
    assert err.startswith("error: store unavailable: ") and err.count("\n") == 1
