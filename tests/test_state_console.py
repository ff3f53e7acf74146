"""The console's alert board: who is in alarm now, above the recent events (in-process)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pytest

from alerthooks import AlertHooks, AlertState
from alerthooks.console import app as console_module
from alerthooks.store import StoreError
from alerthooks.store.memory import MemoryStore
from alerthooks.testing import (
    AlertHooksClient,
    chargebee_alert_status_changed,
    stripe_alert_triggered,
)

from .helpers import make_hooks
from .test_console import AUTH, basic, client_for

T0 = 1_790_000_000  # 2026-09-21 14:13:20 UTC


def cb(alarm: str, event_id: str, occurred: int, sub: str, name: str = "API calls") -> Any:
    return chargebee_alert_status_changed(
        alarm,  # type: ignore[arg-type]
        id=event_id,
        alert_id="al_1",
        name=name,
        subscription_id=sub,
        occurred_at=T0 + occurred,
    )


async def deliver(hooks: AlertHooks, *events: tuple[str, dict[str, Any]]) -> None:
    async with AlertHooksClient(hooks, lifespan=False) as client:
        for provider, payload in events:
            assert (await client.deliver(provider, payload)).status_code == 200


async def board_of(hooks: AlertHooks) -> str:
    async with client_for(hooks.console(auth=AUTH), headers=basic(*AUTH)) as console:
        response = await console.get("/")
    assert response.status_code == 200
    found = re.search(r'<section class="board" id="alert-board">.*?</section>', response.text, re.S)
    assert found is not None, "the events page has no alert board"
    return found.group(0)


def rows(board: str) -> list[list[str]]:
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td.*?</td>", row, re.S)]
        for row in re.findall(r'<tr class="alarm".*?</tr>', board, re.S)
    ]


async def test_the_board_lists_the_subjects_in_alarm_now() -> None:
    hooks = make_hooks()
    await deliver(
        hooks,
        ("chargebee", cb("in_alarm", "ev_1", 0, "sub_1")),
        ("chargebee", cb("within_limit", "ev_2", 60, "sub_1")),  # sub_1 is back within limit
        ("chargebee", cb("within_limit", "ev_3", 0, "sub_2")),
        ("chargebee", cb("in_alarm", "ev_4", 30, "sub_2")),  # sub_2 is in alarm since 30 s
        ("stripe", stripe_alert_triggered(alert_id="alrt_9", customer="cus_9", created=T0 + 1)),
    )
    board = await board_of(hooks)
    assert "<h2>In alarm now</h2>" in board
    assert rows(board) == [
        ["chargebee", "API calls al_1", "usage", "sub_2", "2026-09-21 14:13:50 UTC"],
        ["stripe", rows(board)[1][1], "usage", "cus_9", "2026-09-21 14:13:21 UTC"],
    ]
    assert rows(board)[1][1].endswith("alrt_9")
    assert "sub_1" not in board


async def test_the_board_shows_each_alerts_kind() -> None:
    hooks = make_hooks()
    await deliver(
        hooks,
        ("stripe", stripe_alert_triggered(alert_type="credit_balance_threshold")),
        ("stripe", stripe_alert_triggered(alert_type="spend_threshold")),
    )
    board = await board_of(hooks)
    assert sorted(row[2] for row in rows(board)) == ["credit_balance", "spend"]


async def test_the_events_list_shows_each_alerts_kind() -> None:
    hooks = make_hooks()
    spend = stripe_alert_triggered(alert_type="spend_threshold")
    await deliver(hooks, ("stripe", spend), ("chargebee", cb("in_alarm", "ev_k", 0, "sub_1")))
    async with client_for(hooks.console(auth=AUTH), headers=basic(*AUTH)) as console:
        page = (await console.get("/")).text
    kinds = {
        event_id: kind
        for event_id, kind in re.findall(
            r'<tr class="event"[^>]*data-event-id="([^"]+)">.*?<td class="kind">([^<]*)</td>',
            page,
            re.S,
        )
    }
    assert kinds == {spend["id"]: "spend", "ev_k": "usage"}


async def test_an_empty_board_says_nothing_is_in_alarm() -> None:
    hooks = make_hooks()
    await deliver(hooks, ("chargebee", cb("within_limit", "ev_1", 0, "sub_1")))
    board = await board_of(hooks)
    assert rows(board) == []
    assert "Nothing is in alarm." in board


async def test_the_board_escapes_what_the_provider_sent() -> None:
    hooks = make_hooks()
    await deliver(
        hooks,
        ("chargebee", cb("in_alarm", "ev_x", 0, 'sub_"><script>x()</script>', "<b>Spend</b> & co")),
    )
    board = await board_of(hooks)
    assert "<script>" not in board and "<b>Spend" not in board
    assert "&lt;script&gt;x()&lt;/script&gt;" in board
    assert "&lt;b&gt;Spend&lt;/b&gt; &amp; co" in board


async def test_the_board_shows_the_first_subjects_and_counts_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(console_module, "BOARD_LIMIT", 2)
    hooks = make_hooks()
    await deliver(
        hooks, *(("chargebee", cb("in_alarm", f"ev_{i}", i, f"sub_{i}")) for i in range(5))
    )
    board = await board_of(hooks)
    assert [row[3] for row in rows(board)] == ["sub_0", "sub_1"]
    assert "and 3 more" in board and "alerthooks status --in-alarm" in board


class _NoStates(MemoryStore):
    async def states(
        self, *, in_alarm: bool | None = None, provider: str | None = None
    ) -> Sequence[AlertState]:
        raise StoreError("states table unreachable")


async def test_a_store_that_cannot_give_the_states_is_a_503() -> None:
    hooks = make_hooks(_NoStates())
    async with client_for(hooks.console(auth=AUTH), headers=basic(*AUTH)) as console:
        response = await console.get("/")
    assert response.status_code == 503
    assert "the store did not answer" in response.text
