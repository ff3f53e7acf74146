"""``alerts.toml``: one table per registered provider, validated before any API call, and the
credentials read from the environment."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from alerthooks.manager.api import Mode
from alerthooks.manager.registry import PROVIDERS, provider_spec
from alerthooks.manager.spec import (
    KEY_MAX,
    ConfigError,
    ProviderCredentials,
    ProviderTable,
    duplicate_key_lines,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "KEY_MAX",
    "Config",
    "ConfigError",
    "Credentials",
    "Mode",
    "load_config",
    "parse_config",
]


class Config:
    """The whole ``alerts.toml``: one validated table per provider it names, reached as
    ``config.tables[name]`` or ``config.<name>`` (``None`` when the file has no such table;
    a provider whose table is absent is left untouched)."""

    def __init__(self, **tables: ProviderTable | None) -> None:
        for name in tables:
            provider_spec(name)  # unknown names are an error, as a mistyped keyword is
        self._tables = {
            name: table
            for name in PROVIDERS
            if (table := tables.get(name)) is not None  # in the registry's order
        }

    @property
    def tables(self) -> Mapping[str, ProviderTable]:
        """The tables present, by provider name, in the registry's order."""
        return self._tables

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("_") and name in PROVIDERS:
            return self._tables.get(name)
        raise AttributeError(name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self._tables == other._tables

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={table!r}" for name, table in self._tables.items())
        return f"Config({inner})"


def parse_config(data: Mapping[str, Any], *, source: str = "alerts.toml") -> Config:
    """Validate already-parsed TOML data; raises :class:`ConfigError` listing every problem."""
    lines: list[str] = []
    tables: dict[str, ProviderTable] = {}
    for name, spec in PROVIDERS.items():
        if name not in data:
            continue
        raw = data[name]
        raw_alerts = raw.get("alerts") if isinstance(raw, Mapping) else None
        if isinstance(raw_alerts, list):
            keys = [a.get("key") if isinstance(a, Mapping) else None for a in raw_alerts]
            lines.extend(f"{source}: {line}" for line in duplicate_key_lines(name, keys))
        try:
            tables[name] = spec.parse_table(raw)
        except ValidationError as exc:
            for error in exc.errors():
                if error["type"] == "duplicate_key":  # the lines above again, as a rule
                    named = error["msg"].replace("alerts[", f"{name}.alerts[")
                    lines.extend(f"{source}: {line}" for line in named.split("; "))
                else:
                    lines.append(_describe(error, name, data, source))
    lines.extend(f"{source}: {name}: unknown table" for name in data if name not in PROVIDERS)
    if lines:
        raise ConfigError("\n".join(dict.fromkeys(lines)))
    return Config(**tables)


def __getattr__(name: str) -> Any:
    """Names that lived here before each provider had a module of its own (``StripeAlert``,
    ``stripe_key_mode``, ``ChargebeeConfig``, ...): found in the registered providers' modules."""
    for spec in PROVIDERS.values():
        module = sys.modules[type(spec).__module__]
        if not name.startswith("_") and hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate an ``alerts.toml``; raises :class:`ConfigError` with one line per
    problem."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {_toml_problem(exc, text)}") from None
    return parse_config(data, source=source)


_AT = re.compile(r"\(at line (?P<line>\d+), column (?P<column>\d+)\)$")
_ARRAY_HEADER = re.compile(r"^\s*\[\[\s*(?P<name>[^\]]+?)\s*\]\]")
_TABLE_HEADER = re.compile(r"^\s*\[\s*(?P<name>[^\]]+?)\s*\]")


def _toml_problem(exc: tomllib.TOMLDecodeError, text: str) -> str:
    """tomllib's message, with the key named when it is a duplicate (tomllib says only
    ``Cannot overwrite a value (at line 13, column 18)``): the key is read back from that line
    of the file, and the table from the headers above it."""
    message = str(exc)
    at = _AT.search(message)
    if not message.startswith("Cannot overwrite a value") or at is None:
        return message
    lines = text.splitlines()
    number = int(at["line"])
    if not 1 <= number <= len(lines) or "=" not in lines[number - 1]:
        return message
    key = lines[number - 1].split("=", 1)[0].strip()
    table = _table_at(lines[: number - 1])
    where = f" in {table}" if table else ""
    return f"key {key!r} set twice{where} {at.group(0)}"


def _table_at(lines: list[str]) -> str | None:
    """The table the line after ``lines`` belongs to, as ``stripe`` or ``stripe.alerts[1]``."""
    current: str | None = None
    arrays: dict[str, int] = {}
    for line in lines:
        if match := _ARRAY_HEADER.match(line):
            name = match["name"]
            arrays[name] = arrays.get(name, -1) + 1
            current = f"{name}[{arrays[name]}]"
        elif match := _TABLE_HEADER.match(line):
            current = match["name"]
    return current


def _describe(error: Any, table: str, data: Mapping[str, Any], source: str) -> str:
    loc: tuple[Any, ...] = (table, *error["loc"])
    message: str = error["msg"].removeprefix("Value error, ")
    if error["type"] == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        message = (
            "must be an http:// or https:// URL"
            if "http" in pattern
            else (
                "must start with a letter or digit and contain only letters, digits, '_', '.', '-'"
            )
        )
    where = table
    field_path = ".".join(str(p) for p in loc[1:])
    if len(loc) >= 3 and loc[1] == "alerts" and isinstance(loc[2], int):
        entry = _lookup(data, loc[:3])
        key = entry.get("key") if isinstance(entry, Mapping) else None
        where = f"{table}.alerts[{loc[2]}]" + (f" (key {key!r})" if key else "")
        field_path = ".".join(str(p) for p in loc[3:])
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    if not field_path and ":" in message and error["type"] == "value_error":
        # Our model validators name the field themselves ("title: ...").
        return f"{source}: {where}: {message}"
    return f"{source}: {where}: {field_path or '(table)'}: {message}"


def _lookup(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


class Credentials:
    """API credentials per registered provider, normally from :meth:`from_env`.

    ``Credentials(stripe_api_key=..., chargebee_site=...)`` sets one provider's field by
    ``<provider>_<field>`` (see each provider's credentials class, e.g.
    :class:`~alerthooks.manager.stripe.StripeCredentials`), and reads it back the same way
    (``credentials.stripe_api_key``); :meth:`of` gives one provider's credentials whole.
    ``repr`` shows which are set, never their values.
    """

    def __init__(
        self,
        providers: Mapping[str, ProviderCredentials] | None = None,
        **fields: str | None,
    ) -> None:
        given = dict(providers or {})
        grouped: dict[str, dict[str, str | None]] = {}
        for flat, value in fields.items():
            name, field = self._split(flat)
            grouped.setdefault(name, {})[field] = value
        self._by_provider: dict[str, ProviderCredentials] = {}
        for name, spec in PROVIDERS.items():
            if name in given:
                self._by_provider[name] = given.pop(name)
            else:
                self._by_provider[name] = spec.credentials(**grouped.get(name, {}))
        if given:
            raise TypeError(f"unknown provider(s): {', '.join(given)}")

    @staticmethod
    def _split(flat: str) -> tuple[str, str]:
        for name, spec in PROVIDERS.items():
            field = flat.removeprefix(f"{name}_")
            if field != flat and field in spec.credentials.__dataclass_fields__:
                return name, field
        raise TypeError(f"Credentials: unknown field {flat!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        """Every registered provider's variables (``STRIPE_API_KEY``, ``CHARGEBEE_API_KEY``,
        ``CHARGEBEE_SITE``, ``ALERTHOOKS_STRIPE_API_BASE``, ``ALERTHOOKS_CHARGEBEE_API_BASE``,
        ``CHARGEBEE_WEBHOOK_USERNAME`` / ``_PASSWORD``, ...) from ``environ`` (default
        ``os.environ``); empty values count as unset."""
        env = os.environ if environ is None else environ
        return cls({name: spec.credentials_from_env(env) for name, spec in PROVIDERS.items()})

    def of(self, provider: str) -> ProviderCredentials:
        """One provider's credentials."""
        return self._by_provider[provider]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_provider)

    def __getattr__(self, flat: str) -> Any:
        if flat.startswith("_"):
            raise AttributeError(flat)
        try:
            name, field = self._split(flat)
        except TypeError:
            raise AttributeError(flat) from None
        return getattr(self._by_provider[name], field)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Credentials) and self._by_provider == other._by_provider

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={creds!r}" for name, creds in self._by_provider.items())
        return f"Credentials({inner})"
