"""``alerthooks import``: the ``alerts.toml`` entries that declare the alerts a provider already
has and nobody manages, so that ``plan --adopt`` can take them over.

Each entry gets a key derived from the alert's identifying fields (readable, stable for the same
alert, unique among the keys written and those of the config it is merged into) and a comment
naming the alert's id. Alerts already managed are left out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alerthooks.manager.api import Adoption, Declaration, ProviderAPI, RemoteAlert, ScopedListing
from alerthooks.manager.config import Config, ConfigError, Credentials, parse_config
from alerthooks.manager.registry import PROVIDERS, provider_spec
from alerthooks.manager.spec import KEY_MAX

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class ImportedAlert:
    """An unmanaged alert as an entry (``declaration`` None: not one this manager declares,
    ``reason`` says why)."""

    provider: str
    alert_id: str
    key: str | None
    declaration: Declaration | None
    reason: str = ""


@dataclass
class Imported:
    """Every unmanaged alert read, per provider in order, and the accounts read."""

    alerts: list[ImportedAlert] = field(default_factory=list)
    accounts: dict[str, str] = field(default_factory=dict)

    @property
    def declared(self) -> list[ImportedAlert]:
        """The alerts written as entries."""
        return [a for a in self.alerts if a.declaration is not None]


def _slug(value: Any) -> str:
    if isinstance(value, tuple) and len(value) == 2:  # Chargebee's (mode, value) threshold
        mode, number = value
        return _slug(number) + ("pct" if mode == "percentage" else "")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, list):
        return "-".join(_slug(v) for v in value)
    return _UNSAFE.sub("-", str(value)).strip("-.")


def alert_key(api: ProviderAPI, remote: RemoteAlert, taken: set[str]) -> str:
    """A key for ``remote`` from its identifying fields (``mtr_api_calls-cus_acme-1000``),
    made unique against ``taken`` with ``-2``, ``-3``, …, at most :data:`KEY_MAX` characters."""
    fields = api.identity_fields if isinstance(api, Adoption) else ()
    parts = [_slug(remote.spec.get(name)) for name in fields if remote.spec.get(name)]
    base = "-".join(p for p in parts if p) or f"{api.name}-{_slug(remote.id)}"
    if not base[0].isalnum():
        base = f"{api.name}-{base}"
    base = base[: KEY_MAX - 4].rstrip("-.")
    key, n = base, 1
    while key in taken:
        n += 1
        key = f"{base}-{n}"
    taken.add(key)
    return key


async def read_unmanaged(
    apis: Mapping[str, ProviderAPI], taken: Iterable[str], config: Config | None = None
) -> Imported:
    """List every provider's alerts (providers one after another, in the given order) and
    declare the unmanaged ones, with keys unique against ``taken``. Each entry is checked as
    ``config``'s table would hold it; what would not pass is said in a note above it."""
    used = set(taken)
    result = Imported()
    for name, api in apis.items():
        result.accounts[name] = api.account
        if isinstance(api, ScopedListing):
            await api.read_whole_account()
        remote = sorted(await api.list_alerts(), key=lambda r: r.id)
        for alert in remote:
            if alert.key is not None:
                continue
            declaration = api.declare(alert) if isinstance(api, Adoption) else None
            if declaration is None:
                reason = "not a kind of alert alerthooks manages"
                result.alerts.append(ImportedAlert(name, alert.id, None, None, reason))
                continue
            key = alert_key(api, alert, used)
            problems = _problems(name, key, declaration, config)
            if problems:
                notes = (*declaration.notes, *(f"fix before merging: {p}" for p in problems))
                declaration = Declaration(declaration.fields, notes)
            result.alerts.append(ImportedAlert(name, alert.id, key, declaration))
    return result


def _problems(
    provider: str, key: str, declaration: Declaration, config: Config | None
) -> list[str]:
    """What ``alerts.toml`` validation would say of the entry, in the provider's table as
    ``config`` has it (its other fields kept)."""
    table = config.tables.get(provider) if config is not None else None
    raw: dict[str, Any] = (
        table.model_dump(exclude={"alerts"}, exclude_none=True) if table is not None else {}
    )
    raw["alerts"] = [{"key": key, **declaration.fields}]
    try:
        parse_config({provider: raw}, source="import")
    except ConfigError as exc:
        return [
            re.sub(r"^import: [^ ]+ \(key '[^']*'\): ", "", line) for line in str(exc).splitlines()
        ]
    return []


def _toml(value: Any) -> str:
    """A TOML value: strings as JSON strings (TOML's basic strings take the same escapes),
    numbers, booleans, arrays and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def render_entries(imported: Imported) -> str:
    """The ``[[<provider>.alerts]]`` entries, each with a comment naming the alert id; alerts
    that cannot be declared are named in comments."""
    lines = [
        "# Written by `alerthooks import`: alerts that exist at the providers and are not",
        "# managed by alerthooks. Merge into alerts.toml, then `alerthooks plan --adopt`.",
    ]
    for alert in imported.alerts:
        lines.append("")
        if alert.declaration is None:
            lines.append(f"# {alert.provider} alert {alert.alert_id}: left out ({alert.reason})")
            continue
        lines.append(f"[[{alert.provider}.alerts]]")
        lines.append(f"# {alert.provider} alert {alert.alert_id}")
        lines.extend(f"# {note}" for note in alert.declaration.notes)
        lines.append(f"key = {_toml(alert.key)}")
        lines.extend(f"{name} = {_toml(v)}" for name, v in alert.declaration.fields.items())
    return "\n".join(lines) + "\n"


def config_keys(config: Config) -> set[str]:
    """Every key the config's entries use, across providers."""
    return {alert.key for table in config.tables.values() for alert in table.alerts}


def make_import_apis(
    config: Config, credentials: Credentials, names: Sequence[str] = ()
) -> dict[str, ProviderAPI]:
    """An API client for each provider in ``names`` (each must have credentials), or, when
    none is named, for each registered provider whose credentials are set. A provider the
    config has no table for is read through an empty table.

    Raises :class:`ConfigError` for a named provider without usable credentials, or when no
    provider has any; ``KeyError`` for an unknown name.
    """
    chosen = [provider_spec(name).name for name in names] or list(PROVIDERS)
    apis: dict[str, ProviderAPI] = {}
    problems: list[str] = []
    for name in chosen:
        spec = provider_spec(name)
        table = config.tables.get(name) or spec.parse_table({})
        missing = spec.check_credentials(credentials.of(name), table)
        if missing:
            if names:
                problems.extend(missing)
            continue
        apis[name] = spec.make_api(credentials.of(name), table, concurrency=8, retry=None)
    if problems:
        raise ConfigError("\n".join(problems))
    if not apis:
        raise ConfigError(
            "no provider's API credentials are set (STRIPE_API_KEY, CHARGEBEE_API_KEY and "
            "CHARGEBEE_SITE, ORB_API_KEY, METRONOME_API_KEY)"
        )
    return apis
