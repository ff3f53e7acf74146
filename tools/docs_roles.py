"""A griffe extension for the API reference (mkdocs.yml): the docstrings cross-reference in
Sphinx's roles (``:class:`~alerthooks.AlertHooks```, ``:meth:`on```), which Markdown would show
as written; each becomes the name in code, as Sphinx would display it."""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|meth|func|mod|attr|data|exc|obj):`(~?)([^`]+)`")


def _displayed(match: re.Match[str]) -> str:
    shortened, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if shortened else target}`"


class SphinxRoles(griffe.Extension):
    """Rewrites Sphinx roles in every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_displayed, obj.docstring.value)
