"""``alerts.toml``: the declared alerts, validated before any API call, and the credentials
read from the environment."""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

#: Longest key; keys end up inside Stripe titles and Chargebee ``meta``.
KEY_MAX = 64
#: Stripe's limit on an alert title, ownership marker included.
STRIPE_TITLE_MAX = 256
#: Stripe allows at most this many alerts per (meter, customer) pair.
STRIPE_ALERTS_PER_PAIR = 25
CHARGEBEE_NAME_MAX = 50
CHARGEBEE_ID_MAX = 50
CHARGEBEE_DESCRIPTION_MAX = 65_000

_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

Mode = Literal["live", "test"]


class ConfigError(Exception):
    """The config file or the environment is unusable; each line of ``str(error)`` is one
    problem, naming the alert's key and the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def stripe_marker(key: str) -> str:
    """The suffix that marks a Stripe alert title as managed under ``key``."""
    return f" [alerthooks:{key}]"


class StripeAlert(_Model):
    """One ``[[stripe.alerts]]`` entry: a usage-threshold alert on a Stripe billing meter."""

    key: str = Field(min_length=1, max_length=KEY_MAX, pattern=_KEY_PATTERN)
    title: str = Field(min_length=1)
    meter: str = Field(min_length=1)
    gte: StrictInt = Field(gt=0)
    customer: str | None = Field(default=None, min_length=1)
    enabled: StrictBool = True

    @model_validator(mode="after")
    def _title_fits_with_marker(self) -> StripeAlert:
        room = STRIPE_TITLE_MAX - len(stripe_marker(self.key))
        if len(self.title) > room:
            raise ValueError(
                f"title: at most {room} characters (Stripe allows {STRIPE_TITLE_MAX} "
                f"including the ownership marker), got {len(self.title)}"
            )
        return self


class StripeConfig(_Model):
    """The ``[stripe]`` table."""

    webhook_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    alerts: list[StripeAlert] = Field(default_factory=list)

    @field_validator("alerts")
    @classmethod
    def _unique_keys(cls, alerts: list[StripeAlert]) -> list[StripeAlert]:
        _reject_duplicate_keys([a.key for a in alerts])
        pairs = Counter((a.meter, a.customer) for a in alerts)
        for (meter, customer), count in pairs.items():
            if count > STRIPE_ALERTS_PER_PAIR:
                who = customer or "all customers"
                raise ValueError(
                    f"meter: {count} alerts on meter {meter!r} for {who}; Stripe allows "
                    f"at most {STRIPE_ALERTS_PER_PAIR} per (meter, customer)"
                )
        return alerts


class Threshold(_Model):
    """A Chargebee threshold: an absolute usage quantity, or a percentage of the entitlement."""

    mode: Literal["absolute", "percentage"]
    value: float = Field(gt=0)

    @field_validator("value", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a number")
        return value


class ChargebeeAlert(_Model):
    """One ``[[chargebee.alerts]]`` entry: a usage-exceeded alert on a metered feature."""

    key: str = Field(min_length=1, max_length=KEY_MAX, pattern=_KEY_PATTERN)
    name: str = Field(min_length=1, max_length=CHARGEBEE_NAME_MAX)
    metered_feature_id: str = Field(min_length=1, max_length=CHARGEBEE_ID_MAX)
    threshold: Threshold
    subscription_id: str | None = Field(default=None, min_length=1, max_length=CHARGEBEE_ID_MAX)
    description: str | None = Field(default=None, max_length=CHARGEBEE_DESCRIPTION_MAX)
    enabled: StrictBool = True


class ChargebeeConfig(_Model):
    """The ``[chargebee]`` table."""

    webhook_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    alerts: list[ChargebeeAlert] = Field(default_factory=list)

    @field_validator("alerts")
    @classmethod
    def _unique_keys(cls, alerts: list[ChargebeeAlert]) -> list[ChargebeeAlert]:
        _reject_duplicate_keys([a.key for a in alerts])
        return alerts


class Config(_Model):
    """The whole ``alerts.toml``; a provider whose table is absent is left untouched."""

    stripe: StripeConfig | None = None
    chargebee: ChargebeeConfig | None = None


def _reject_duplicate_keys(keys: list[str]) -> None:
    dupes = sorted(k for k, n in Counter(keys).items() if n > 1)
    if dupes:
        raise ValueError(f"key: {', '.join(map(repr, dupes))} used more than once")


def parse_config(data: Mapping[str, Any], *, source: str = "alerts.toml") -> Config:
    """Validate already-parsed TOML data; raises :class:`ConfigError` listing every problem."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(error, data, source) for error in exc.errors()]
        raise ConfigError("\n".join(dict.fromkeys(lines))) from None


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
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    return parse_config(data, source=source)


def _describe(error: Any, data: Mapping[str, Any], source: str) -> str:
    loc: tuple[Any, ...] = tuple(error["loc"])
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
    where = ".".join(str(p) for p in loc[:1]) or "(top level)"
    field_path = ".".join(str(p) for p in loc[1:])
    if len(loc) >= 3 and loc[1] == "alerts" and isinstance(loc[2], int):
        entry = _lookup(data, loc[:3])
        key = entry.get("key") if isinstance(entry, Mapping) else None
        where = f"{loc[0]}.alerts[{loc[2]}]" + (f" (key {key!r})" if key else "")
        field_path = ".".join(str(p) for p in loc[3:])
    if error["type"] == "extra_forbidden":
        message = "unknown field" if field_path else "unknown table"
        if not field_path:
            return f"{source}: {where}: {message}"
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


@dataclass(frozen=True)
class Credentials:
    """API credentials and base addresses, normally from :meth:`from_env`.

    ``stripe_api_base`` replaces ``https://api.stripe.com`` and ``chargebee_api_base`` replaces
    ``https://{site}.chargebee.com``; both accept plain ``http://127.0.0.1:PORT`` for fakes.
    """

    stripe_api_key: str | None = None
    chargebee_api_key: str | None = None
    chargebee_site: str | None = None
    stripe_api_base: str | None = None
    chargebee_api_base: str | None = None
    chargebee_webhook_username: str | None = field(default=None, repr=False)
    chargebee_webhook_password: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (
            f"Credentials(stripe={'set' if self.stripe_api_key else 'unset'}, "
            f"chargebee_site={self.chargebee_site!r})"
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        """Read ``STRIPE_API_KEY``, ``CHARGEBEE_API_KEY``, ``CHARGEBEE_SITE``,
        ``ALERTHOOKS_STRIPE_API_BASE``, ``ALERTHOOKS_CHARGEBEE_API_BASE`` and
        ``CHARGEBEE_WEBHOOK_USERNAME`` / ``_PASSWORD``; empty values count as unset."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            return env.get(name, "").strip() or None

        return cls(
            stripe_api_key=get("STRIPE_API_KEY"),
            chargebee_api_key=get("CHARGEBEE_API_KEY"),
            chargebee_site=get("CHARGEBEE_SITE"),
            stripe_api_base=get("ALERTHOOKS_STRIPE_API_BASE"),
            chargebee_api_base=get("ALERTHOOKS_CHARGEBEE_API_BASE"),
            chargebee_webhook_username=get("CHARGEBEE_WEBHOOK_USERNAME"),
            chargebee_webhook_password=get("CHARGEBEE_WEBHOOK_PASSWORD"),
        )


def stripe_key_mode(api_key: str) -> Mode:
    """``"live"`` for ``sk_live_``/``rk_live_`` keys, ``"test"`` for ``sk_test_``/``rk_test_``;
    raises :class:`ConfigError` for anything else."""
    if api_key.startswith(("sk_live_", "rk_live_")):
        return "live"
    if api_key.startswith(("sk_test_", "rk_test_")):
        return "test"
    raise ConfigError(
        "STRIPE_API_KEY: expected a secret (sk_test_/sk_live_) or restricted "
        "(rk_test_/rk_live_) key"
    )


def chargebee_site_mode(site: str) -> Mode:
    """Chargebee test sites are named ``<name>-test``; every other site is live."""
    return "test" if site.endswith("-test") else "live"
