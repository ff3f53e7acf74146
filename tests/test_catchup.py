"""Catch-up from the providers' Events APIs, against the stateful fakes on loopback: events
never delivered run their handlers, events already delivered run nothing again, pages are
followed, 429s retried, and a provider without credentials is skipped."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from alerthooks import AlertHooks
from alerthooks.catchup import CatchUpResult, parse_since
from alerthooks.providers import Chargebee, Stripe
from alerthooks.testing import chargebee_auth_headers, stripe_signature_header
from alerthooks.testing.chargebee import chargebee_alert_status_changed
from alerthooks.testing.fakes import FakeChargebee, FakeStripe
from alerthooks.testing.stripe import stripe_alert_recovered, stripe_alert_triggered

from .conftest import CB_PASSWORD, CB_USER, STRIPE_SECRET, encode
from .helpers import logged, make_hooks, recorded, wait_until
from .stores import BACKENDS, store_url

API_VARIABLES = (
    "STRIPE_API_KEY",
    "ALERTHOOKS_STRIPE_API_BASE",
    "CHARGEBEE_API_KEY",
    "CHARGEBEE_SITE",
    "ALERTHOOKS_CHARGEBEE_API_BASE",
)


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeStripe, FakeChargebee]]:
    with FakeStripe(hang=1.0) as stripe_api, FakeChargebee(hang=1.0) as chargebee_api:
        yield stripe_api, chargebee_api


@pytest.fixture
def stripe_api(
    fakes: tuple[FakeStripe, FakeChargebee], monkeypatch: pytest.MonkeyPatch
) -> FakeStripe:
    fakes[0].reset()
    for name, value in fakes[0].env().items():
        monkeypatch.setenv(name, value)
    return fakes[0]


@pytest.fixture
def chargebee_api(
    fakes: tuple[FakeStripe, FakeChargebee], monkeypatch: pytest.MonkeyPatch
) -> FakeChargebee:
    fakes[1].reset()
    for name, value in fakes[1].env().items():
        monkeypatch.setenv(name, value)
    return fakes[1]


@pytest.fixture(autouse=True)
def no_api_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets the variables of the fakes it uses; none leak in from the environment."""
    for name in API_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def ago(**delta: float) -> int:
    return int(time.time() - timedelta(**delta).total_seconds())


def by_name(results: list[CatchUpResult]) -> dict[str, CatchUpResult]:
    return {r.provider: r for r in results}


async def deliver_stripe(hooks: AlertHooks, payload: dict[str, object]) -> int:
    body = encode(payload)
    headers = {"stripe-signature": stripe_signature_header(body, STRIPE_SECRET)}
    return (await hooks.receive(hooks.providers["stripe"], body, headers)).status


async def deliver_chargebee(hooks: AlertHooks, payload: dict[str, object]) -> int:
    headers = {k.lower(): v for k, v in chargebee_auth_headers(CB_USER, CB_PASSWORD).items()}
    return (await hooks.receive(hooks.providers["chargebee"], encode(payload), headers)).status


@pytest.mark.parametrize("backend", BACKENDS)
async def test_events_never_delivered_are_stored_and_run_their_handlers(
    backend: str, tmp_path: Path, stripe_api: FakeStripe, chargebee_api: FakeChargebee
) -> None:
    s_events = [stripe_api.add_event(stripe_alert_triggered(created=ago(hours=h))) for h in (1, 2)]
    c_events = [
        chargebee_api.add_event(chargebee_alert_status_changed(occurred_at=ago(hours=h)))
        for h in (1, 5, 9)
    ]
    async with store_url(backend, tmp_path) as url:
        hooks = make_hooks(url)
        seen = recorded(hooks)
        try:
            results = by_name(await hooks.catch_up())
            assert results["stripe"].line() == "stripe: 2 fetched, 2 new, 0 already received"
            assert results["chargebee"].line() == (
                "chargebee: 3 fetched, 3 new, 0 already received"
            )
            assert sorted(e.id for e in seen) == sorted(e["id"] for e in s_events + c_events)
            stored = await hooks.store.get("chargebee", c_events[0]["id"])
            assert stored is not None and [o.status for o in stored.outcomes] == ["done"]
        finally:
            await hooks.shutdown()


async def test_events_already_delivered_run_nothing_again(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee
) -> None:
    delivered = stripe_api.add_event(stripe_alert_triggered(created=ago(hours=1)))
    missed = stripe_api.add_event(stripe_alert_triggered(created=ago(hours=2)))
    c_delivered = chargebee_api.add_event(chargebee_alert_status_changed(occurred_at=ago(hours=3)))
    hooks = make_hooks()
    seen = recorded(hooks)
    assert await deliver_stripe(hooks, delivered) == 200
    assert await deliver_chargebee(hooks, c_delivered) == 200
    assert [e.id for e in seen] == [delivered["id"], c_delivered["id"]]

    results = by_name(await hooks.catch_up())

    assert results["stripe"].line() == "stripe: 2 fetched, 1 new, 1 already received"
    assert results["chargebee"].line() == "chargebee: 1 fetched, 0 new, 1 already received"
    assert [e.id for e in seen] == [delivered["id"], c_delivered["id"], missed["id"]]


async def test_catching_up_twice_is_harmless(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee
) -> None:
    for hours in (1, 2, 3):
        stripe_api.add_event(stripe_alert_triggered(created=ago(hours=hours)))
        chargebee_api.add_event(chargebee_alert_status_changed(occurred_at=ago(hours=hours)))
    hooks = make_hooks()
    seen = recorded(hooks)
    first = by_name(await hooks.catch_up())
    second = by_name(await hooks.catch_up())
    assert (first["stripe"].new, first["chargebee"].new) == (3, 3)
    assert second["stripe"].line() == "stripe: 3 fetched, 0 new, 3 already received"
    assert second["chargebee"].line() == "chargebee: 3 fetched, 0 new, 3 already received"
    assert len(seen) == 6


async def test_every_page_is_read(stripe_api: FakeStripe, chargebee_api: FakeChargebee) -> None:
    start = ago(hours=60)
    for n in range(230):
        stripe_api.add_event(stripe_alert_triggered(created=start + n))
        chargebee_api.add_event(chargebee_alert_status_changed(occurred_at=start + n))
    hooks = make_hooks()
    seen = recorded(hooks)
    results = by_name(await hooks.catch_up())
    assert (results["stripe"].fetched, results["stripe"].new) == (230, 230)
    assert (results["chargebee"].fetched, results["chargebee"].new) == (230, 230)
    assert len({e.id for e in seen}) == 460
    # Three pages of billing.alert.triggered, one (empty) of billing.alert.recovered.
    assert stripe_api.calls["GET /v1/events"] == 3 + 1
    assert chargebee_api.calls["GET /api/v2/events"] == 3


async def test_429s_are_retried_with_the_managers_policy(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee
) -> None:
    start = ago(hours=10)
    for n in range(150):
        stripe_api.add_event(stripe_alert_triggered(created=start + n))
        chargebee_api.add_event(chargebee_alert_status_changed(occurred_at=start + n))
    stripe_api.inject("429", path="/v1/events", times=2)
    chargebee_api.inject("429", path="/api/v2/events", times=1)
    chargebee_api.inject("reset", path="/api/v2/events", times=1)
    hooks = make_hooks()
    results = by_name(await hooks.catch_up())
    assert results["stripe"].line() == "stripe: 150 fetched, 150 new, 0 already received"
    assert results["chargebee"].line() == "chargebee: 150 fetched, 150 new, 0 already received"
    assert stripe_api.calls["GET /v1/events"] == 2 + 2 + 1  # + recovered's one page
    assert chargebee_api.calls["GET /api/v2/events"] == 2 + 2


async def test_only_alert_events_since_the_moment_are_read(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee
) -> None:
    recent = stripe_api.add_event(stripe_alert_triggered(created=ago(hours=1)))
    stripe_api.add_event(stripe_alert_triggered(created=ago(hours=5)))
    stripe_api.add_event(
        {**stripe_alert_triggered(created=ago(hours=1)), "type": "customer.created"}
    )
    c_recent = chargebee_api.add_event(chargebee_alert_status_changed(occurred_at=ago(hours=1)))
    chargebee_api.add_event(chargebee_alert_status_changed(occurred_at=ago(hours=5)))
    hooks = make_hooks()
    seen = recorded(hooks)
    results = by_name(await hooks.catch_up(since=timedelta(hours=3)))
    assert (results["stripe"].fetched, results["chargebee"].fetched) == (1, 1)
    assert [e.id for e in seen] == [recent["id"], c_recent["id"]]


async def test_recovered_events_are_caught_up_too_and_clear_the_alert(
    stripe_api: FakeStripe,
) -> None:
    triggered = stripe_api.add_event(
        stripe_alert_triggered(alert_type="credit_balance_threshold", created=ago(hours=2))
    )
    recovered = stripe_api.add_event(stripe_alert_recovered(created=ago(hours=1)))
    hooks = make_hooks()
    seen = recorded(hooks)
    results = by_name(await hooks.catch_up())
    assert results["stripe"].line() == "stripe: 2 fetched, 2 new, 0 already received"
    assert sorted((e.type, e.id) for e in seen) == [
        ("alert.cleared", recovered["id"]),
        ("alert.triggered", triggered["id"]),
    ]
    (state,) = await hooks.alert_states(provider="stripe")
    assert (state.state, state.event_id) == ("within_limit", recovered["id"])


async def test_a_moment_at_an_events_second_includes_it(chargebee_api: FakeChargebee) -> None:
    moment = ago(hours=2)
    event = chargebee_api.add_event(chargebee_alert_status_changed(occurred_at=moment))
    hooks = make_hooks()
    since = datetime.fromtimestamp(moment, timezone.utc)
    results = by_name(await hooks.catch_up(since=since, providers=["chargebee"]))
    assert results["chargebee"].fetched == 1
    assert await hooks.store.get("chargebee", event["id"]) is not None


async def test_stripe_is_read_back_30_days_at_most(stripe_api: FakeStripe) -> None:
    stripe_api.add_event(stripe_alert_triggered(created=ago(days=29)))
    hooks = make_hooks()
    result = by_name(await hooks.catch_up(since=timedelta(days=40), providers=["stripe"]))["stripe"]
    assert result.clamped is not None
    assert abs(result.clamped - (datetime.now(timezone.utc) - timedelta(days=30))) < timedelta(
        minutes=1
    )
    assert result.fetched == 1
    assert "stripe keeps events no longer" in result.line()


async def test_a_provider_without_api_credentials_is_skipped(stripe_api: FakeStripe) -> None:
    stripe_api.add_event(stripe_alert_triggered(created=ago(hours=1)))
    hooks = make_hooks()
    results = by_name(await hooks.catch_up())
    assert results["stripe"].line() == "stripe: 1 fetched, 1 new, 0 already received"
    assert results["chargebee"].line() == (
        "chargebee: skipped: no API credentials (CHARGEBEE_API_KEY and CHARGEBEE_SITE: not set)"
    )
    assert results["orb"].line() == "orb: skipped: no events API to read"
    assert all(r.ok for r in results.values())


async def test_an_api_refusing_the_key_is_an_error_and_the_others_are_still_read(
    stripe_api: FakeStripe, chargebee_api: FakeChargebee, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_wrong")
    chargebee_api.add_event(chargebee_alert_status_changed(occurred_at=ago(hours=1)))
    hooks = make_hooks()
    results = by_name(await hooks.catch_up())
    assert not results["stripe"].ok
    assert (
        results["stripe"].line().startswith("stripe: 0 fetched, 0 new, 0 already received; error:")
    )
    assert "HTTP 401" in results["stripe"].line()
    assert results["chargebee"].new == 1


async def test_events_from_the_api_need_no_webhook_credentials(stripe_api: FakeStripe) -> None:
    event = stripe_api.add_event(stripe_alert_triggered(created=ago(hours=1)))
    hooks = AlertHooks(providers=[Stripe(), Chargebee()], store="memory://")
    seen = recorded(hooks)
    assert not hooks.providers["stripe"].configured
    results = by_name(await hooks.catch_up(providers=["stripe"]))
    assert results["stripe"].new == 1
    assert [e.id for e in seen] == [event["id"]]


async def test_an_unknown_provider_name_is_refused() -> None:
    hooks = make_hooks()
    with pytest.raises(ValueError, match="no provider named 'paddle'"):
        await hooks.catch_up(providers=["paddle"])


async def test_queued_mode_queues_what_it_catches_up(stripe_api: FakeStripe) -> None:
    event = stripe_api.add_event(stripe_alert_triggered(created=ago(hours=1)))
    hooks = make_hooks(mode="queued", worker=False)
    seen = recorded(hooks)
    results = by_name(await hooks.catch_up(providers=["stripe"]))
    assert results["stripe"].new == 1
    assert seen == []
    await hooks.drain()
    assert [e.id for e in seen] == [event["id"]]


# -- the worker's periodic catch-up --------------------------------------------------------


async def test_the_worker_catches_up_when_it_starts(tmp_path: Path, stripe_api: FakeStripe) -> None:
    event = stripe_api.add_event(stripe_alert_triggered(created=ago(hours=1)))
    hooks = make_hooks(f"sqlite:///{tmp_path}/inbox.db", mode="queued", catch_up_every=3600)
    seen = recorded(hooks)
    await hooks.startup()
    try:
        await wait_until(lambda: [e.id for e in seen] == [event["id"]], what="the caught-up event")
    finally:
        await hooks.shutdown()


async def test_a_replica_leaves_the_catch_up_to_the_one_holding_the_lease(
    tmp_path: Path, stripe_api: FakeStripe, caplog: pytest.LogCaptureFixture
) -> None:
    stripe_api.add_event(stripe_alert_triggered(created=ago(hours=1)))
    url = f"sqlite:///{tmp_path}/inbox.db"
    other = make_hooks(url)
    await other.store.open()
    assert await other.store.try_lease("catch-up", owner="another-replica", seconds=60)
    await other.store.close()
    hooks = make_hooks(url, mode="queued", catch_up_every=3600)
    caplog.set_level("DEBUG", logger="alerthooks.worker")
    await hooks.startup()
    try:
        await wait_until(lambda: logged(caplog, "another replica holds the lease"))
        assert stripe_api.calls["GET /v1/events"] == 0
    finally:
        await hooks.shutdown()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_the_store_lease_is_held_by_one_owner_until_it_expires(
    backend: str, tmp_path: Path
) -> None:
    async with store_url(backend, tmp_path) as url:
        a, b = make_hooks(url).store, make_hooks(url).store
        try:
            # Held long enough that b's first call (which opens its pool) cannot outlast it.
            assert await a.try_lease("catch-up", owner="a", seconds=30)
            assert not await b.try_lease("catch-up", owner="b", seconds=30)
            assert await a.try_lease("catch-up", owner="a", seconds=0.3)  # renewed, for less
            assert await b.try_lease("other-job", owner="b", seconds=30)
            deadline = time.monotonic() + 5
            while not await b.try_lease("catch-up", owner="b", seconds=30):
                assert time.monotonic() < deadline, "the lease never expired"
            assert not await a.try_lease("catch-up", owner="a", seconds=30)
        finally:
            await a.close()
            await b.close()


def test_catch_up_every_needs_queued_mode() -> None:
    with pytest.raises(ValueError, match="catch_up_every needs mode='queued'"):
        make_hooks(catch_up_every=60)
    with pytest.raises(ValueError, match="positive number of seconds"):
        make_hooks(mode="queued", catch_up_every=0)


# -- --since ---------------------------------------------------------------------------------

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("72h", NOW - timedelta(hours=72)),
        ("7d", NOW - timedelta(days=7)),
        ("2026-11-28T09:30:00Z", datetime(2026, 11, 28, 9, 30, tzinfo=timezone.utc)),
        ("2026-11-28T09:30:00+01:00", datetime(2026, 11, 28, 8, 30, tzinfo=timezone.utc)),
        ("2026-11-28 09:30", datetime(2026, 11, 28, 9, 30, tzinfo=timezone.utc)),
        ("2026-11-28", datetime(2026, 11, 28, tzinfo=timezone.utc)),
    ],
)
def test_since_takes_a_duration_or_an_iso_time(text: str, expected: datetime) -> None:
    assert parse_since(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["", "72", "3w", "h72", "-5h", "yesterday", "2026-13-01"])
def test_since_refuses_anything_else_in_one_line(text: str) -> None:
    with pytest.raises(ValueError, match=r"^--since: .* is neither a duration \(30m, 72h, 7d\)"):
        parse_since(text, now=NOW)


def test_since_refuses_the_future() -> None:
    with pytest.raises(ValueError, match="in the future"):
        parse_since("2027-01-01T00:00:00Z", now=NOW)


async def test_later_periodic_runs_read_back_from_the_last_complete_one(
    stripe_api: FakeStripe,
) -> None:
    hooks = make_hooks(mode="queued", worker=False, catch_up_every=3600)
    assert hooks._catch_up_schedule is not None
    seen = recorded(hooks)
    old = stripe_api.add_event(stripe_alert_triggered(created=ago(hours=10)))
    await hooks._catch_up_schedule()
    await hooks.drain()
    assert [e.id for e in seen] == [old["id"]]
    # Older than a period before the last run: not read again (the first run covered it).
    before = stripe_api.add_event(stripe_alert_triggered(created=ago(hours=5)))
    recent = stripe_api.add_event(stripe_alert_triggered(created=ago(minutes=30)))
    await hooks._catch_up_schedule()
    await hooks.drain()
    assert [e.id for e in seen] == [old["id"], recent["id"]]
    assert await hooks.store.get("stripe", before["id"]) is None
    await hooks.shutdown()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_caught_up_events_set_the_alert_state(
    backend: str, tmp_path: Path, chargebee_api: FakeChargebee
) -> None:
    triggered = chargebee_alert_status_changed(
        "in_alarm", alert_id="alert_1", subscription_id="sub_1", occurred_at=ago(hours=3)
    )
    cleared = chargebee_alert_status_changed(
        "within_limit", alert_id="alert_1", subscription_id="sub_1", occurred_at=ago(hours=2)
    )
    chargebee_api.add_event(triggered)
    async with store_url(backend, tmp_path) as url:
        hooks = make_hooks(url)
        try:
            await hooks.catch_up(providers=["chargebee"])
            [found] = await hooks.alert_states(provider="chargebee")
            assert (found.state, found.event_id) == ("in_alarm", triggered["id"])
            chargebee_api.add_event(cleared)
            await hooks.catch_up(providers=["chargebee"])
            [found] = await hooks.alert_states(provider="chargebee")
            assert (found.state, found.event_id) == ("within_limit", cleared["id"])
        finally:
            await hooks.shutdown()
