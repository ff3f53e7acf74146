"""What a provider module registers with the manager: its ``alerts.toml`` table, its
credentials, and how to build its API client. The config, planner and executor use only this.

A provider module defines an alert entry (an :class:`AlertEntry`), its table (a
:class:`ProviderTable`), its credentials (a :class:`ProviderCredentials`) and a
:class:`ProviderSpec` tying them to its API client; :mod:`alerthooks.manager.registry` lists
the specs.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator
from pydantic_core import PydanticCustomError

from alerthooks.apis.http import env_value as env_value
from alerthooks.manager.api import Mode, ProviderAPI, RetryPolicy
from alerthooks.marker import KEY_PATTERN

#: Longest key; keys end up inside Stripe titles and Chargebee ``meta``.
KEY_MAX = 64
_URL_PATTERN = r"^https?://\S+$"


class ConfigError(Exception):
    """The config file or the environment is unusable; each line of ``str(error)`` is one
    problem, naming the alert's key and the field."""


class ConfigModel(BaseModel):
    """A part of ``alerts.toml``: unknown fields refused, immutable, strings stripped."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class AlertEntry(ConfigModel):
    """What every ``[[<provider>.alerts]]`` entry has: its ``key`` (stable identity, unique
    in its table) and whether it is ``enabled``."""

    key: str = Field(min_length=1, max_length=KEY_MAX, pattern=f"^{KEY_PATTERN}$")
    enabled: StrictBool = True


def duplicate_key_lines(table: str | None, keys: Sequence[Any]) -> list[str]:
    """One line per key used by more than one entry of ``[[table.alerts]]``, naming the
    entries: ``stripe.alerts[0] and stripe.alerts[3] share key "x"`` (``alerts[0] and ...``
    when ``table`` is None)."""
    prefix = f"{table}." if table else ""
    where: dict[str, list[int]] = defaultdict(list)
    for index, key in enumerate(keys):
        if isinstance(key, str) and key.strip():
            where[key.strip()].append(index)
    lines = []
    for key, indexes in where.items():
        if len(indexes) > 1:
            entries = [f"{prefix}alerts[{i}]" for i in indexes]
            listed = ", ".join(entries[:-1]) + f" and {entries[-1]}"
            lines.append(f'{listed} share key "{key}"')
    return lines


class ProviderTable(ConfigModel):
    """What every provider's table has: an optional ``webhook_url`` (the manager keeps one
    endpoint sending alerts there) and its ``alerts``."""

    webhook_url: str | None = Field(default=None, pattern=_URL_PATTERN)
    alerts: Sequence[AlertEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_keys(self) -> ProviderTable:
        lines = duplicate_key_lines(None, [a.key for a in self.alerts])
        if lines:
            # parse_config reports these from the file, with the table's name.
            raise PydanticCustomError("duplicate_key", "; ".join(lines))
        return self


@dataclasses.dataclass(frozen=True, repr=False)
class ProviderCredentials:
    """A provider's API credentials; subclasses are frozen dataclasses whose ``repr`` shows
    which fields are set, never their values."""

    #: Fields whose value ``repr`` may show (addresses, site names).
    shown: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProviderCredentials:
        """Read the provider's variables from ``env``; empty values count as unset."""
        raise NotImplementedError

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in self.shown or value is None:
                parts.append(f"{f.name}={value!r}")
            else:
                parts.append(f"{f.name}=set")
        return f"{type(self).__name__}({', '.join(parts)})"


@dataclasses.dataclass(frozen=True, repr=False)
class DeclaredModeCredentials(ProviderCredentials):
    """An API key that does not say whether it reaches live or test data, the API's address
    (``api_base``: a self-hosted instance, or a fake on ``http://127.0.0.1:PORT``) and the mode
    declared beside them, each read from its variable: :attr:`api_key_env`,
    :attr:`api_base_env` and :attr:`mode_env`, which a subclass names."""

    api_key_env: ClassVar[str]
    api_base_env: ClassVar[str]
    mode_env: ClassVar[str]
    shown: ClassVar[frozenset[str]] = frozenset({"api_base", "mode"})

    api_key: str | None = None
    api_base: str | None = None
    mode: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DeclaredModeCredentials:
        """Read the three variables; empty values count as unset."""
        return cls(
            api_key=env_value(env, cls.api_key_env),
            api_base=env_value(env, cls.api_base_env),
            mode=env_value(env, cls.mode_env),
        )


def declared_mode(value: str | None) -> Mode:
    """The mode an env variable declares, for credentials that do not say: ``test`` when it
    says so, else ``live``."""
    return "test" if value == "test" else "live"


def declared_mode_problems(env: str, value: str | None) -> list[str]:
    """One line naming ``env`` when it is set to other than ``live`` or ``test``."""
    if value in (None, "live", "test"):
        return []
    return [f"{env}: must be live or test, got {value!r}"]


TableT = TypeVar("TableT", bound=ProviderTable)
CredentialsT = TypeVar("CredentialsT", bound=ProviderCredentials)
DeclaredT = TypeVar("DeclaredT", bound=DeclaredModeCredentials)


class ProviderSpec(ABC, Generic[TableT, CredentialsT]):
    """One provider as the manager knows it, registered in
    :mod:`alerthooks.manager.registry`.

    ``name`` is its table in ``alerts.toml`` and the ``provider`` of its changes; ``table`` the
    model of that table; ``credentials`` the type of its credentials; ``endpoint_secret_env``
    the environment variable where the receiver reads the signing secret of an endpoint the
    manager creates (``None`` when the provider reveals none).
    """

    name: ClassVar[str]
    table: type[TableT]
    credentials: type[CredentialsT]
    endpoint_secret_env: ClassVar[str | None] = None

    def parse_table(self, raw: Any) -> TableT:
        """Validate the raw TOML table; raises pydantic's ``ValidationError``."""
        return self.table.model_validate(raw)

    def credentials_from_env(self, env: Mapping[str, str]) -> CredentialsT:
        """The provider's credentials from ``env``."""
        return cast(CredentialsT, self.credentials.from_env(env))

    @abstractmethod
    def check_credentials(self, credentials: CredentialsT, table: TableT) -> list[str]:
        """Problems (one line each, naming the variable) that stop ``table`` from being
        planned with ``credentials``; empty when :meth:`make_api` will work."""

    @abstractmethod
    def mode(self, credentials: CredentialsT) -> Mode:
        """Whether ``credentials`` reach live or test data (raises :class:`ConfigError` when
        that cannot be told)."""

    @abstractmethod
    def make_api(
        self,
        credentials: CredentialsT,
        table: TableT,
        *,
        concurrency: int,
        retry: RetryPolicy | None,
    ) -> ProviderAPI:
        """The API client for ``table``, once :meth:`check_credentials` found no problem."""


class DeclaredModeSpec(ProviderSpec[TableT, DeclaredT]):
    """A provider whose credentials are :class:`DeclaredModeCredentials` (Orb, Metronome, Lago,
    OpenMeter): the key must be set, and the mode is what the mode variable declares, ``live``
    unless it says ``test``. A subclass writes only :meth:`make_api`."""

    def check_credentials(self, credentials: DeclaredT, table: TableT) -> list[str]:
        """The API key is set, and the mode is ``live`` or ``test``."""
        kind = type(credentials)
        missing = f"{kind.api_key_env}: not set ([{self.name}] is configured)"
        problems = [] if credentials.api_key else [missing]
        return problems + declared_mode_problems(kind.mode_env, credentials.mode)

    def mode(self, credentials: DeclaredT) -> Mode:
        """What the mode variable declares, live unless it says ``test`` (the key does not
        say)."""
        return declared_mode(credentials.mode)
