"""Imports run one way: the receiver's providers never import the manager, and the provider
API clients in ``alerthooks.apis`` import neither side (both sides import them). Read from the
source, so a lazy import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import alerthooks

PACKAGE = Path(alerthooks.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in the file (``TYPE_CHECKING`` blocks and
    function bodies included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _modules(subpackage: str) -> list[Path]:
    return sorted((PACKAGE / subpackage).rglob("*.py"))


def _violations(subpackage: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for path in _modules(subpackage)
        for name in sorted(_imports(path))
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]


@pytest.mark.parametrize(
    ("subpackage", "forbidden"),
    [
        ("providers", ("alerthooks.manager",)),
        ("apis", ("alerthooks.manager", "alerthooks.providers")),
    ],
)
def test_imports_run_one_way(subpackage: str, forbidden: tuple[str, ...]) -> None:
    assert _modules(subpackage), f"alerthooks.{subpackage} has no modules"
    assert _violations(subpackage, forbidden) == []


def test_the_check_sees_a_lazy_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from alerthooks.manager.stripe import StripeAPI\n")
    assert "alerthooks.manager.stripe" in _imports(module)
