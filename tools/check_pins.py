"""Check that requirements/*.txt pin a version of every dependency pyproject.toml asks for, and
that each pinned version satisfies what it asks (``make check`` runs it; ``make lock`` fixes it).

Run offline: it reads the two files and compares them, without resolving anything."""

from __future__ import annotations

import sys
from pathlib import Path

import tomllib
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
# Each pinned set and the extras it holds besides the package's own dependencies.
SETS = {"run": (), "dev": ("dev",), "docs": ("docs",), "bench": ("dev", "bench")}
# The interpreter the pins are compiled for (make lock: --python-version 3.11).
ENVIRONMENT = {"python_version": "3.11", "python_full_version": "3.11.0", "extra": ""}


def pins(path: Path) -> dict[str, str]:
    """``name: version`` of every ``name==version`` line."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[canonicalize_name(name.split("[")[0])] = version.split(";")[0].strip()
    return found


def problems() -> list[str]:
    """One line per dependency that a set does not pin, or pins at a version it refuses."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wrong = []
    for name, extras in SETS.items():
        path = ROOT / "requirements" / f"{name}.txt"
        if not path.exists():
            return [f"{path.relative_to(ROOT)} is missing"]
        pinned = pins(path)
        wanted = list(project["dependencies"])
        for extra in extras:
            wanted += project["optional-dependencies"][extra]
        for text in wanted:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is not None and not Marker(str(marker)).evaluate(ENVIRONMENT):
                continue
            version = pinned.get(canonicalize_name(requirement.name))
            if version is None:
                wrong.append(f"requirements/{name}.txt: {requirement.name} is not pinned")
            elif not requirement.specifier.contains(version, prereleases=True):
                wrong.append(
                    f"requirements/{name}.txt: {requirement.name}=={version} is not {text!r}"
                )
    return wrong


if __name__ == "__main__":
    found = problems()
    for line in found:
        print(line, file=sys.stderr)
    sys.exit(1 if found else 0)
