"""Handler registry: types, filters, names, composition."""

from __future__ import annotations

import pytest

from alerthooks import AlertEvent
from alerthooks.dispatch import Dispatcher
from alerthooks.providers.chargebee import normalize as cb_normalize
from alerthooks.providers.stripe import normalize as stripe_normalize
from alerthooks.testing import chargebee_alert_status_changed, stripe_alert_triggered


def stripe_event(**kw: object) -> AlertEvent:
    return stripe_normalize(stripe_alert_triggered(**kw))  # type: ignore[arg-type]


async def noop(event: AlertEvent) -> None:
    return None


def test_unknown_event_type_is_rejected_at_registration() -> None:
    with pytest.raises(ValueError, match=r"alert\.fired"):
        Dispatcher().add(noop, "alert.fired")


def test_unknown_filter_is_rejected_at_registration() -> None:
    with pytest.raises(TypeError, match="customer"):
        Dispatcher().add(noop, "alert.triggered", customer="cus_1")


def test_filter_values_must_be_strings() -> None:
    with pytest.raises(TypeError):
        Dispatcher().add(noop, "alert.triggered", provider=[1])  # type: ignore[list-item]


def test_two_functions_with_one_name_are_refused() -> None:
    dispatcher = Dispatcher()
    dispatcher.add(lambda e: None, "alert.triggered")
    with pytest.raises(ValueError, match="name="):
        dispatcher.add(lambda e: None, "alert.triggered")
    dispatcher.add(lambda e: None, "alert.triggered", name="second")


def test_a_function_registered_twice_runs_once_per_event() -> None:
    dispatcher = Dispatcher()
    dispatcher.add(noop, "alert.triggered", provider="stripe")
    dispatcher.add(noop, "*")
    assert len(dispatcher.match(stripe_event())) == 1


def test_star_matches_both_types_after_specific_handlers() -> None:
    dispatcher = Dispatcher()

    async def any_alert(event: AlertEvent) -> None: ...

    async def cleared(event: AlertEvent) -> None: ...

    dispatcher.add(any_alert, "*")
    dispatcher.add(cleared, "alert.cleared")
    cleared_event = cb_normalize(chargebee_alert_status_changed("within_limit"))
    assert [h.func for h in dispatcher.match(cleared_event)] == [cleared, any_alert]
    assert [h.func for h in dispatcher.match(stripe_event())] == [any_alert]


def test_a_function_registered_twice_without_filters_runs_once_per_event() -> None:
    dispatcher = Dispatcher()
    dispatcher.add(noop, "alert.triggered")
    dispatcher.add(noop, "*")
    assert [h.event_type for h in dispatcher.match(stripe_event())] == ["alert.triggered"]


def test_a_handler_added_after_events_were_matched_gets_the_next_event() -> None:
    dispatcher = Dispatcher()

    async def first(event: AlertEvent) -> None: ...

    async def later(event: AlertEvent) -> None: ...

    async def filtered(event: AlertEvent) -> None: ...

    dispatcher.add(first, "alert.triggered")
    assert [h.func for h in dispatcher.match(stripe_event())] == [first]
    dispatcher.add(later, "*")
    assert [h.func for h in dispatcher.match(stripe_event())] == [first, later]
    dispatcher.add(filtered, "alert.triggered", customer_id="cus_other")
    assert [h.func for h in dispatcher.match(stripe_event())] == [first, later]
    assert [h.func for h in dispatcher.match(stripe_event(customer="cus_other"))] == [
        first,
        filtered,
        later,
    ]


def test_dispatchers_compose() -> None:
    billing, ops = Dispatcher(), Dispatcher()

    async def a(event: AlertEvent) -> None: ...

    async def b(event: AlertEvent) -> None: ...

    billing.add(a, "alert.triggered")
    ops.add(b, "alert.triggered", provider="stripe")
    combined = Dispatcher(billing, ops)
    assert [h.func for h in combined.match(stripe_event())] == [a, b]
    assert combined.get(f"{__name__}.test_dispatchers_compose.<locals>.b") is not None


def test_event_is_frozen() -> None:
    event = stripe_event()
    with pytest.raises(Exception, match="frozen"):
        event.alert_id = "other"  # type: ignore[misc]


def test_a_provider_filter_must_name_a_known_provider() -> None:
    dispatcher = Dispatcher(providers=["stripe", "chargebee"])
    with pytest.raises(ValueError, match=r"provider='strip'.*known: chargebee, stripe"):
        dispatcher.add(noop, "alert.triggered", provider="strip")
    dispatcher.add(noop, "alert.triggered", provider="stripe")
    Dispatcher().add(noop, "alert.triggered", provider="anything")  # no providers given: any


async def test_run_reports_each_handler_and_a_failure_stops_no_other() -> None:
    dispatcher = Dispatcher()
    ran: list[str] = []

    @dispatcher.on("alert.triggered", name="ok")
    async def ok(event: AlertEvent) -> None:
        ran.append("ok")

    @dispatcher.on("alert.triggered", name="broken")
    def broken(event: AlertEvent) -> None:
        raise RuntimeError("down")

    event = stripe_event()
    results = await dispatcher.run(event, dispatcher.match(event))
    assert results == {"ok": None, "broken": "RuntimeError: down"}
    assert ran == ["ok"]
    named = await dispatcher.run_named(event, ["ok", "gone"])
    assert named == {"gone": "handler is not registered in this process", "ok": None}
    assert ran == ["ok", "ok"]
