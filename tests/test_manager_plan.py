"""The planner's pure functions, without HTTP: diff_alerts, diff_endpoint, the ownership marker
and the rendered plan. A toy provider API stands in for Stripe and Chargebee."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pytest
from rich.console import Console

from alerthooks.manager import (
    AlertEntry,
    Change,
    ChangeKind,
    Plan,
    ProviderPlan,
    RemoteAlert,
    RemoteEndpoint,
    diff_alerts,
    diff_endpoint,
    mark,
    render_plan,
    split_marker,
)
from alerthooks.manager.stripe import split_title
from alerthooks.marker import MARKER_RE


class ToyAlert(AlertEntry):
    label: str
    limit: int


@dataclass
class ToyAPI:
    """Just what the diff functions read from a provider API."""

    name: str = "toy"
    updatable: frozenset[str] = frozenset({"limit"})
    event: str = "alert.fired"
    endpoint_api_version: str | None = "v3"
    endpoint_version_in_place: bool = False

    def key_of(self, alert: ToyAlert) -> str:
        return alert.key

    def desired_spec(self, alert: ToyAlert) -> dict[str, Any]:
        return {"label": alert.label, "limit": alert.limit}


def alert(key: str, *, label: str = "L", limit: int = 10, enabled: bool = True) -> ToyAlert:
    return ToyAlert(key=key, label=label, limit=limit, enabled=enabled)


def remote(
    id: str, key: str | None, *, label: str = "L", limit: int = 10, enabled: bool = True
) -> RemoteAlert:
    return RemoteAlert("toy", id, key, enabled, {"label": label, "limit": limit})


def endpoint(
    id: str,
    events: tuple[str, ...] = ("alert.fired",),
    *,
    url: str = "https://h.example/toy",
    enabled: bool = True,
    api_version: str | None = "v3",
) -> RemoteEndpoint:
    return RemoteEndpoint("toy", id, url, events, enabled, api_version)


def summary(changes: list[Change]) -> list[tuple[str, str, str]]:
    return [(c.kind.value, c.key, c.detail) for c in changes]


def diff(desired: list[ToyAlert], found: list[RemoteAlert], **kw: Any) -> list[Change]:
    return diff_alerts(ToyAPI(), desired, found, **kw)  # type: ignore[arg-type]


# -- diff_alerts -----------------------------------------------------------------------------


def test_missing_alerts_are_created_and_a_disabled_one_says_so() -> None:
    changes = diff([alert("a"), alert("b", enabled=False)], [])
    assert summary(changes) == [
        ("create", "a", "label='L', limit=10"),
        ("create", "b", "label='L', limit=10; created disabled"),
    ]
    assert all(c.is_write and c.remote is None for c in changes)


def test_matching_alerts_need_nothing() -> None:
    assert diff([alert("a")], [remote("r1", "a")]) == []


@pytest.mark.parametrize(("enabled", "kind"), [(True, "activate"), (False, "deactivate")])
def test_only_enabled_changed_is_an_activation(enabled: bool, kind: str) -> None:
    (change,) = diff([alert("a", enabled=enabled)], [remote("r1", "a", enabled=not enabled)])
    assert (change.kind.value, change.detail) == (kind, "r1")


def test_updatable_fields_change_in_place_and_others_replace() -> None:
    (update,) = diff([alert("a", limit=20)], [remote("r1", "a")])
    assert (update.kind, update.detail) == (ChangeKind.UPDATE, "r1: limit: 10 → 20")
    (replace,) = diff([alert("a", label="M", enabled=False)], [remote("r1", "a")])
    assert replace.kind is ChangeKind.REPLACE
    assert replace.detail == "r1: label: 'L' → 'M'; enabled: True → False; created disabled"
    assert replace.remote is not None and replace.remote.id == "r1"


def test_unmanaged_alerts_are_never_in_the_plan() -> None:
    found = [remote("r1", None), remote("r2", None, label="other")]
    assert summary(diff([], found, prune=True)) == []
    assert [c.kind for c in diff([alert("a")], found)] == [ChangeKind.CREATE]


def test_keys_that_left_the_config_are_kept_unless_pruned() -> None:
    found = [remote("r1", "gone")]
    (kept,) = diff([], found)
    assert (kept.kind, kept.detail, kept.is_write) == (
        ChangeKind.KEEP,
        "r1: not in config; --prune removes it",
        False,
    )
    (deleted,) = diff([], found, prune=True)
    assert (deleted.kind, deleted.detail, deleted.is_write) == (ChangeKind.DELETE, "r1", True)


def test_of_several_alerts_with_one_key_the_closest_is_kept() -> None:
    found = [
        remote("r1", "a", limit=99),
        remote("r2", "a", enabled=False),
        remote("r3", "a"),  # exact
    ]
    changes = diff([alert("a")], found)
    assert summary(changes) == [
        ("delete", "a", "duplicate r2"),
        ("delete", "a", "duplicate r1"),
    ]


# -- diff_endpoint ---------------------------------------------------------------------------

URL = "https://h.example/toy"


def endpoint_diff(found: list[RemoteEndpoint], **api: Any) -> list[Change]:
    return diff_endpoint(ToyAPI(**api), URL, found)  # type: ignore[arg-type]


def test_a_missing_endpoint_is_created_on_the_pinned_version() -> None:
    (change,) = endpoint_diff([endpoint("e1", url="https://elsewhere.example")])
    assert summary([change]) == [("create endpoint", URL, "events: alert.fired; api_version v3")]
    (unpinned,) = endpoint_diff([], endpoint_api_version=None)
    assert unpinned.detail == "events: alert.fired"


def test_an_endpoint_that_sends_alerts_on_the_pinned_version_needs_nothing() -> None:
    assert endpoint_diff([endpoint("e1")]) == []
    assert endpoint_diff([endpoint("e1", ("*",))]) == []


def test_a_disabled_endpoint_or_one_without_the_event_is_corrected() -> None:
    (change,) = endpoint_diff([endpoint("e1", ("other",), enabled=False)])
    assert summary([change]) == [
        ("update endpoint", URL, "e1: disabled → enabled, add event alert.fired")
    ]
    assert change.is_write and change.endpoint is not None and change.endpoint.id == "e1"


def test_another_version_that_cannot_change_in_place_is_a_warning_not_a_write() -> None:
    (warning,) = endpoint_diff([endpoint("e1", api_version="v1")])
    assert warning.kind is ChangeKind.ENDPOINT_VERSION and not warning.is_write
    assert warning.detail == (
        "e1 is on api_version v1, alerthooks reads v3; toy cannot change it in place, so it is"
        " left alone (to move: create an endpoint on v3, give the receiver its secret, then"
        " remove e1)"
    )
    (default,) = endpoint_diff([endpoint("e1", api_version=None)])
    assert default.detail.startswith("e1 is on api_version (the account default), alerthooks")
    # Corrected for what can be corrected, and still warned about.
    fix, warn = endpoint_diff([endpoint("e1", ("other",), api_version="v1")])
    assert (fix.kind, fix.detail) == (ChangeKind.UPDATE_ENDPOINT, "e1: add event alert.fired")
    assert warn.kind is ChangeKind.ENDPOINT_VERSION
    # Unpinned providers never warn.
    assert endpoint_diff([endpoint("e1", api_version="v1")], endpoint_api_version=None) == []


def test_another_version_that_can_change_in_place_is_an_update() -> None:
    (change,) = endpoint_diff([endpoint("e1", api_version="v1")], endpoint_version_in_place=True)
    assert summary([change]) == [("update endpoint", URL, "e1: api_version v1 → v3")]
    (both,) = endpoint_diff(
        [endpoint("e1", enabled=False, api_version=None)], endpoint_version_in_place=True
    )
    assert both.detail == "e1: disabled → enabled, api_version account default → v3"


def test_a_second_endpoint_sending_alerts_is_shown_and_its_version_too() -> None:
    changes = endpoint_diff([endpoint("e1"), endpoint("e2", ("*",), api_version="v1")])
    assert [c.kind for c in changes] == [ChangeKind.EXTRA_ENDPOINT, ChangeKind.ENDPOINT_VERSION]
    assert changes[0].detail.startswith("e2 also sends alert.fired here")
    assert changes[1].endpoint is not None and changes[1].endpoint.id == "e2"
    assert not any(c.is_write for c in changes)


# -- the ownership marker --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("API calls [alerthooks:api-100]", ("API calls", "api-100")),
        ("Two\nlines [alerthooks:k_1.x]", ("Two\nlines", "k_1.x")),
        ("Nested [alerthooks:a] [alerthooks:b]", ("Nested [alerthooks:a]", "b")),
        ("API calls", ("API calls", None)),
        ("API calls [alerthooks:api-100] ", ("API calls [alerthooks:api-100] ", None)),
        ("API calls[alerthooks:api-100]", ("API calls[alerthooks:api-100]", None)),
        ("API calls [alerthooks:-bad]", ("API calls [alerthooks:-bad]", None)),
        ("API calls [alerthooks:has space]", ("API calls [alerthooks:has space]", None)),
        ("API calls [alerthooks:]", ("API calls [alerthooks:]", None)),
        (" [alerthooks:k]", ("", "k")),
    ],
)
def test_split_marker(name: str, expected: tuple[str, str | None]) -> None:
    assert split_marker(name) == expected
    assert split_title(name) == expected  # Stripe titles use the same marker


def test_mark_then_split_gives_name_and_key_back() -> None:
    marked = mark("Calls at 80%", "calls-80")
    assert marked == "Calls at 80% [alerthooks:calls-80]"
    assert split_marker(marked) == ("Calls at 80%", "calls-80")
    match = MARKER_RE.match(marked)
    assert match is not None and match["key"] == "calls-80"


# -- render_plan -----------------------------------------------------------------------------


def test_rendered_plan_shows_mode_counts_and_each_line() -> None:
    changes = diff([alert("a", enabled=False)], [remote("r9", None)]) + endpoint_diff(
        [endpoint("e1", api_version="v1")]
    )
    plan = Plan((ProviderPlan("toy", "test", "test mode (x)", tuple(changes), unmanaged=1),))
    out = io.StringIO()
    render_plan(plan, Console(file=out, width=300, no_color=True, highlight=False))
    text = out.getvalue()
    assert text.splitlines()[0] == "toy: test mode (x): 1 change, 1 unmanaged alert left alone"
    assert "created disabled" in text
    assert "endpoint version" in text and "e1 is on api_version v1" in text
    assert "No changes." not in text


def test_in_place_versions_fix_the_endpoint_in_use_and_leave_the_extra_one() -> None:
    changes = endpoint_diff(
        [endpoint("e1", api_version="v1"), endpoint("e2", api_version="v1")],
        endpoint_version_in_place=True,
    )
    assert [(c.kind, c.endpoint.id if c.endpoint else None) for c in changes] == [
        (ChangeKind.UPDATE_ENDPOINT, "e1"),
        (ChangeKind.EXTRA_ENDPOINT, "e2"),
    ]
    assert changes[0].detail == "e1: api_version v1 → v3"
