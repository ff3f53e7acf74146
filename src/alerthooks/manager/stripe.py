"""Stripe: the ``[stripe]`` table of ``alerts.toml``, the credentials, and the billing-alert and
webhook-endpoint API, through the official SDK's async client.

Stripe alerts have no metadata, so the key lives in the title: ``"API calls reached 100
[alerthooks:api-100]"`` (see :mod:`alerthooks.marker`). The marker is stripped before titles are
compared, so a changed title is still seen (and is a replace, as is every change but
``enabled``: Stripe alerts cannot be edited, only activated, deactivated and archived).

Webhook endpoints are created on :data:`API_VERSION`, the payload version the receiver's
normalizer is tested against; Stripe cannot change an endpoint's version in place, so an
existing endpoint on another version is shown in the plan and left alone.

Requests go through :class:`alerthooks.apis.stripe.StripeClient` (the SDK's async client, its
retries and paging), which :class:`StripeAPI` extends.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, cast
from urllib.parse import quote

from pydantic import Field, StrictInt, field_validator, model_validator

from alerthooks.apis.stripe import API_BASE_ENV, API_KEY_ENV, StripeClient
from alerthooks.apis.stripe import REPLAYED_HEADER as _REPLAYED
from alerthooks.manager.api import (
    AdoptMode,
    CreatedEndpoint,
    Declaration,
    Mode,
    ProviderAPI,
    ProviderError,
    RemoteAlert,
    RemoteEndpoint,
    RetryPolicy,
)
from alerthooks.manager.spec import (
    AlertEntry,
    ConfigError,
    ProviderCredentials,
    ProviderSpec,
    ProviderTable,
    env_value,
)
from alerthooks.marker import mark, marker, split_marker
from alerthooks.providers.stripe import SECRET_ENV

ALERT_EVENT = "billing.alert.triggered"
#: The API version of the webhook endpoints the manager creates: the newest one whose
#: ``billing.alert.triggered`` payload this release's normalizer is tested against (the
#: version ``fixtures/stripe_alert_triggered*.json`` carry).
API_VERSION = "2024-12-18.acacia"
#: Stripe's limit on an alert title, ownership marker included.
STRIPE_TITLE_MAX = 256
#: Stripe allows at most this many alerts per (meter, customer) pair.
STRIPE_ALERTS_PER_PAIR = 25
# -- the [stripe] table ----------------------------------------------------------------------


def stripe_marker(key: str) -> str:
    """The suffix that marks a Stripe alert title as managed under ``key``."""
    return marker(key)


def split_title(title: str) -> tuple[str, str | None]:
    """``(title without marker, key)``; the key is ``None`` for an unmanaged alert."""
    return split_marker(title)


class StripeAlert(AlertEntry):
    """One ``[[stripe.alerts]]`` entry: a usage-threshold alert on a Stripe billing meter."""

    title: str = Field(min_length=1)
    meter: str = Field(min_length=1)
    gte: StrictInt = Field(gt=0)
    customer: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _title_fits_with_marker(self) -> StripeAlert:
        room = STRIPE_TITLE_MAX - len(marker(self.key))
        if len(self.title) > room:
            raise ValueError(
                f"title: at most {room} characters (Stripe allows {STRIPE_TITLE_MAX} "
                f"including the ownership marker), got {len(self.title)}"
            )
        return self


class StripeConfig(ProviderTable):
    """The ``[stripe]`` table."""

    alerts: list[StripeAlert] = Field(default_factory=list)

    @field_validator("alerts")
    @classmethod
    def _per_pair_limit(cls, alerts: list[StripeAlert]) -> list[StripeAlert]:
        pairs = Counter((a.meter, a.customer) for a in alerts)
        for (meter, customer), count in pairs.items():
            if count > STRIPE_ALERTS_PER_PAIR:
                who = customer or "all customers"
                raise ValueError(
                    f"meter: {count} alerts on meter {meter!r} for {who}; Stripe allows "
                    f"at most {STRIPE_ALERTS_PER_PAIR} per (meter, customer)"
                )
        return alerts


# -- credentials -----------------------------------------------------------------------------


def stripe_key_mode(api_key: str) -> Mode:
    """``"live"`` for ``sk_live_``/``rk_live_`` keys, ``"test"`` for ``sk_test_``/``rk_test_``;
    raises :class:`ConfigError` for anything else."""
    if api_key.startswith(("sk_live_", "rk_live_")):
        return "live"
    if api_key.startswith(("sk_test_", "rk_test_")):
        return "test"
    raise ConfigError(
        f"{API_KEY_ENV}: expected a secret (sk_test_/sk_live_) or restricted "
        "(rk_test_/rk_live_) key"
    )


@dataclasses.dataclass(frozen=True, repr=False)
class StripeCredentials(ProviderCredentials):
    """``STRIPE_API_KEY``, and ``ALERTHOOKS_STRIPE_API_BASE`` to replace
    ``https://api.stripe.com`` (plain ``http://127.0.0.1:PORT`` works, for fakes)."""

    shown = frozenset({"api_base"})

    api_key: str | None = None
    api_base: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StripeCredentials:
        """Read ``STRIPE_API_KEY`` and ``ALERTHOOKS_STRIPE_API_BASE``."""
        return cls(api_key=env_value(env, API_KEY_ENV), api_base=env_value(env, API_BASE_ENV))


def _id_of(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return cast(str, value["id"])


class StripeAPI(StripeClient):
    """Stripe's billing-alert and webhook-endpoint API for one account.

    ``api_base`` replaces ``https://api.stripe.com`` (plain ``http://`` works, for fakes);
    at most ``concurrency`` requests are in flight at once.
    """

    name = "stripe"
    updatable: frozenset[str] = frozenset()
    event = ALERT_EVENT
    endpoint_api_version: str | None = API_VERSION
    endpoint_version_in_place = False
    removed = "archived"
    #: Stripe alerts have no update (``stripe-php`` ``lib/Billing/Alert.php``: create, list,
    #: retrieve, activate, deactivate, archive), so the marker cannot be added to one made by
    #: hand: adopting creates the marked alert, then archives the old one.
    adopt_mode: AdoptMode = "replace"
    identity_fields = ("meter", "customer", "gte")

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str | None = None,
        concurrency: int = 8,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.mode = stripe_key_mode(api_key)
        self.account = f"{self.mode} mode ({api_key[:8]}…)"
        super().__init__(api_key, api_base=api_base, concurrency=concurrency, retry=retry)

    def __repr__(self) -> str:
        return f"StripeAPI({self.account})"

    # -- config side ---------------------------------------------------------------------

    def key_of(self, alert: StripeAlert) -> str:
        """The configured alert's key."""
        return alert.key

    def desired_spec(self, alert: StripeAlert) -> dict[str, Any]:
        """Title (without marker), meter, gte and customer: everything but ``enabled``."""
        return {
            "title": alert.title,
            "meter": alert.meter,
            "gte": alert.gte,
            "customer": alert.customer,
        }

    def check_limits(self, desired: list[StripeAlert], kept_remote: list[RemoteAlert]) -> list[str]:
        """At most 25 alerts per (meter, customer), counting remote alerts the plan keeps."""
        counts = Counter((a.meter, a.customer) for a in desired)
        others = Counter((r.spec["meter"], r.spec["customer"]) for r in kept_remote)
        problems = []
        for index, alert in enumerate(desired):
            pair = (alert.meter, alert.customer)
            total = counts[pair] + others[pair]
            if total > STRIPE_ALERTS_PER_PAIR and counts[pair] > 0:
                who = alert.customer or "all customers"
                problems.append(
                    f"stripe.alerts[{index}] (key {alert.key!r}): meter: {total} alerts would "
                    f"exist on meter {alert.meter!r} for {who} ({others[pair]} of them not in "
                    f"this file); Stripe allows at most {STRIPE_ALERTS_PER_PAIR}"
                )
                counts[pair] = 0  # report each pair once
        return problems

    def replace_removes_first(
        self,
        alert: StripeAlert,
        old: RemoteAlert,
        desired: list[StripeAlert],
        kept_remote: list[RemoteAlert],
    ) -> bool:
        """True when the replacement stays in a (meter, customer) pair that will be full."""
        pair = (alert.meter, alert.customer)
        if (old.spec["meter"], old.spec["customer"]) != pair:
            return False
        total = sum(1 for a in desired if (a.meter, a.customer) == pair) + sum(
            1 for r in kept_remote if (r.spec["meter"], r.spec["customer"]) == pair
        )
        return total >= STRIPE_ALERTS_PER_PAIR

    # -- existing alerts -----------------------------------------------------------------

    def identity(self, alert: StripeAlert) -> tuple[Any, ...]:
        """Meter, customer (None: all customers) and ``gte``; the title does not count."""
        return (alert.meter, alert.customer, alert.gte)

    def remote_identities(self, remote: RemoteAlert) -> tuple[tuple[Any, ...], ...]:
        """A usage-threshold alert's meter, customer and ``gte``."""
        if remote.raw.get("alert_type", "usage_threshold") != "usage_threshold":
            return ()
        return ((remote.spec.get("meter"), remote.spec.get("customer"), remote.spec.get("gte")),)

    def declare(self, remote: RemoteAlert) -> Declaration | None:
        """Title, meter, gte and customer (and ``enabled = false`` for an inactive alert)."""
        spec = remote.spec
        if remote.raw.get("alert_type", "usage_threshold") != "usage_threshold":
            return None
        if not isinstance(spec.get("meter"), str) or not isinstance(spec.get("gte"), int):
            return None
        fields: dict[str, Any] = {
            "title": spec.get("title") or f"usage reached {spec['gte']}",
            "meter": spec["meter"],
            "gte": spec["gte"],
        }
        if spec.get("customer"):
            fields["customer"] = spec["customer"]
        if not remote.enabled:
            fields["enabled"] = False
        return Declaration(fields)

    async def adopt_alert(self, alert_id: str, alert: StripeAlert, idempotency_key: str) -> None:
        """Never planned: Stripe alerts cannot be edited (adopting replaces them)."""
        raise ProviderError("stripe: alerts cannot be edited; adopting replaces them")

    # -- reads ---------------------------------------------------------------------------

    async def list_alerts(self) -> list[RemoteAlert]:
        """Every active and inactive alert, newest first, 100 per page."""
        alerts = await self._list_all("list alerts", "/v1/billing/alerts")
        return [remote for obj in alerts if (remote := self._remote_alert(obj)) is not None]

    def _remote_alert(self, obj: dict[str, Any]) -> RemoteAlert | None:
        if obj.get("status") == "archived":
            return None
        threshold = obj.get("usage_threshold") or {}
        filters = threshold.get("filters") or []
        customer = next(
            (_id_of(f.get("customer")) for f in filters if f.get("type") == "customer"), None
        )
        title, key = split_title(obj.get("title") or "")
        return RemoteAlert(
            provider=self.name,
            id=obj["id"],
            key=key,
            enabled=obj.get("status") == "active",
            spec={
                "title": title,
                "meter": _id_of(threshold.get("meter")),
                "gte": threshold.get("gte"),
                "customer": customer,
            },
            raw=obj,
        )

    async def list_endpoints(self) -> list[RemoteEndpoint]:
        """Every webhook endpoint, 100 per page."""
        endpoints = await self._list_all("list webhook endpoints", "/v1/webhook_endpoints")
        return [
            RemoteEndpoint(
                provider=self.name,
                id=obj["id"],
                url=obj.get("url") or "",
                events=tuple(obj.get("enabled_events") or ()),
                enabled=obj.get("status") != "disabled",
                api_version=obj.get("api_version"),
            )
            for obj in endpoints
        ]

    # -- writes --------------------------------------------------------------------------

    async def create_alert(self, alert: StripeAlert, idempotency_key: str) -> RemoteAlert:
        """Create the alert, titled with the ownership marker (always created active)."""
        usage: dict[str, Any] = {"gte": alert.gte, "meter": alert.meter, "recurrence": "one_time"}
        if alert.customer:
            usage["filters"] = [{"type": "customer", "customer": alert.customer}]
        params: Any = {
            "alert_type": "usage_threshold",
            "title": mark(alert.title, alert.key),
            "usage_threshold": usage,
        }
        obj, headers, attempt = await self._call_counted(
            f"create alert {alert.key!r}", "post", "/v1/billing/alerts", params, idempotency_key
        )
        remote = self._remote_alert(obj)
        if remote is None:  # an earlier run's alert, archived since
            return RemoteAlert(self.name, obj["id"], alert.key, False, {}, replayed=True)
        return replace(remote, replayed=attempt == 0 and headers.get(_REPLAYED) == "true")

    async def update_alert(self, alert_id: str, alert: StripeAlert, idempotency_key: str) -> None:
        """Stripe alerts cannot be edited; only ``enabled`` changes in place."""
        await self.set_enabled(alert_id, alert.enabled, idempotency_key)

    async def set_enabled(self, alert_id: str, enabled: bool, idempotency_key: str) -> None:
        """Activate or deactivate."""
        verb = "activate" if enabled else "deactivate"
        await self._call(
            f"{verb} alert {alert_id}",
            "post",
            f"/v1/billing/alerts/{quote(alert_id, safe='')}/{verb}",
            {},
            idempotency_key,
        )

    async def remove_alert(self, alert_id: str, idempotency_key: str) -> None:
        """Archive (Stripe alerts cannot be deleted)."""
        await self._call(
            f"archive alert {alert_id}",
            "post",
            f"/v1/billing/alerts/{quote(alert_id, safe='')}/archive",
            {},
            idempotency_key,
        )

    async def create_endpoint(self, url: str, idempotency_key: str) -> CreatedEndpoint:
        """Create an endpoint sending ``billing.alert.triggered`` on :data:`API_VERSION`;
        returns its signing secret."""
        params: Any = {
            "url": url,
            "api_version": API_VERSION,
            "enabled_events": [ALERT_EVENT],
            "description": "alerthooks usage alerts",
        }
        data = await self._call(
            f"create webhook endpoint {url}",
            "post",
            "/v1/webhook_endpoints",
            params,
            idempotency_key,
        )
        return CreatedEndpoint(id=data["id"], secret=data.get("secret"))

    async def fix_endpoint(self, endpoint: RemoteEndpoint, idempotency_key: str) -> None:
        """Enable the endpoint and add ``billing.alert.triggered`` to its events (its API
        version cannot be changed)."""
        events = list(endpoint.events)
        if ALERT_EVENT not in events and "*" not in events:
            events.append(ALERT_EVENT)
        params: Any = {"enabled_events": events, "disabled": False}
        await self._call(
            f"update webhook endpoint {endpoint.id}",
            "post",
            f"/v1/webhook_endpoints/{quote(endpoint.id, safe='')}",
            params,
            idempotency_key,
        )


class StripeSpec(ProviderSpec[StripeConfig, StripeCredentials]):
    """Stripe as the manager knows it: the ``[stripe]`` table, ``STRIPE_API_KEY``, and new
    endpoints' secrets going to ``STRIPE_WEBHOOK_SECRET``."""

    name = "stripe"
    table = StripeConfig
    credentials = StripeCredentials
    endpoint_secret_env = SECRET_ENV

    def check_credentials(self, credentials: StripeCredentials, table: StripeConfig) -> list[str]:
        """The API key is set and is a secret or restricted key."""
        if not credentials.api_key:
            return [f"{API_KEY_ENV}: not set ([stripe] is configured)"]
        try:
            stripe_key_mode(credentials.api_key)
        except ConfigError as exc:
            return [str(exc)]
        return []

    def mode(self, credentials: StripeCredentials) -> Mode:
        """From the key's prefix (see :func:`stripe_key_mode`)."""
        return stripe_key_mode(credentials.api_key or "")

    def make_api(
        self,
        credentials: StripeCredentials,
        table: StripeConfig,
        *,
        concurrency: int,
        retry: RetryPolicy | None,
    ) -> ProviderAPI:
        """A :class:`StripeAPI` for the key."""
        assert credentials.api_key
        return StripeAPI(
            credentials.api_key,
            api_base=credentials.api_base,
            concurrency=concurrency,
            retry=retry,
        )


#: The registry's entry for Stripe.
SPEC = StripeSpec()
