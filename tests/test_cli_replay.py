"""``alerthooks events`` and ``alerthooks replay`` on unparsed events, failed handlers and the
attempt history, through the CLI on real stores."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from alerthooks import AlertEvent, AlertHooks
from alerthooks.cli import cli
from alerthooks.providers import NotAnAlert, Provider
from alerthooks.providers.stripe import Stripe
from alerthooks.store import UNPARSED_HANDLER, Delivery, open_store
from alerthooks.testing import FakeStripe, stripe_alert_triggered, stripe_customer_created
from alerthooks.testing.client import AlertHooksClient

from .helpers import make_hooks
from .stores import DURABLE, postgres_schema
from .test_cli_inbox import ROOT, exhaust, handled
from .test_unparsed import NO_THRESHOLD, spend_alert

APP = "tests.inbox_app:hooks"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(params=DURABLE)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite file or Postgres schema, for the test and the CLI it runs."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/inbox.db"
        return
    schema = postgres_schema()
    url = asyncio.run(schema.__aenter__())
    try:
        yield url
    finally:
        asyncio.run(schema.__aexit__(None, None, None))


@pytest.fixture
def out(store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Where tests.inbox_app's handler writes each event it handled; its store is ``store``."""
    monkeypatch.chdir(ROOT)
    path = tmp_path / "handled.txt"
    monkeypatch.setenv("ALERTHOOKS_STORE", store)
    monkeypatch.setenv("ALERTHOOKS_TEST_OUT", str(path))
    sys.modules.pop("tests.inbox_app", None)  # its AlertHooks reads the env when imported
    yield path
    sys.modules.pop("tests.inbox_app", None)


def deliver(url: str, *payloads: dict[str, Any], hooks: AlertHooks | None = None) -> list[Any]:
    """Deliver ``payloads`` to hooks on ``url`` (handler ``record`` counts them); the answers'
    JSON bodies."""
    hooks = hooks or make_hooks(url)
    ran: list[str] = []

    @hooks.on("*", name="record")
    def record(event: AlertEvent) -> None:
        ran.append(event.id)

    async def run() -> list[Any]:
        async with AlertHooksClient(hooks) as client:
            return [(await client.deliver("stripe", p)).json() for p in payloads]

    answers = asyncio.run(run())
    accepted = [
        p["id"] for p, a in zip(payloads, answers, strict=True) if a == {"status": "accepted"}
    ]
    assert ran == accepted, "only the accepted deliveries run the handler"
    return answers


def _cannot_read(self: Provider, payload: dict[str, Any]) -> AlertEvent:
    raise NotAnAlert("a shape this build does not know")


def rows(output: str) -> list[list[str]]:
    """The tab-separated rows below the header."""
    return [line.split("\t") for line in output.splitlines()[1:]]


# -- unparsed ---------------------------------------------------------------------------------


def test_events_status_unparsed_lists_them_with_the_reason(runner: CliRunner, store: str) -> None:
    unread = spend_alert()
    assert deliver(store, unread, stripe_alert_triggered()) == [
        {"status": "unparsed"},
        {"status": "accepted"},
    ]
    listed = runner.invoke(cli, ["events", "--status", "unparsed", "--store", store])
    assert listed.exit_code == 0, listed.output
    (row,) = rows(listed.output)
    assert row[0].endswith("Z")
    assert row[1:] == [
        "stripe",
        unread["id"],
        "billing.alert.triggered",  # the provider's own type: it does not normalize
        "-",
        UNPARSED_HANDLER,
        "unparsed",
        "0",
        "",
        NO_THRESHOLD,
    ]


def test_replay_unparsed_runs_the_handlers_of_those_that_read_now(
    runner: CliRunner, store: str, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readable, unreadable = stripe_alert_triggered(), spend_alert()
    with monkeypatch.context() as before_the_upgrade:
        before_the_upgrade.setattr(Stripe, "normalize", _cannot_read)
        assert deliver(store, readable) == [{"status": "unparsed"}]
    assert deliver(store, unreadable) == [{"status": "unparsed"}]
    replayed = runner.invoke(cli, ["replay", "--unparsed", "--app", APP])
    assert replayed.exit_code == 0, replayed.output
    assert replayed.output.splitlines() == [
        f"still unparsed: stripe {unreadable['id']}: {NO_THRESHOLD}",
        "1 of 2 unparsed event(s) read now and went to their handlers; 1 still unparsed",
        "1 handler(s) ran: 1 done, 0 failed",
    ]
    assert handled(out) == Counter({readable["id"]: 1})
    listed = runner.invoke(cli, ["events", "--status", "unparsed"])
    assert [row[2] for row in rows(listed.output)] == [unreadable["id"]]
    (row,) = rows(runner.invoke(cli, ["events", "--status", "done"]).output)
    assert (row[2], row[3], row[4], row[5], row[7]) == (
        readable["id"],
        "alert.triggered",
        "usage",
        "record",
        "1",
    )
    (state,) = rows(runner.invoke(cli, ["status", "--in-alarm"]).output)
    assert (state[0], state[2], state[4], state[6]) == (
        "stripe",
        "usage",
        "in_alarm",
        readable["id"],
    )

    # The provider retries (or a replay runs again): nothing runs twice, nothing is lost.
    assert deliver(store, readable, unreadable) == [
        {"status": "duplicate"},
        {"status": "unparsed"},
    ]
    again = runner.invoke(cli, ["replay", "--unparsed", "--app", APP])
    assert again.exit_code == 0, again.output
    assert again.output.splitlines()[-1] == (
        "0 of 1 unparsed event(s) read now and went to their handlers; 1 still unparsed"
    )
    assert handled(out) == Counter({readable["id"]: 1})


def test_replay_unparsed_in_queued_mode_leaves_nothing_pending(
    runner: CliRunner, store: str, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payloads = [stripe_alert_triggered() for _ in range(3)]
    with monkeypatch.context() as before_the_upgrade:
        before_the_upgrade.setattr(Stripe, "normalize", _cannot_read)
        deliver(store, *payloads, hooks=make_hooks(store, mode="queued"))
    replayed = runner.invoke(cli, ["replay", "--unparsed", "--app", APP])
    assert replayed.exit_code == 0, replayed.output
    assert replayed.output.splitlines()[-1] == "3 handler(s) ran: 3 done, 0 failed"
    assert handled(out) == Counter({p["id"]: 1 for p in payloads})
    for status in ("unparsed", "pending", "running"):
        assert rows(runner.invoke(cli, ["events", "--status", status]).output) == []


def test_replay_unparsed_with_none_stored_is_nothing_to_replay(
    runner: CliRunner, store: str, out: Path
) -> None:
    deliver(store, stripe_alert_triggered())
    result = runner.invoke(cli, ["replay", "--unparsed", "--app", APP])
    assert (result.exit_code, result.output) == (
        1,
        "error: nothing to replay: no unparsed events\n",
    )


def test_replay_unparsed_needs_an_app(runner: CliRunner, store: str) -> None:
    result = runner.invoke(cli, ["replay", "--unparsed", "--store", store])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert result.output.startswith("error: --unparsed needs --app MODULE:ATTR")


# -- failed handlers and their history --------------------------------------------------------


def seed_failed(url: str) -> tuple[str, str]:
    """One event whose handler ``record`` failed once (due again in an hour), one whose
    handler is dead."""

    async def run() -> None:
        s = open_store(url)
        now = datetime.now(timezone.utc)
        for event_id, dead in (("evt_failed", ()), ("evt_dead", ("record",))):
            body = json.dumps(stripe_alert_triggered(id=event_id)).encode()
            delivery = Delivery(
                "stripe", event_id, "billing.alert.triggered", body, now, ("record",)
            )
            await s.begin(delivery, owner="w", lease=60)
            await s.finish(
                "stripe",
                event_id,
                {"record": "RuntimeError: first"},
                owner="w",
                retry_in={"record": 3600},
                dead=dead,
            )
        await s.close()

    asyncio.run(run())
    return "evt_failed", "evt_dead"


def test_replay_failed_queues_the_failed_handlers_not_the_dead_ones(
    runner: CliRunner, store: str
) -> None:
    failed_id, dead_id = seed_failed(store)
    result = runner.invoke(cli, ["replay", "--failed", "--store", store])
    assert (result.exit_code, result.output) == (
        0,
        "1 handler(s) queued again; a running worker runs them\n",
    )
    pending = rows(runner.invoke(cli, ["events", "--status", "pending", "--store", store]).output)
    assert [(r[2], r[6], r[7]) for r in pending] == [(failed_id, "pending", "1")]
    dead = rows(runner.invoke(cli, ["events", "--status", "dead", "--store", store]).output)
    assert [r[2] for r in dead] == [dead_id]
    nothing = runner.invoke(cli, ["replay", "--failed", "--store", store])
    assert (nothing.exit_code, nothing.output) == (
        1,
        "error: nothing to replay: no failed handlers\n",
    )


def test_replay_failed_with_app_runs_them_and_keeps_the_earlier_attempts(
    runner: CliRunner, store: str, out: Path
) -> None:
    failed_id, dead_id = seed_failed(store)
    replayed = runner.invoke(cli, ["replay", "--failed", "--app", APP])
    assert (replayed.exit_code, replayed.output) == (
        0,
        "1 handler(s) ran again: 1 done, 0 failed again\n",
    )
    assert handled(out) == Counter({failed_id: 1})
    (row,) = rows(runner.invoke(cli, ["events", "--status", "done"]).output)
    assert (row[2], row[6], row[7], row[9]) == (failed_id, "done", "2", "")
    history = runner.invoke(cli, ["events", "--history"])
    assert history.output.splitlines()[0].split("\t") == [
        "received",
        "provider",
        "event",
        "type",
        "kind",
        "handler",
        "status",
        "attempt",
        "finished",
        "error",
    ]
    attempts = [(r[2], r[6], r[7], r[9]) for r in rows(history.output)]
    assert attempts == [
        (dead_id, "dead", "1", "RuntimeError: first"),
        (failed_id, "failed", "1", "RuntimeError: first"),
        (failed_id, "done", "2", ""),
    ]
    finished = [datetime.strptime(r[8], "%Y-%m-%d %H:%M:%S%z") for r in rows(history.output)]
    assert finished[1] <= finished[2] <= datetime.now(timezone.utc)


def test_replay_of_a_handler_that_still_fails_says_so_and_exits_1(
    runner: CliRunner, store: str, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_id, _ = exhaust(store, str(out))
    monkeypatch.setenv("ALERTHOOKS_TEST_FAIL", "1")
    replayed = runner.invoke(cli, ["replay", "--dead", "--app", APP])
    assert replayed.exit_code == 1, replayed.output
    assert replayed.stdout == "1 handler(s) ran again: 0 done, 1 failed again\n"
    assert replayed.stderr == (
        "error: 1 replayed handler(s) failed again (alerthooks events --history shows their "
        "attempts)\n"
    )
    assert handled(out) == Counter()
    history = [
        r for r in rows(runner.invoke(cli, ["events", "--history"]).output) if r[2] == dead_id
    ]
    numbers = [int(r[7]) for r in history]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 3
    assert {r[9] for r in history} == {"RuntimeError: told to fail"}
    (row,) = [r for r in rows(runner.invoke(cli, ["events"]).output) if r[2] == dead_id]
    assert row[6] in ("failed", "dead") and row[7] == str(len(numbers))  # every attempt


def test_replay_by_id_with_app_counts_the_handlers_that_failed_again(
    runner: CliRunner, store: str, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed_id, dead_id = seed_failed(store)
    monkeypatch.setenv("ALERTHOOKS_TEST_FAIL", "1")
    replayed = runner.invoke(cli, ["replay", failed_id, dead_id, "--app", APP])
    assert replayed.exit_code == 1
    assert replayed.stdout == "2 handler(s) ran again: 0 done, 2 failed again\n"
    assert replayed.stderr.startswith("error: 2 replayed handler(s) failed again")
    monkeypatch.delenv("ALERTHOOKS_TEST_FAIL")
    fixed = runner.invoke(cli, ["replay", failed_id, dead_id, "--app", APP])
    assert (fixed.exit_code, fixed.output) == (
        0,
        "2 handler(s) ran again: 2 done, 0 failed again\n",
    )
    assert handled(out) == Counter({failed_id: 1, dead_id: 1})


def test_replay_unparsed_reads_a_thin_event_once_the_stripe_api_key_is_set(
    runner: CliRunner, store: str, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = stripe_alert_triggered(alert_type="credit_balance_threshold")
    with FakeStripe() as stripe_api:
        thin = stripe_api.add_thin_event(snapshot)
        monkeypatch.delenv("STRIPE_API_KEY", raising=False)
        assert deliver(store, thin) == [{"status": "unparsed"}]
        listed = rows(runner.invoke(cli, ["events", "--status", "unparsed"]).output)
        assert [(r[2], r[9]) for r in listed] == [
            (thin["id"], "thin event: set STRIPE_API_KEY to read it")
        ]
        for name, value in stripe_api.env().items():
            monkeypatch.setenv(name, value)
        replayed = runner.invoke(cli, ["replay", "--unparsed", "--app", APP])
    assert replayed.exit_code == 0, replayed.output
    assert replayed.output.splitlines() == [
        "1 of 1 unparsed event(s) read now and went to their handlers; 0 still unparsed",
        "1 handler(s) ran: 1 done, 0 failed",
    ]
    assert handled(out) == Counter({snapshot["id"]: 1})
    (state,) = rows(runner.invoke(cli, ["status"]).output)
    assert (state[2], state[4], state[6]) == ("credit_balance", "in_alarm", snapshot["id"])


def test_events_history_shows_events_and_handlers_without_attempts(
    runner: CliRunner, store: str
) -> None:
    unread, other = spend_alert(), stripe_customer_created()
    deliver(store, unread, other)
    history = rows(runner.invoke(cli, ["events", "--history", "--store", store]).output)
    assert [r[2:] for r in history] == [
        [other["id"], "customer.created", "-", "-", "-", "", "", ""],
        [
            unread["id"],
            "billing.alert.triggered",
            "-",
            UNPARSED_HANDLER,
            "unparsed",
            "",
            "",
            NO_THRESHOLD,
        ],
    ]


# -- replay runs only what it names -------------------------------------------------------------


def fail_inline(url: str, *payloads: dict[str, Any]) -> None:
    """Deliver ``payloads`` in inline mode to a handler ``record`` that fails (answers 500)."""
    hooks = make_hooks(url)

    @hooks.on("*", name="record")
    def record(event: AlertEvent) -> None:
        raise RuntimeError("down")

    async def run() -> list[int]:
        async with AlertHooksClient(hooks) as client:
            return [(await client.deliver("stripe", p)).status_code for p in payloads]

    assert asyncio.run(run()) == [500] * len(payloads)


def test_replaying_one_event_runs_its_handlers_and_no_other_events(
    runner: CliRunner, store: str, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = stripe_alert_triggered(), stripe_alert_triggered()
    fail_inline(store, a, b)
    monkeypatch.setenv("ALERTHOOKS_TEST_MODE", "inline")
    replayed = runner.invoke(cli, ["replay", a["id"], "--app", APP])
    assert replayed.exit_code == 0, replayed.output
    assert replayed.output.splitlines()[-1] == "1 handler(s) ran again: 1 done, 0 failed again"
    assert handled(out) == Counter({a["id"]: 1})
    listed = {row[2]: row for row in rows(runner.invoke(cli, ["events"]).output)}
    assert (listed[a["id"]][6], listed[b["id"]][6], listed[b["id"]][7]) == ("done", "failed", "1")


def test_replay_of_an_unknown_event_is_an_error(runner: CliRunner, store: str) -> None:
    deliver(store, stripe_alert_triggered())
    result = runner.invoke(cli, ["replay", "evt_nonexistent", "--store", store])
    assert (result.exit_code, result.output) == (
        1,
        "error: unknown event evt_nonexistent: the store has no event with that id\n",
    )


def test_app_option_takes_a_host_app_that_mounts_one_alerthooks(
    runner: CliRunner, store: str, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = stripe_alert_triggered()
    fail_inline(store, a)
    monkeypatch.setenv("ALERTHOOKS_TEST_MODE", "inline")
    host = "tests.inbox_app:host"
    listed = runner.invoke(cli, ["events", "--app", host])
    assert listed.exit_code == 0, listed.output
    assert [row[2] for row in rows(listed.output)] == [a["id"]]
    replayed = runner.invoke(cli, ["replay", a["id"], "--app", host])
    assert replayed.exit_code == 0, replayed.output
    assert handled(out) == Counter({a["id"]: 1})
    assert runner.invoke(cli, ["status", "--app", host]).exit_code == 0
    several = runner.invoke(cli, ["events", "--app", "tests.inbox_app:several"])
    assert (several.exit_code, several.output) == (
        1,
        "error: tests.inbox_app:several is a Starlette that mounts 2 AlertHooks (at /webhooks,"
        " /other); point at one of them (MODULE:ATTR of the AlertHooks)\n",
    )


def test_history_rows_show_each_attempts_own_outcome(runner: CliRunner, store: str) -> None:
    async def seed() -> None:
        s = open_store(store)
        now = datetime.now(timezone.utc)
        await s.begin(Delivery("stripe", "evt_h", None, b"{}", now, ("h",)), owner="w", lease=60)
        await s.finish("stripe", "evt_h", {"h": "RuntimeError: one"}, owner="w")
        for error in ("RuntimeError: two", None):
            (claim,) = await s.claim(owner="w", lease=60, limit=1)
            await s.finish("stripe", "evt_h", {claim.handler: error}, owner="w")
        await s.close()

    asyncio.run(seed())
    history = runner.invoke(cli, ["events", "--history", "--store", store])
    assert [(r[6], r[7], r[9]) for r in rows(history.output)] == [
        ("failed", "1", "RuntimeError: one"),
        ("failed", "2", "RuntimeError: two"),
        ("done", "3", ""),
    ]


def test_events_of_an_inline_app_say_a_failed_handler_waits_for_a_redelivery(
    runner: CliRunner, store: str, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = stripe_alert_triggered()
    fail_inline(store, a)
    monkeypatch.setenv("ALERTHOOKS_TEST_MODE", "inline")
    (row,) = rows(runner.invoke(cli, ["events", "--app", APP]).output)
    assert (row[6], row[8]) == ("failed", "on redelivery or replay")
