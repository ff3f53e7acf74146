"""Alert state through the receiver, on every store: the event that occurred last sets it,
whatever order deliveries arrive in; it survives a restart and two replicas racing."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from alerthooks import AlertHooks, AlertState
from alerthooks.testing import (
    AlertHooksClient,
    chargebee_alert_status_changed,
    stripe_alert_triggered,
    stripe_customer_created,
)

from .helpers import make_hooks
from .stores import BACKENDS, store_url

T0 = 1_790_000_000  # occurred_at of the first event in these tests (Unix seconds)


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(T0 + seconds, timezone.utc)


def cb(alarm: str, event_id: str, occurred: int, **fields: Any) -> dict[str, Any]:
    """A Chargebee ``alert_status_changed`` event for subscription ``sub_1`` of alert ``al_1``,
    occurred ``occurred`` seconds after T0."""
    fields.setdefault("alert_id", "al_1")
    fields.setdefault("subscription_id", "sub_1")
    return chargebee_alert_status_changed(
        alarm,  # type: ignore[arg-type]
        id=event_id,
        occurred_at=T0 + occurred,
        **fields,
    )


def subjects(states: list[AlertState]) -> dict[tuple[str, str, str | None], tuple[str, str]]:
    """Each state as (provider, alert, subject) -> (state, event id)."""
    return {
        (s.provider, s.alert_id, s.customer_id or s.subscription_id): (s.state, s.event_id)
        for s in states
    }


@pytest.fixture(params=BACKENDS)
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with store_url(request.param, tmp_path) as found:
        yield found


@pytest.fixture
async def client(url: str) -> AsyncIterator[AlertHooksClient]:
    async with AlertHooksClient(make_hooks(url)) as c:
        yield c


async def deliver_all(client: AlertHooksClient, *events: tuple[str, dict[str, Any]]) -> None:
    for provider, payload in events:
        response = await client.deliver(provider, payload)
        assert response.status_code == 200, response.text


async def test_a_trigger_then_a_clear_leave_the_subject_within_limit(
    client: AlertHooksClient,
) -> None:
    await deliver_all(client, ("chargebee", cb("in_alarm", "ev_a", 0)))
    (state,) = await client.hooks.alert_states()
    assert state == AlertState(
        provider="chargebee",
        alert_id="al_1",
        alert_name=state.alert_name,
        customer_id=None,
        subscription_id="sub_1",
        state="in_alarm",
        since=at(0),
        event_id="ev_a",
    )
    assert state.alert_name  # the sample's name, without the manager's marker
    await deliver_all(client, ("chargebee", cb("within_limit", "ev_b", 60)))
    (state,) = await client.hooks.alert_states()
    assert (state.state, state.since, state.event_id) == ("within_limit", at(60), "ev_b")


async def test_a_clear_arriving_before_an_earlier_trigger_keeps_the_subject_within_limit(
    client: AlertHooksClient,
) -> None:
    await deliver_all(
        client,
        ("chargebee", cb("within_limit", "ev_clear", 60)),
        ("chargebee", cb("in_alarm", "ev_trigger", 0)),
    )
    assert subjects(await client.hooks.alert_states()) == {
        ("chargebee", "al_1", "sub_1"): ("within_limit", "ev_clear")
    }


async def test_a_trigger_arriving_before_an_earlier_clear_keeps_the_subject_in_alarm(
    client: AlertHooksClient,
) -> None:
    await deliver_all(
        client,
        ("chargebee", cb("in_alarm", "ev_trigger", 60)),
        ("chargebee", cb("within_limit", "ev_clear", 0)),
    )
    (state,) = await client.hooks.alert_states()
    assert (state.state, state.since, state.event_id) == ("in_alarm", at(60), "ev_trigger")


async def test_duplicates_do_not_change_the_state(client: AlertHooksClient) -> None:
    trigger, clear = cb("in_alarm", "ev_t", 0), cb("within_limit", "ev_c", 60)
    await deliver_all(client, ("chargebee", trigger), ("chargebee", clear))
    before = await client.hooks.alert_states()
    for payload in (trigger, clear, trigger):
        response = await client.deliver("chargebee", payload)
        assert response.json() == {"status": "duplicate"}
    assert await client.hooks.alert_states() == before
    assert subjects(before) == {("chargebee", "al_1", "sub_1"): ("within_limit", "ev_c")}


async def test_events_that_occurred_at_once_resolve_by_event_id_whatever_the_order(
    client: AlertHooksClient,
) -> None:
    # Chargebee's times are whole seconds: a trigger and a clear may share one. The greater
    # event id wins, on every store and in either arrival order.
    await deliver_all(
        client,
        ("chargebee", cb("in_alarm", "ev_2", 0, subscription_id="sub_a")),
        ("chargebee", cb("within_limit", "ev_1", 0, subscription_id="sub_a")),
        ("chargebee", cb("within_limit", "ev_3", 0, subscription_id="sub_b")),
        ("chargebee", cb("in_alarm", "ev_4", 0, subscription_id="sub_b")),
    )
    assert subjects(await client.hooks.alert_states()) == {
        ("chargebee", "al_1", "sub_a"): ("in_alarm", "ev_2"),
        ("chargebee", "al_1", "sub_b"): ("in_alarm", "ev_4"),
    }


async def test_a_stripe_one_time_alert_stays_in_alarm(client: AlertHooksClient) -> None:
    # Stripe sends only billing.alert.triggered: nothing ever clears its subject.
    first = stripe_alert_triggered(alert_id="alrt_1", customer="cus_1", created=T0)
    other = stripe_alert_triggered(alert_id="alrt_1", customer="cus_2", created=T0 + 5)
    await deliver_all(client, ("stripe", first), ("stripe", other))
    assert subjects(await client.hooks.alert_states()) == {
        ("stripe", "alrt_1", "cus_1"): ("in_alarm", first["id"]),
        ("stripe", "alrt_1", "cus_2"): ("in_alarm", other["id"]),
    }
    first_state = (await client.hooks.alert_states(provider="stripe", in_alarm=True))[0]
    assert (first_state.customer_id, first_state.subscription_id) == ("cus_1", None)
    assert first_state.since == at(0)


async def test_states_are_one_per_subject_and_filter_by_state_and_provider(
    client: AlertHooksClient,
) -> None:
    global_alert = cb("in_alarm", "ev_g", 0, alert_id="al_global")
    del global_alert["content"]["alert_status"]["subscription_id"]
    await deliver_all(
        client,
        ("chargebee", cb("in_alarm", "ev_1", 0, subscription_id="sub_1")),
        ("chargebee", cb("within_limit", "ev_2", 0, subscription_id="sub_2")),
        ("chargebee", global_alert),
        ("stripe", stripe_alert_triggered(alert_id="alrt_9", customer="cus_9", created=T0)),
    )
    hooks = client.hooks
    everything = await hooks.alert_states()
    assert [(s.provider, s.alert_id, s.customer_id, s.subscription_id) for s in everything] == [
        ("chargebee", "al_1", None, "sub_1"),
        ("chargebee", "al_1", None, "sub_2"),
        ("chargebee", "al_global", None, None),  # the alert as a whole
        ("stripe", "alrt_9", "cus_9", None),
    ]
    in_alarm = await hooks.alert_states(in_alarm=True)
    assert [s.event_id for s in in_alarm] == ["ev_1", "ev_g", everything[3].event_id]
    assert [s.event_id for s in await hooks.alert_states(in_alarm=False)] == ["ev_2"]
    assert [s.event_id for s in await hooks.alert_states(provider="chargebee", in_alarm=True)] == [
        "ev_1",
        "ev_g",
    ]
    assert await hooks.alert_states(provider="orb") == []


async def test_a_delivery_that_is_not_an_alert_sets_no_state(client: AlertHooksClient) -> None:
    response = await client.deliver("stripe", stripe_customer_created())
    assert response.json() == {"status": "ignored"}
    assert await client.hooks.alert_states() == []


async def test_the_state_is_kept_in_queued_mode_too(url: str) -> None:
    async with AlertHooksClient(make_hooks(url, mode="queued")) as client:
        await deliver_all(
            client,
            ("chargebee", cb("within_limit", "ev_c", 60)),
            ("chargebee", cb("in_alarm", "ev_t", 0)),
        )
        assert subjects(await client.hooks.alert_states()) == {
            ("chargebee", "al_1", "sub_1"): ("within_limit", "ev_c")
        }


async def test_the_state_survives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/inbox.db"
    async with AlertHooksClient(make_hooks(url)) as client:
        await deliver_all(
            client,
            ("chargebee", cb("in_alarm", "ev_t", 60)),
            ("chargebee", cb("within_limit", "ev_c", 0)),
        )
        before = await client.hooks.alert_states()
    again = make_hooks(url)
    try:
        assert await again.alert_states() == before
        assert subjects(before) == {("chargebee", "al_1", "sub_1"): ("in_alarm", "ev_t")}
    finally:
        await again.shutdown()


async def test_two_postgres_replicas_racing_keep_the_event_that_occurred_last(
    tmp_path: Path,
) -> None:
    # Two receivers on one database get the trigger/clear events of eight subscriptions at once,
    # each in a shuffled order: each subscription ends in the state of its latest event.
    async with store_url("postgres", tmp_path) as url:
        replicas = [make_hooks(url), make_hooks(url)]
        events: list[dict[str, Any]] = []
        for sub in range(8):
            for step in range(10):
                alarm = "in_alarm" if (sub + step) % 2 else "within_limit"
                events.append(cb(alarm, f"ev_{sub}_{step}", step, subscription_id=f"sub_{sub}"))
        random.Random(13).shuffle(events)
        async with AlertHooksClient(replicas[0]) as one, AlertHooksClient(replicas[1]) as two:

            async def feed(client: AlertHooksClient, share: list[dict[str, Any]]) -> None:
                for payload in share:
                    assert (await client.deliver("chargebee", payload)).status_code == 200

            await asyncio.gather(
                *(feed(c, events[i::4]) for i, c in enumerate([one, two, one, two]))
            )
            expected = {
                ("chargebee", "al_1", f"sub_{sub}"): (
                    "in_alarm" if (sub + 9) % 2 else "within_limit",
                    f"ev_{sub}_9",
                )
                for sub in range(8)
            }
            assert subjects(await replicas[0].alert_states()) == expected
            assert subjects(await replicas[1].alert_states()) == expected


async def test_the_alert_name_is_the_one_of_the_event_that_set_the_state(
    client: AlertHooksClient,
) -> None:
    await deliver_all(
        client,
        ("chargebee", cb("in_alarm", "ev_new", 60, name="Renamed")),
        ("chargebee", cb("within_limit", "ev_old", 0, name="Original")),
    )
    (state,) = await client.hooks.alert_states()
    assert (state.alert_name, state.event_id) == ("Renamed", "ev_new")


async def test_alert_states_opens_the_store_of_hooks_never_started(url: str) -> None:
    hooks: AlertHooks = make_hooks(url)
    try:
        assert await hooks.alert_states() == []
    finally:
        await hooks.shutdown()


async def test_pruning_the_events_keeps_the_states_they_set(client: AlertHooksClient) -> None:
    await deliver_all(client, ("chargebee", cb("in_alarm", "ev_t", 0)))
    store = client.hooks.store
    assert await store.prune(before=datetime.now(timezone.utc) + timedelta(days=1)) == 1
    assert await store.get("chargebee", "ev_t") is None
    assert subjects(await client.hooks.alert_states()) == {
        ("chargebee", "al_1", "sub_1"): ("in_alarm", "ev_t")
    }
