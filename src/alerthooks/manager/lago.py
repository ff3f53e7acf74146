"""Lago: the ``[lago]`` table of ``alerts.toml``, the credentials, and the usage-monitoring alert
API (getlago/lago-api ``app/controllers/api/v1/subscriptions/alerts_controller.rb`` and
``customers/wallets/alerts_controller.rb``), over :class:`~alerthooks.apis.lago.LagoClient`.

An alert lives on a subscription (``external_subscription_id``) or on a customer's wallet
(``external_customer_id`` + ``wallet_code``) and is addressed by its ``code``. Ownership lives
in the alert's name, which ends in the `` [alerthooks:<key>]`` marker (webhooks then carry
``alert_key``); the manager also sets the alert's ``code`` to the key, which Lago keeps unique
per subscription or wallet, so a retried create answers 422 and finds the alert its first
attempt made instead of making a second one.

Name, thresholds and billable metric are changed in place (``PUT``); a new type or a new
subscription or wallet is a replace, removing the old alert first (Lago allows one alert per
type there, and the code is taken). Lago alerts have no enabled flag, and Lago's API lists
alerts per subscription or wallet only: the manager reads those the entries name, so
``--prune`` removes managed alerts there only. Webhook endpoints are set in Lago's UI (or its
``/webhook_endpoints`` API), so ``[lago]`` takes no ``webhook_url``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Literal

from pydantic import Field, StrictBool, field_validator, model_validator

from alerthooks.apis.lago import (
    API_KEY_ENV,
    API_URL_ENV,
    LagoClient,
    subscription_path,
    wallet_path,
)
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
    ConfigModel,
    DeclaredModeCredentials,
    DeclaredModeSpec,
    ProviderTable,
    declared_mode,
)
from alerthooks.marker import mark, split_marker

#: Whether the API key reaches live or test data (``live``, the default, or ``test``): Lago
#: keys do not say, so ``apply`` needs ``--live`` unless this says ``test``.
MODE_ENV = "ALERTHOOKS_LAGO_MODE"
NO_ENDPOINTS = (
    "the manager does not keep Lago webhook endpoints: add one in Lago (Developers → Webhooks) "
    "and give the receiver its HMAC token as LAGO_WEBHOOK_SECRET"
)

LagoAlertType = Literal[
    "current_usage_amount",
    "billable_metric_current_usage_amount",
    "billable_metric_current_usage_units",
    "lifetime_usage_amount",
    "billable_metric_lifetime_usage_units",
    "wallet_balance_amount",
    "wallet_credits_balance",
    "wallet_ongoing_balance_amount",
    "wallet_credits_ongoing_balance",
]
WALLET_TYPES = frozenset(
    {
        "wallet_balance_amount",
        "wallet_credits_balance",
        "wallet_ongoing_balance_amount",
        "wallet_credits_ongoing_balance",
    }
)
_SOFT_LIMIT = 20

# -- the [lago] table ------------------------------------------------------------------------


class LagoThreshold(ConfigModel):
    """One threshold: its ``value``, an optional ``code``, and ``recurring`` (at most one per
    alert: it fires again every ``value`` past the last one-time threshold)."""

    value: float
    code: str | None = Field(default=None, min_length=1)
    recurring: StrictBool = False

    @field_validator("value", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a number")
        return value


class LagoAlert(AlertEntry):
    """One ``[[lago.alerts]]`` entry: an alert on a subscription (``external_subscription_id``)
    or on a customer's wallet (``external_customer_id`` and ``wallet_code``); ``thresholds``
    are numbers or ``{value, code, recurring}`` tables."""

    name: str = Field(min_length=1)
    alert_type: LagoAlertType
    thresholds: list[LagoThreshold] = Field(min_length=1, max_length=_SOFT_LIMIT)
    external_subscription_id: str | None = Field(default=None, min_length=1)
    external_customer_id: str | None = Field(default=None, min_length=1)
    wallet_code: str | None = Field(default=None, min_length=1)
    billable_metric_code: str | None = Field(default=None, min_length=1)

    @field_validator("thresholds", mode="before")
    @classmethod
    def _tables(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"value": v} if not isinstance(v, dict) else v for v in value]
        return value

    @field_validator("enabled")
    @classmethod
    def _always_enabled(cls, value: bool) -> bool:
        if not value:
            raise ValueError(
                "Lago alerts have no enabled flag: remove the entry (apply --prune deletes it)"
            )
        return value

    @model_validator(mode="after")
    def _scope(self) -> LagoAlert:
        wallet = self.alert_type in WALLET_TYPES
        if wallet and not (self.external_customer_id and self.wallet_code):
            raise ValueError(
                f"external_customer_id, wallet_code: required for a {self.alert_type} alert"
            )
        if wallet and self.external_subscription_id:
            raise ValueError(f"external_subscription_id: not for a {self.alert_type} alert")
        if not wallet and not self.external_subscription_id:
            raise ValueError(f"external_subscription_id: required for a {self.alert_type} alert")
        if not wallet and (self.external_customer_id or self.wallet_code):
            raise ValueError(
                f"external_customer_id, wallet_code: only for wallet alerts, not {self.alert_type}"
            )
        metric = self.alert_type.startswith("billable_metric_")
        if metric and not self.billable_metric_code:
            raise ValueError(f"billable_metric_code: required for a {self.alert_type} alert")
        if not metric and self.billable_metric_code:
            raise ValueError(f"billable_metric_code: not for a {self.alert_type} alert")
        if sum(t.recurring for t in self.thresholds) > 1:
            raise ValueError("thresholds: at most one recurring threshold")
        values = [t.value for t in self.thresholds if not t.recurring]
        if len(values) != len(set(values)):
            raise ValueError("thresholds: the values must differ")
        return self

    @property
    def path(self) -> str:
        """The API path of the alerts of its subscription or wallet."""
        if self.external_subscription_id:
            return subscription_path(self.external_subscription_id)
        assert self.external_customer_id and self.wallet_code
        return wallet_path(self.external_customer_id, self.wallet_code)


class LagoConfig(ProviderTable):
    """The ``[lago]`` table. No ``webhook_url`` (see :data:`NO_ENDPOINTS`)."""

    alerts: list[LagoAlert] = Field(default_factory=list)

    @field_validator("webhook_url")
    @classmethod
    def _no_endpoints(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError(NO_ENDPOINTS)
        return value


# -- credentials -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, repr=False)
class LagoCredentials(DeclaredModeCredentials):
    """``LAGO_API_KEY``, ``LAGO_API_URL`` (``api_base``: a self-hosted instance; default Lago
    Cloud) and ``ALERTHOOKS_LAGO_MODE`` (``live``, the default, or ``test``: the key does not
    say)."""

    api_key_env = API_KEY_ENV
    api_base_env = API_URL_ENV
    mode_env = MODE_ENV


def _thresholds(values: Any) -> tuple[tuple[float, bool, str | None], ...]:
    """Thresholds as compared: ``(value, recurring, code)`` sorted; Lago lists values as
    decimal strings (``"1000.0"``)."""
    found = []
    for entry in values if isinstance(values, list) else ():
        fields = entry.model_dump() if isinstance(entry, LagoThreshold) else entry
        if not isinstance(fields, dict):
            continue
        try:
            value = float(fields.get("value"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        found.append((value, bool(fields.get("recurring")), fields.get("code")))
    return tuple(sorted(found, key=lambda t: (t[0], t[1], t[2] or "")))


class LagoAPI(LagoClient):
    """Lago's alert API, read through the subscriptions and wallets the table names."""

    name = "lago"
    updatable: frozenset[str] = frozenset({"name", "thresholds", "billable_metric_code"})
    event = "alert.triggered"
    endpoint_api_version: str | None = None
    endpoint_version_in_place = False
    removed = "deleted"
    #: An existing alert is renamed with the marker and recoded with the key, in place.
    adopt_mode: AdoptMode = "in_place"
    #: What Lago keeps unique: one alert per type (and billable metric) per subscription or wallet.
    identity_fields = ("alert_type", "scope", "billable_metric_code")

    def __init__(
        self,
        api_key: str,
        table: LagoConfig,
        *,
        api_base: str | None = None,
        concurrency: int = 8,
        retry: RetryPolicy | None = None,
        mode: Mode = "live",
    ) -> None:
        self.mode = mode
        self.account = (
            f"{mode} mode ({MODE_ENV}); alerts read per subscription and wallet, webhook "
            "endpoints set in Lago"
        )
        self._paths = sorted({alert.path for alert in table.alerts})
        #: Each listed path's scope, as an entry writes it.
        self._scopes: dict[str, dict[str, str]] = {}
        for alert in table.alerts:
            if alert.external_subscription_id:
                scope = {"external_subscription_id": alert.external_subscription_id}
            else:
                assert alert.external_customer_id and alert.wallet_code
                scope = {
                    "external_customer_id": alert.external_customer_id,
                    "wallet_code": alert.wallet_code,
                }
            self._scopes[alert.path] = scope
        #: Each listed or created alert's own path (its scope and code), by Lago id.
        self._where: dict[str, str] = {}
        super().__init__(api_key, api_base=api_base, concurrency=concurrency, retry=retry)

    def __repr__(self) -> str:
        return f"LagoAPI({self.mode} mode)"

    # -- config side ---------------------------------------------------------------------

    def key_of(self, alert: LagoAlert) -> str:
        """The configured alert's key."""
        return alert.key

    def desired_spec(self, alert: LagoAlert) -> dict[str, Any]:
        """Name (without marker), type, scope (its API path), metric and thresholds."""
        return {
            "name": alert.name,
            "alert_type": alert.alert_type,
            "scope": alert.path,
            "billable_metric_code": alert.billable_metric_code,
            "thresholds": _thresholds(list(alert.thresholds)),
        }

    def check_limits(self, desired: list[LagoAlert], kept_remote: list[RemoteAlert]) -> list[str]:
        """One alert per type (and billable metric) per subscription or wallet."""
        seen: dict[tuple[str, str, str | None], str] = {}
        problems = []
        for alert in desired:
            identity = (alert.path, alert.alert_type, alert.billable_metric_code)
            if identity in seen:
                problems.append(
                    f"lago: alerts {seen[identity]!r} and {alert.key!r} are both "
                    f"{alert.alert_type} on {alert.path}: Lago allows one"
                )
            seen[identity] = alert.key
        return problems

    def replace_removes_first(
        self, alert: LagoAlert, old: RemoteAlert, desired: list[LagoAlert], kept: list[RemoteAlert]
    ) -> bool:
        """When the new alert is on the same subscription or wallet: its code (the key) is
        still the old alert's."""
        return old.spec.get("scope") == alert.path

    # -- existing alerts (adopt, import) -----------------------------------------------------

    def identity(self, alert: LagoAlert) -> tuple[Any, ...]:
        """Type, subscription or wallet, and billable metric."""
        return (alert.alert_type, alert.path, alert.billable_metric_code)

    def remote_identities(self, remote: RemoteAlert) -> tuple[tuple[Any, ...], ...]:
        """The listed alert's type, subscription or wallet, and billable metric."""
        spec = remote.spec
        return ((spec.get("alert_type"), spec.get("scope"), spec.get("billable_metric_code")),)

    def declare(self, remote: RemoteAlert) -> Declaration | None:
        """Name, type, subscription or wallet, billable metric and thresholds."""
        spec = remote.spec
        scope = self._scopes.get(str(spec.get("scope")))
        if scope is None or not spec.get("thresholds"):
            return None
        fields: dict[str, Any] = {
            "name": spec.get("name") or remote.raw.get("code") or str(spec.get("alert_type")),
            "alert_type": spec.get("alert_type"),
            **scope,
        }
        if spec.get("billable_metric_code"):
            fields["billable_metric_code"] = spec["billable_metric_code"]
        fields["thresholds"] = [
            {
                "value": int(value) if value.is_integer() else value,
                **({"code": code} if code else {}),
                **({"recurring": True} if recurring else {}),
            }
            for value, recurring, code in spec["thresholds"]
        ]
        return Declaration(fields)

    async def adopt_alert(self, alert_id: str, alert: LagoAlert, idempotency_key: str) -> None:
        """Write the marker into the alert's name and the key as its code, with the entry's
        thresholds and billable metric."""
        path = self._where.get(alert_id)
        if path is None:
            raise ProviderError(f"lago: adopt alert {alert_id}: not listed in this run")
        what = f"adopt alert {alert_id} as {alert.key!r}"
        body = self._body(alert, create=False)
        body["alert"]["code"] = alert.key
        answer = await self._call("PUT", path, what, json=body)
        if "_invalid" in answer:
            raise ProviderError(f"lago: {what}: HTTP 422: {answer['_invalid']}", status=422)
        self._where[alert_id] = f"{alert.path}/{alert.key}"

    # -- reads ---------------------------------------------------------------------------

    async def list_alerts(self) -> list[RemoteAlert]:
        """Every alert of the subscriptions and wallets the table names, read concurrently."""
        pages = await asyncio.gather(*(self.alerts(path) for path in self._paths))
        found: dict[str, RemoteAlert] = {}
        for path, objects in zip(self._paths, pages, strict=True):
            for obj in objects:
                if isinstance(obj.get("lago_id"), str) and obj["lago_id"] not in found:
                    found[obj["lago_id"]] = self._remote_alert(obj, path)
        return list(found.values())

    def _remote_alert(self, obj: dict[str, Any], path: str) -> RemoteAlert:
        name, key = split_marker(obj.get("name") or "")
        code = obj.get("code")
        self._where[str(obj["lago_id"])] = f"{path}/{code}"
        metric = obj.get("billable_metric")
        return RemoteAlert(
            provider=self.name,
            id=str(obj["lago_id"]),
            key=key,
            enabled=True,
            spec={
                "name": name,
                "alert_type": obj.get("alert_type"),
                "scope": path,
                "billable_metric_code": metric.get("code") if isinstance(metric, dict) else None,
                "thresholds": _thresholds(obj.get("thresholds")),
            },
            raw=obj,
        )

    async def list_endpoints(self) -> list[RemoteEndpoint]:
        """None: the manager does not keep Lago's webhook endpoints."""
        return []

    # -- writes --------------------------------------------------------------------------

    def _body(self, alert: LagoAlert, *, create: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": mark(alert.name, alert.key),
            "thresholds": [
                {"value": t.value, "recurring": t.recurring, **({"code": t.code} if t.code else {})}
                for t in alert.thresholds
            ],
        }
        if alert.billable_metric_code:
            body["billable_metric_code"] = alert.billable_metric_code
        if create:
            body.update(alert_type=alert.alert_type, code=alert.key)
        return {"alert": body}

    async def create_alert(self, alert: LagoAlert, idempotency_key: str) -> RemoteAlert:
        """Create the alert, coded with its key; when Lago answers that the code is taken by an
        alert this key owns (an earlier attempt made it), that alert is returned."""
        what = f"create alert {alert.key!r}"
        answer = await self._call("POST", alert.path, what, json=self._body(alert, create=True))
        if "_invalid" in answer:
            found = await self._call("GET", f"{alert.path}/{alert.key}", what, missing_ok=True)
            made = found.get("alert")
            if isinstance(made, dict) and split_marker(made.get("name") or "")[1] == alert.key:
                return self._remote_alert(made, alert.path)  # live: not a replay of a gone one
            raise ProviderError(f"lago: {what}: HTTP 422: {answer['_invalid']}", status=422)
        made = answer.get("alert")
        if not isinstance(made, dict) or not isinstance(made.get("lago_id"), str):
            raise ProviderError(f"lago: {what}: the answer has no alert.lago_id")
        return self._remote_alert(made, alert.path)

    async def update_alert(self, alert_id: str, alert: LagoAlert, idempotency_key: str) -> None:
        """Change the name, thresholds and billable metric in place."""
        what = f"update alert {alert.key!r}"
        path = self._where.get(alert_id) or f"{alert.path}/{alert.key}"
        answer = await self._call("PUT", path, what, json=self._body(alert, create=False))
        if "_invalid" in answer:
            raise ProviderError(f"lago: {what}: HTTP 422: {answer['_invalid']}", status=422)

    async def set_enabled(self, alert_id: str, enabled: bool, idempotency_key: str) -> None:
        """Never planned: Lago alerts have no enabled flag."""
        raise ProviderError("lago: alerts have no enabled flag")

    async def remove_alert(self, alert_id: str, idempotency_key: str) -> None:
        """Delete (an alert already gone counts as deleted)."""
        path = self._where.get(alert_id)
        if path is None:
            raise ProviderError(f"lago: delete alert {alert_id}: not listed in this run")
        await self._call("DELETE", path, f"delete alert {alert_id}", missing_ok=True)

    async def create_endpoint(self, url: str, idempotency_key: str) -> CreatedEndpoint:
        """Never planned (``[lago]`` has no ``webhook_url``)."""
        raise ProviderError(f"lago: {NO_ENDPOINTS}")

    async def fix_endpoint(self, endpoint: RemoteEndpoint, idempotency_key: str) -> None:
        """Never planned (``[lago]`` has no ``webhook_url``)."""
        raise ProviderError(f"lago: {NO_ENDPOINTS}")


class LagoSpec(DeclaredModeSpec[LagoConfig, LagoCredentials]):
    """Lago as the manager knows it: the ``[lago]`` table and ``LAGO_API_KEY``."""

    name = "lago"
    table = LagoConfig
    credentials = LagoCredentials

    def make_api(
        self,
        credentials: LagoCredentials,
        table: LagoConfig,
        *,
        concurrency: int,
        retry: RetryPolicy | None,
    ) -> ProviderAPI:
        """A :class:`LagoAPI` for the key and the table (whose subscriptions and wallets are
        read)."""
        assert credentials.api_key
        return LagoAPI(
            credentials.api_key,
            table,
            mode=declared_mode(credentials.mode),
            api_base=credentials.api_base,
            concurrency=concurrency,
            retry=retry,
        )


#: The registry's entry for Lago.
SPEC = LagoSpec()
