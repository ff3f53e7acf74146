"""The sample registry: realistic payloads per provider, by name.

Each provider's test-kit module (``alerthooks.testing.<provider>``) registers its samples with
:func:`register_sample`: a name, the provider, the stored JSON file and a builder that turns it
into a fresh delivery. :func:`sample_names`, :func:`load_sample`, :func:`build_sample`,
:func:`default_sample`, ``alerthooks send --sample`` and the pytest plugin's fixtures read the
registry, so a new provider adds its samples by itself.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, partial
from importlib import resources
from pathlib import Path
from typing import Any

from alerthooks.testing._kits import import_builtin_kits

Builder = Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class Sample:
    """One registered sample: ``path`` holds it as stored, ``build()`` makes a fresh delivery
    of it (a new event id, the current time)."""

    name: str
    provider: str
    path: Path
    build: Builder
    doc: str = ""
    """One line saying what the sample is (the pytest fixture's docstring)."""
    default: bool = False
    """Whether this is the provider's default sample (``alerthooks send`` without
    ``--sample``)."""
    fixture: str | None = None
    """The name of the pytest fixture that gives a fresh build of it, if any."""


_REGISTRY: dict[str, Sample] = {}


def fixtures_dir() -> Path:
    """The directory holding the built-in samples (``fixtures/`` in a checkout, packaged as
    ``alerthooks/testing/fixtures`` in the wheel)."""
    packaged = resources.files("alerthooks.testing") / "fixtures"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[3] / "fixtures"


def register_sample(
    name: str,
    *,
    provider: str,
    file: str | Path,
    build: Builder,
    doc: str = "",
    default: bool = False,
    fixture: str | None = None,
) -> Sample:
    """Add a sample to the registry and return it.

    ``file`` is the JSON file (a relative path is under :func:`fixtures_dir`); ``build`` returns
    a fresh delivery of it. ``default=True`` makes it what ``default_sample(provider)`` names;
    ``fixture`` names a pytest fixture that gives ``build()`` (only for samples registered
    before the plugin loads, such as the built-in ones). A name is registered once.
    """
    if name in _REGISTRY:
        raise ValueError(f"sample {name!r} is already registered")
    path = Path(file)
    if not path.is_absolute():
        path = fixtures_dir() / path
    sample = Sample(name, provider, path, build, doc, default, fixture)
    _REGISTRY[name] = sample
    return sample


def register_samples(
    provider: str,
    label: str,
    samples: Mapping[str, str],
    build: Callable[..., dict[str, Any]],
    *,
    default: str,
    fixture: str,
) -> None:
    """Register a family of samples that one builder makes from the sample's name: each
    ``name: what`` of ``samples`` is ``<name>.json``, built by ``build(name)`` and documented
    "A fresh ``label`` ``what`` event."; ``default`` is the provider's default sample, given by
    the pytest fixture ``fixture``."""
    for name, what in samples.items():
        register_sample(
            name,
            provider=provider,
            file=f"{name}.json",
            build=partial(build, name),
            doc=f"A fresh {label} {what} event.",
            default=name == default,
            fixture=fixture if name == default else None,
        )


def samples(provider: str | None = None) -> list[Sample]:
    """The registered samples, sorted by name; with ``provider``, only that provider's."""
    import_builtin_kits()
    return sorted(
        (s for s in _REGISTRY.values() if provider is None or s.provider == provider),
        key=lambda s: s.name,
    )


def sample_names(provider: str | None = None) -> list[str]:
    """Names accepted by :func:`load_sample`, :func:`build_sample` and ``alerthooks send
    --sample``; with ``provider`` (``"stripe"``, ``"chargebee"``, …), only that provider's."""
    return [s.name for s in samples(provider)]


def default_sample(provider: str) -> str:
    """The name of ``provider``'s default sample (its alert), which ``alerthooks send`` sends
    without ``--sample``. Raises ``ValueError`` for a provider without samples."""
    own = samples(provider)
    if not own:
        known = ", ".join(sorted({s.provider for s in samples()}))
        raise ValueError(f"no samples for provider {provider!r}; providers with samples: {known}")
    return next((s for s in own if s.default), own[0]).name


def _sample(name: str) -> Sample:
    import_builtin_kits()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown sample {name!r}; choose one of {', '.join(sample_names())}"
        ) from None


@cache
def _text(path: Path) -> str:
    return path.read_text()


def load_sample(name: str) -> dict[str, Any]:
    """A deep copy of the named sample payload, exactly as stored."""
    result: dict[str, Any] = json.loads(_text(_sample(name).path))
    return result


def build_sample(name: str) -> dict[str, Any]:
    """The named sample as a fresh delivery: a new event id and the current time.

    ``stripe_alert_triggered_expanded_meter`` is ``stripe_alert_triggered`` with an expanded
    meter, the ``chargebee_alert_*`` samples are ``chargebee_alert_status_changed``, and so on.
    """
    return _sample(name).build()


def merge_overrides(target: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Merge ``overrides`` into ``target`` recursively (dicts merge, anything else replaces)
    and return ``target``: how builders apply their ``**overrides``."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_overrides(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


__all__ = [
    "Sample",
    "build_sample",
    "default_sample",
    "fixtures_dir",
    "load_sample",
    "merge_overrides",
    "register_sample",
    "sample_names",
    "samples",
]
