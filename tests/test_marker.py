"""The ownership marker: what the manager appends to an alert's name is what the receiver
strips off it and reads the key from."""

from __future__ import annotations

import pytest

from alerthooks.manager.config import stripe_marker
from alerthooks.manager.stripe import split_title
from alerthooks.marker import MARKER_RE, mark, split_marker


@pytest.mark.parametrize("key", ["api-100", "a", "A.b_c-9", "x" * 64])
@pytest.mark.parametrize("name", ["API calls reached 100", "", "spaces  inside ", "[x] y"])
def test_a_marked_name_splits_back_into_name_and_key(name: str, key: str) -> None:
    marked = mark(name, key)
    assert marked == name + stripe_marker(key)
    assert split_marker(marked) == (name, key)
    assert split_marker(marked) == split_title(marked)


@pytest.mark.parametrize(
    "name",
    [
        "API calls reached 100",
        "API calls [alerthooks:api-100] reached",  # not at the end
        "API calls[alerthooks:api-100]",  # no space before it
        "API calls [alerthooks:]",  # no key
        "API calls [alerthooks:-x]",  # a key starts with a letter or digit
        "API calls [alerthooks:a b]",
        "API calls [alerthooks:api-100] ",
        "API calls [other:api-100]",
        "]",
        "",
    ],
)
def test_a_name_without_a_marker_is_kept_whole(name: str) -> None:
    assert split_marker(name) == (name, None)
    assert split_marker(name) == split_title(name)


def test_only_the_last_marker_is_the_key() -> None:
    name = "a [alerthooks:one] [alerthooks:two]"
    assert split_marker(name) == ("a [alerthooks:one]", "two")
    assert split_marker(name) == split_title(name)


def test_a_name_may_span_lines() -> None:
    assert split_marker("line one\nline two [alerthooks:k]") == ("line one\nline two", "k")


def test_marker_re_names_its_groups() -> None:
    match = MARKER_RE.match("Calls [alerthooks:calls-80]")
    assert match is not None
    assert (match["name"], match["key"]) == ("Calls", "calls-80")
