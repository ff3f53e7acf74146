"""The ownership marker: a managed alert's name ends in `` [alerthooks:<key>]``.

The manager writes it (:func:`mark`) where a provider keeps no metadata, and reads it back
(:func:`split_marker`); the receiver strips it from ``AlertEvent.alert_name`` and recovers
``alert_key`` from it.
"""

from __future__ import annotations

import re

#: What a key may look like: a letter or digit, then letters, digits, ``_``, ``.``, ``-``.
KEY_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"

#: A name carrying the marker: group ``name`` is the name without it, group ``key`` the key.
MARKER_RE = re.compile(rf"^(?P<name>.*) \[alerthooks:(?P<key>{KEY_PATTERN})\]$", re.S)


def marker(key: str) -> str:
    """The suffix that marks a name as managed under ``key`` (leading space included)."""
    return f" [alerthooks:{key}]"


def mark(name: str, key: str) -> str:
    """``name`` with the marker for ``key`` appended."""
    return name + marker(key)


def split_marker(name: str) -> tuple[str, str | None]:
    """``(name without marker, key)``; the key is ``None`` when ``name`` carries no marker."""
    if not name.endswith("]"):  # the common case, without the regex
        return name, None
    match = MARKER_RE.match(name)
    if match is None:
        return name, None
    return match["name"], match["key"]
