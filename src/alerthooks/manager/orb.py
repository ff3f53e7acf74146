"""Orb: the ``[orb]`` table of ``alerts.toml``, the credentials, and the alert API, over Orb's
HTTP API (``/v1/alerts``) with one shared ``httpx.AsyncClient``.

Orb alerts have no name, description or metadata (``types/alert.py`` and the create params in
orbcorp/orb-python), so no ownership marker can be written on them. What Orb does guarantee is
that an alert's *identity* is unique: one ``usage_exceeded`` alert per (subscription, metric),
one ``cost_exceeded`` per subscription, one credit-balance alert of each type per (customer,
currency). The manager therefore recognises an alert by that identity: the Orb alert at the
identity an ``[[orb.alerts]]`` entry names is that entry's alert (one made by hand there is
adopted), and every other alert is unmanaged. An idempotency key would not do: it identifies a
request, not the alert it made, and Orb forgets it. The limits that follow, with no local state
allowed:

- an entry removed from the file leaves its alert unmanaged (nothing says it was ours), so
  ``--prune`` never removes Orb alerts; disable or remove them in Orb;
- changing an entry's type, subscription, customer, metric or currency makes it another alert:
  the plan creates the new one and leaves the old one alone (shown as unmanaged).

In place: ``thresholds`` (``PUT /alerts/{id}``) and ``enabled`` (``POST
/alerts/{id}/enable|disable``). Orb cannot delete an alert; removing one disables it.

Orb's API has no webhook-endpoint resource (endpoints are added in the Orb dashboard), so
``[orb]`` takes no ``webhook_url``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field, field_validator, model_validator

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
    http_client,
    json_body,
    send,
    with_retries,
)
from alerthooks.manager.spec import (
    AlertEntry,
    DeclaredModeCredentials,
    DeclaredModeSpec,
    ProviderTable,
    declared_mode,
)

API_KEY_ENV = "ORB_API_KEY"
API_BASE_ENV = "ALERTHOOKS_ORB_API_BASE"
#: Whether the key reaches live or test data (``live`` or ``test``, default ``live``): Orb keys
#: do not say, so ``apply`` needs ``--live`` unless this says ``test``.
MODE_ENV = "ALERTHOOKS_ORB_MODE"
DEFAULT_API_BASE = "https://api.withorb.com"
PAGE_SIZE = 100
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: Alert types scoped to a subscription, and to a customer's credit balance.
SUBSCRIPTION_TYPES = ("usage_exceeded", "cost_exceeded")
CUSTOMER_TYPES = ("credit_balance_dropped", "credit_balance_depleted", "credit_balance_recovered")
NO_ENDPOINTS = (
    "Orb's API has no webhook endpoints: add the endpoint in the Orb dashboard "
    "(Developers → Webhooks) and give the receiver its secret as ORB_WEBHOOK_SECRET"
)

OrbAlertType = Literal[
    "usage_exceeded",
    "cost_exceeded",
    "credit_balance_dropped",
    "credit_balance_depleted",
    "credit_balance_recovered",
]
Identity = tuple[str, str | None, str | None, str | None, str | None]
"""(type, subscription_id, customer_id, metric_id, currency): what Orb keeps unique."""

# -- the [orb] table -------------------------------------------------------------------------


class OrbAlert(AlertEntry):
    """One ``[[orb.alerts]]`` entry: a subscription's usage or cost alert, or a customer's
    credit-balance alert. Its ``key`` is a label in this file only (Orb alerts cannot carry
    one): the alert is found by its type and scope."""

    type: OrbAlertType
    subscription_id: str | None = Field(default=None, min_length=1)
    customer_id: str | None = Field(default=None, min_length=1)
    metric_id: str | None = Field(default=None, min_length=1)
    currency: str | None = Field(default=None, min_length=1)
    thresholds: list[float] = Field(default_factory=list)

    @field_validator("thresholds", mode="before")
    @classmethod
    def _numbers(cls, value: Any) -> Any:
        if isinstance(value, list):
            for item in value:
                if isinstance(item, bool) or not isinstance(item, int | float) or item < 0:
                    raise ValueError("must be a list of numbers >= 0")
        return value

    @model_validator(mode="after")
    def _scope(self) -> OrbAlert:
        if self.type in SUBSCRIPTION_TYPES:
            if not self.subscription_id:
                raise ValueError(f"subscription_id: required for a {self.type} alert")
            if self.customer_id or self.currency:
                raise ValueError(
                    f"customer_id/currency: not for a {self.type} alert (it is scoped to "
                    "subscription_id)"
                )
            if self.type == "usage_exceeded" and not self.metric_id:
                raise ValueError("metric_id: required for a usage_exceeded alert")
            if self.type == "cost_exceeded" and self.metric_id:
                raise ValueError("metric_id: not for a cost_exceeded alert")
            if not self.thresholds:
                raise ValueError(f"thresholds: at least one for a {self.type} alert")
        else:
            if not self.customer_id or not self.currency:
                raise ValueError(f"customer_id and currency: required for a {self.type} alert")
            if self.subscription_id or self.metric_id:
                raise ValueError(
                    f"subscription_id/metric_id: not for a {self.type} alert (it is scoped to "
                    "customer_id and currency)"
                )
            if self.type == "credit_balance_dropped" and not self.thresholds:
                raise ValueError("thresholds: at least one for a credit_balance_dropped alert")
        return self

    @property
    def identity(self) -> Identity:
        """What Orb keeps unique, and so what finds this entry's alert."""
        return (self.type, self.subscription_id, self.customer_id, self.metric_id, self.currency)


class OrbConfig(ProviderTable):
    """The ``[orb]`` table (no ``webhook_url``: see :data:`NO_ENDPOINTS`)."""

    alerts: list[OrbAlert] = Field(default_factory=list)

    @field_validator("webhook_url")
    @classmethod
    def _no_endpoints(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError(NO_ENDPOINTS)
        return value

    @field_validator("alerts")
    @classmethod
    def _one_per_identity(cls, alerts: list[OrbAlert]) -> list[OrbAlert]:
        seen: dict[Identity, int] = {}
        for index, alert in enumerate(alerts):
            first = seen.setdefault(alert.identity, index)
            if first != index:
                raise ValueError(
                    f"type: orb.alerts[{index}] (key {alert.key!r}) is the same alert as "
                    f"orb.alerts[{first}] (key {alerts[first].key!r}): Orb allows one "
                    f"{alert.type} alert per {_scope_words(alert)}"
                )
        return alerts


def _scope_words(alert: OrbAlert) -> str:
    if alert.type == "usage_exceeded":
        return "subscription and metric"
    if alert.type == "cost_exceeded":
        return "subscription"
    return "customer and currency"


# -- credentials -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, repr=False)
class OrbCredentials(DeclaredModeCredentials):
    """``ORB_API_KEY``, and ``ALERTHOOKS_ORB_API_BASE`` to replace ``https://api.withorb.com``
    (plain ``http://127.0.0.1:PORT`` works, for fakes), and ``ALERTHOOKS_ORB_MODE`` (``live``, the
    default, or ``test``: the key does not say)."""

    api_key_env = API_KEY_ENV
    api_base_env = API_BASE_ENV
    mode_env = MODE_ENV


def _id(obj: Any) -> str | None:
    return obj.get("id") if isinstance(obj, dict) else None


def _sorted(values: list[float]) -> list[float | int]:
    """Thresholds in the plan's terms: sorted, whole numbers as ints (a list, which the plan
    shows as ``[100, 1000]``)."""
    return [int(v) if float(v).is_integer() else float(v) for v in sorted(values)]


def _thresholds(values: Any) -> list[float | int]:
    numbers = []
    for item in values or ():
        value = item.get("value") if isinstance(item, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            numbers.append(float(value))
    return _sorted(numbers)


def remote_identity(obj: Mapping[str, Any]) -> Identity | None:
    """The identity of an alert as Orb lists it; ``None`` for a plan-level alert (set on a plan,
    never by this file) or a type this module does not manage."""
    kind = obj.get("type")
    if obj.get("plan") or not isinstance(kind, str):
        return None
    if kind in SUBSCRIPTION_TYPES:
        return (kind, _id(obj.get("subscription")), None, _id(obj.get("metric")), None)
    if kind in CUSTOMER_TYPES:
        return (kind, None, _id(obj.get("customer")), None, obj.get("currency"))
    return None


class OrbAPI:
    """Orb's alert API for the subscriptions and customers ``alerts`` name (Orb lists alerts
    only per subscription or customer).

    ``api_base`` replaces ``https://api.withorb.com`` (plain ``http://`` works, for fakes); at
    most ``concurrency`` requests are in flight at once.
    """

    name = "orb"
    updatable: frozenset[str] = frozenset({"thresholds"})
    event = "subscription.usage_exceeded"
    endpoint_api_version: str | None = None
    endpoint_version_in_place = False
    removed = "disabled"
    #: Orb owns alerts by type and scope: the alert at an entry's identity is that entry's,
    #: whoever made it, so there is nothing to adopt and no lookalike.
    adopt_mode: AdoptMode = "identity"
    identity_fields = ("type", "subscription_id", "customer_id", "metric_id", "currency")

    def __init__(
        self,
        api_key: str,
        alerts: list[OrbAlert],
        *,
        api_base: str | None = None,
        concurrency: int = 8,
        retry: RetryPolicy | None = None,
        mode: Mode = "live",
    ) -> None:
        # Orb keys do not say whether they reach test or live data: ``mode`` comes from
        # ALERTHOOKS_ORB_MODE (live by default).
        self.mode = mode
        self.account = (
            f"{mode} mode ({MODE_ENV}; key {api_key[:6]}…); alerts found by type and scope, "
            "webhook endpoints set in the Orb dashboard"
        )
        self._keys = {alert.identity: alert.key for alert in alerts}
        self._scopes = sorted(
            {("subscription_id", a.subscription_id) for a in alerts if a.subscription_id}
            | {("customer_id", a.customer_id) for a in alerts if a.customer_id}
        )
        self._retry = retry or RetryPolicy()
        base = (api_base or DEFAULT_API_BASE).rstrip("/")
        self._client = http_client(
            f"{base}/v1",
            self._retry,
            concurrency,
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
        )
        self._limit = asyncio.Semaphore(concurrency)

    def __repr__(self) -> str:
        return f"OrbAPI({self.mode} mode)"

    async def aclose(self) -> None:
        """Close the shared HTTP client."""
        await self._client.aclose()

    # -- config side ---------------------------------------------------------------------

    def key_of(self, alert: OrbAlert) -> str:
        """The configured alert's key."""
        return alert.key

    def desired_spec(self, alert: OrbAlert) -> dict[str, Any]:
        """Type, scope, metric, currency and the sorted thresholds."""
        kind, subscription, customer, metric, currency = alert.identity
        return {
            "type": kind,
            "subscription_id": subscription,
            "customer_id": customer,
            "metric_id": metric,
            "currency": currency,
            "thresholds": _sorted(alert.thresholds),
        }

    def check_limits(self, desired: list[OrbAlert], kept_remote: list[RemoteAlert]) -> list[str]:
        """None beyond one alert per identity, which the table already checks (an alert at a
        configured identity is that entry's)."""
        return []

    def replace_removes_first(
        self, alert: OrbAlert, old: RemoteAlert, desired: list[OrbAlert], kept: list[RemoteAlert]
    ) -> bool:
        """Never planned: only thresholds can differ at one identity, and they change in
        place."""
        return False

    # -- existing alerts -----------------------------------------------------------------

    def identity(self, alert: OrbAlert) -> tuple[Any, ...]:
        """Type and scope (what Orb keeps unique)."""
        return alert.identity

    def remote_identities(self, remote: RemoteAlert) -> tuple[tuple[Any, ...], ...]:
        """None: an Orb alert at an entry's type and scope already is that entry's, never a
        lookalike."""
        return ()

    def declare(self, remote: RemoteAlert) -> Declaration | None:
        """Type, scope and thresholds (``enabled = false`` for a disabled alert); None for a
        plan-level alert or a type this module does not manage."""
        if remote_identity(remote.raw) is None:
            return None
        fields = {name: remote.spec[name] for name in self.identity_fields if remote.spec.get(name)}
        if remote.spec.get("thresholds"):
            fields["thresholds"] = remote.spec["thresholds"]
        if not remote.enabled:
            fields["enabled"] = False
        return Declaration(fields)

    async def adopt_alert(self, alert_id: str, alert: OrbAlert, idempotency_key: str) -> None:
        """Never planned: Orb alerts are owned by type and scope."""
        raise ProviderError("orb: alerts are owned by type and scope; nothing to adopt")

    # -- reads ---------------------------------------------------------------------------

    async def list_alerts(self) -> list[RemoteAlert]:
        """Every alert of the configured subscriptions and customers, 100 per page, scopes
        read concurrently."""
        pages = await asyncio.gather(*(self._list(field, value) for field, value in self._scopes))
        seen: dict[str, RemoteAlert] = {}
        for objects in pages:
            for obj in objects:
                if isinstance(obj.get("id"), str) and obj["id"] not in seen:
                    seen[obj["id"]] = self._remote_alert(obj)
        return list(seen.values())

    async def read_whole_account(self) -> None:
        """Read the alerts of every customer and subscription from now on, not only the ones
        the table names (``GET /customers`` and ``GET /subscriptions``, all pages)."""
        customers, subscriptions = await asyncio.gather(
            self._pages("/customers", "list customers", {}),
            self._pages("/subscriptions", "list subscriptions", {}),
        )
        self._scopes = sorted(
            set(self._scopes)
            | {("customer_id", str(c["id"])) for c in customers if c.get("id")}
            | {("subscription_id", str(s["id"])) for s in subscriptions if s.get("id")}
        )

    async def _list(self, field: str, value: str) -> list[dict[str, Any]]:
        return await self._pages("/alerts", f"list alerts of {value}", {field: value})

    async def _pages(self, path: str, what: str, query: dict[str, Any]) -> list[dict[str, Any]]:
        """Every object of an Orb list, following ``pagination_metadata.next_cursor``."""
        objects: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {**query, "limit": PAGE_SIZE}
            if cursor:
                params["cursor"] = cursor
            body = await self._call("GET", path, what, params=params)
            objects.extend(o for o in body.get("data") or () if isinstance(o, dict))
            meta = body.get("pagination_metadata") or {}
            cursor = meta.get("next_cursor") if meta.get("has_more") else None
            if not cursor:
                return objects

    def _remote_alert(self, obj: dict[str, Any]) -> RemoteAlert:
        identity = remote_identity(obj)
        kind, subscription, customer, metric, currency = identity or (
            obj.get("type"),
            _id(obj.get("subscription")),
            _id(obj.get("customer")),
            _id(obj.get("metric")),
            obj.get("currency"),
        )
        return RemoteAlert(
            provider=self.name,
            id=str(obj["id"]),
            key=self._keys.get(identity) if identity is not None else None,
            enabled=bool(obj.get("enabled", True)),
            spec={
                "type": kind,
                "subscription_id": subscription,
                "customer_id": customer,
                "metric_id": metric,
                "currency": currency,
                "thresholds": _thresholds(obj.get("thresholds")),
            },
            raw=obj,
        )

    async def list_endpoints(self) -> list[RemoteEndpoint]:
        """None: Orb's API has no webhook endpoints."""
        return []

    # -- writes --------------------------------------------------------------------------

    async def create_alert(self, alert: OrbAlert, idempotency_key: str) -> RemoteAlert:
        """Create the alert at its subscription or customer (Orb creates it enabled)."""
        thresholds = [{"value": t} for t in alert.thresholds]
        body: dict[str, Any] = {"type": alert.type}
        if alert.subscription_id:
            path = f"/alerts/subscription_id/{quote(alert.subscription_id, safe='')}"
            body["thresholds"] = thresholds
            if alert.metric_id:
                body["metric_id"] = alert.metric_id
        else:
            assert alert.customer_id
            path = f"/alerts/customer_id/{quote(alert.customer_id, safe='')}"
            body["currency"] = alert.currency
            if thresholds:
                body["thresholds"] = thresholds
        obj = await self._call(
            "POST", path, f"create alert {alert.key!r}", json=body, key=idempotency_key
        )
        return self._remote_alert(obj)

    async def update_alert(self, alert_id: str, alert: OrbAlert, idempotency_key: str) -> None:
        """Set the thresholds in place, then the enabled state."""
        body = {"thresholds": [{"value": t} for t in alert.thresholds]}
        await self._call(
            "PUT",
            f"/alerts/{quote(alert_id, safe='')}",
            f"update alert {alert_id}",
            json=body,
            key=f"{idempotency_key}-thresholds",
        )
        await self.set_enabled(alert_id, alert.enabled, f"{idempotency_key}-enabled")

    async def set_enabled(self, alert_id: str, enabled: bool, idempotency_key: str) -> None:
        """Enable or disable."""
        verb = "enable" if enabled else "disable"
        await self._call(
            "POST",
            f"/alerts/{quote(alert_id, safe='')}/{verb}",
            f"{verb} alert {alert_id}",
            key=idempotency_key,
        )

    async def remove_alert(self, alert_id: str, idempotency_key: str) -> None:
        """Disable: Orb cannot delete an alert."""
        await self.set_enabled(alert_id, False, idempotency_key)

    async def create_endpoint(self, url: str, idempotency_key: str) -> CreatedEndpoint:
        """Never planned (``[orb]`` has no ``webhook_url``)."""
        raise ProviderError(f"orb: {NO_ENDPOINTS}")

    async def fix_endpoint(self, endpoint: RemoteEndpoint, idempotency_key: str) -> None:
        """Never planned (``[orb]`` has no ``webhook_url``)."""
        raise ProviderError(f"orb: {NO_ENDPOINTS}")

    async def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        """The answer's JSON object; 429, 5xx, resets and timeouts are retried (writes under
        the same idempotency key, which Orb answers from its first result)."""
        headers = {IDEMPOTENCY_HEADER: key} if key else {}

        async def attempt(number: int) -> dict[str, Any]:
            response = await send(
                self._client, self._limit, method, path, params=params, json=json, headers=headers
            )
            status = response.status_code
            body = json_body(response)
            if status >= 400 or not isinstance(body, dict):
                detail = body.get("detail") or body.get("title") if isinstance(body, dict) else None
                raise ProviderError(f"orb: {what}: HTTP {status}: {detail or 'unexpected answer'}")
            return body

        return await with_retries(attempt, self._retry, f"orb: {what}")


class OrbSpec(DeclaredModeSpec[OrbConfig, OrbCredentials]):
    """Orb as the manager knows it: the ``[orb]`` table and ``ORB_API_KEY`` (no webhook
    endpoints: Orb's API has none)."""

    name = "orb"
    table = OrbConfig
    credentials = OrbCredentials

    def make_api(
        self,
        credentials: OrbCredentials,
        table: OrbConfig,
        *,
        concurrency: int,
        retry: RetryPolicy | None,
    ) -> ProviderAPI:
        """An :class:`OrbAPI` for the key and the table's alerts (which say what to list)."""
        assert credentials.api_key
        return OrbAPI(
            credentials.api_key,
            list(table.alerts),
            mode=declared_mode(credentials.mode),
            api_base=credentials.api_base,
            concurrency=concurrency,
            retry=retry,
        )


#: The registry's entry for Orb.
SPEC = OrbSpec()
