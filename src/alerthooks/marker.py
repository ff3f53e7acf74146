"""The ownership marker the manager appends to the alerts it creates: ``"API calls reached 100
[alerthooks:api-100]"`` is the alert titled ``API calls reached 100`` under the key ``api-100``."""

from __future__ import annotations

import re

MARKER_RE = re.compile(r"^(?P<name>.*) \[alerthooks:(?P<key>[A-Za-z0-9][A-Za-z0-9_.-]*)\]$", re.S)
"""A marked name: ``name`` is the part before the marker, ``key`` the key inside it."""


def mark(name: str, key: str) -> str:
    """``name`` with the marker of ``key`` appended."""
    return f"{name} [alerthooks:{key}]"


def split_marker(name: str) -> tuple[str, str | None]:
    """``(name without marker, key)``; the key is None when ``name`` carries no marker."""
    if not name.endswith("]"):
        return name, None
    match = MARKER_RE.match(name)
    if match is None:
        return name, None
    return match["name"], match["key"]
