"""Finding the built-in providers' test-kit modules, so their samples and fakes register."""

from __future__ import annotations

import importlib

_imported = False


def import_builtin_kits() -> None:
    """Import ``alerthooks.testing.<name>`` for every built-in provider that has one (once).

    Each such module registers its samples and its fake API when imported; a built-in provider
    without a test-kit module is skipped.
    """
    global _imported
    if _imported:
        return
    _imported = True
    from alerthooks.providers import BUILTIN

    for cls in BUILTIN:
        module = f"alerthooks.testing.{cls.name}"
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
