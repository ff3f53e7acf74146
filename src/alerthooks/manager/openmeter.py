"""OpenMeter: the ``[openmeter]`` table of ``alerts.toml``, the credentials, and the notification
rule API (``/api/v1/notification/rules`` in openmeterio/openmeter ``api/openapi.yaml``) over
:class:`~alerthooks.apis.openmeter.OpenMeterClient`.

A managed alert is an ``entitlements.balance.threshold`` rule sending to the table's
``channel_id`` (a webhook channel, whose signing secret the receiver takes as
``OPENMETER_WEBHOOK_SECRET``). Ownership lives in the rule's ``metadata``
(``{"alerthooks_key": <key>}``), which OpenMeter keeps and lists; the name carries the
`` [alerthooks:<key>]`` marker too. Every field is changed in place (``PUT`` replaces the rule),
enabling and disabling included. OpenMeter takes no idempotency keys: a create whose answer was
lost is looked for (by the attempt's token in ``metadata``) before it is sent again.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from alerthooks.apis.http import TransientError, send, with_retries
from alerthooks.apis.openmeter import API_BASE_ENV, API_KEY_ENV, OpenMeterClient
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

#: Whether the token reaches live or test data (``live``, the default, or ``test``).
MODE_ENV = "ALERTHOOKS_OPENMETER_MODE"
RULES = "/api/v1/notification/rules"
RULE_TYPE = "entitlements.balance.threshold"
OWNER = "alerthooks_key"
ATTEMPT = "alerthooks_attempt"
NO_ENDPOINTS = (
    "give the webhook channel the rules send to as channel_id (create it in OpenMeter: "
    "Notifications → Channels) and its signing secret to the receiver as OPENMETER_WEBHOOK_SECRET"
)


class OpenMeterThreshold(ConfigModel):
    """One threshold: ``value`` and ``type`` (``usage_value``, ``usage_percentage`` or
    ``balance_value``)."""

    value: float
    type: Literal["usage_value", "usage_percentage", "balance_value"] = "usage_value"

    @field_validator("value", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a number")
        return value


class OpenMeterAlert(AlertEntry):
    """One ``[[openmeter.alerts]]`` entry: a balance-threshold rule on ``features`` (ids or
    keys; none: every feature)."""

    name: str = Field(min_length=1)
    thresholds: list[OpenMeterThreshold] = Field(min_length=1, max_length=10)
    features: list[str] = Field(default_factory=list)


class OpenMeterConfig(ProviderTable):
    """The ``[openmeter]`` table: ``channel_id`` is the webhook channel every rule sends to."""

    channel_id: str | None = Field(default=None, min_length=1)
    alerts: list[OpenMeterAlert] = Field(default_factory=list)

    @field_validator("webhook_url")
    @classmethod
    def _no_endpoints(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError(NO_ENDPOINTS)
        return value

    @model_validator(mode="after")
    def _channel(self) -> OpenMeterConfig:
        if self.alerts and not self.channel_id:
            raise ValueError(f"channel_id: required: {NO_ENDPOINTS}")
        return self


@dataclasses.dataclass(frozen=True, repr=False)
class OpenMeterCredentials(DeclaredModeCredentials):
    """``OPENMETER_API_KEY``, ``ALERTHOOKS_OPENMETER_API_BASE`` (a self-hosted instance;
    default ``https://openmeter.cloud``) and ``ALERTHOOKS_OPENMETER_MODE``."""

    api_key_env = API_KEY_ENV
    api_base_env = API_BASE_ENV
    mode_env = MODE_ENV


def _thresholds(values: Any) -> tuple[tuple[str, float], ...]:
    found = []
    for entry in values if isinstance(values, list) else ():
        fields = entry.model_dump() if isinstance(entry, OpenMeterThreshold) else entry
        if isinstance(fields, dict) and isinstance(fields.get("value"), int | float):
            found.append((str(fields.get("type")), float(fields["value"])))
    return tuple(sorted(found))


class OpenMeterAPI(OpenMeterClient):
    """OpenMeter's notification rules, every one listed (disabled ones included)."""

    name = "openmeter"
    updatable: frozenset[str] = frozenset({"name", "thresholds", "features", "channel"})
    event = RULE_TYPE
    endpoint_api_version: str | None = None
    endpoint_version_in_place = False
    removed = "deleted"
    #: An existing rule gets the ownership metadata and the marker, in place.
    adopt_mode: AdoptMode = "in_place"
    #: A rule is what it watches: its thresholds on its features.
    identity_fields = ("thresholds", "features")

    def __init__(
        self,
        api_key: str,
        table: OpenMeterConfig,
        *,
        api_base: str | None = None,
        concurrency: int = 8,
        retry: RetryPolicy | None = None,
        mode: Mode = "live",
    ) -> None:
        self.mode = mode
        self.account = f"{mode} mode ({MODE_ENV}); rules send to channel {table.channel_id}"
        self._channel = table.channel_id
        super().__init__(api_key, api_base=api_base, concurrency=concurrency, retry=retry)

    def __repr__(self) -> str:
        return f"OpenMeterAPI({self.mode} mode)"

    def key_of(self, alert: OpenMeterAlert) -> str:
        """The configured alert's key."""
        return alert.key

    def desired_spec(self, alert: OpenMeterAlert) -> dict[str, Any]:
        """Name (without marker), thresholds, features and channel."""
        return {
            "name": alert.name,
            "thresholds": _thresholds(list(alert.thresholds)),
            "features": tuple(sorted(alert.features)),
            "channel": self._channel,
        }

    def check_limits(
        self, desired: list[OpenMeterAlert], kept_remote: list[RemoteAlert]
    ) -> list[str]:
        """OpenMeter documents no rule limit."""
        return []

    def replace_removes_first(
        self,
        alert: OpenMeterAlert,
        old: RemoteAlert,
        desired: list[OpenMeterAlert],
        kept: list[RemoteAlert],
    ) -> bool:
        """Never (and never planned: every field changes in place)."""
        return False

    def identity(self, alert: OpenMeterAlert) -> tuple[Any, ...]:
        """Thresholds and features."""
        return (_thresholds(list(alert.thresholds)), tuple(sorted(alert.features)))

    def remote_identities(self, remote: RemoteAlert) -> tuple[tuple[Any, ...], ...]:
        """The rule's thresholds and features."""
        return ((remote.spec.get("thresholds"), remote.spec.get("features")),)

    def declare(self, remote: RemoteAlert) -> Declaration | None:
        """Name, thresholds, features (``enabled = false`` for a disabled rule); a note when the
        rule sends to another channel than the table's."""
        spec = remote.spec
        if not spec.get("thresholds"):
            return None
        fields: dict[str, Any] = {
            "name": spec.get("name") or "balance threshold",
            "thresholds": [
                {"value": int(v) if v.is_integer() else v, "type": kind}
                for kind, v in spec["thresholds"]
            ],
            "features": list(spec.get("features") or ()),
        }
        if not remote.enabled:
            fields["enabled"] = False
        notes: tuple[str, ...] = ()
        if spec.get("channel") != self._channel:
            notes = (f"sends to channel {spec.get('channel')}: apply moves it to channel_id",)
        return Declaration(fields, notes)

    async def adopt_alert(self, alert_id: str, alert: OpenMeterAlert, idempotency_key: str) -> None:
        """Write the ownership metadata and the marker on the rule, with the entry's fields."""
        await self._call(
            "PUT",
            f"{RULES}/{alert_id}",
            f"adopt rule {alert_id} as {alert.key!r}",
            json=self._body(alert),
        )

    async def list_alerts(self) -> list[RemoteAlert]:
        """Every balance-threshold rule, disabled ones included, all pages."""
        found: list[RemoteAlert] = []
        params = {"includeDisabled": "true"}
        async for items in self.pages(RULES, "list rules", params):
            found.extend(self._remote(r) for r in items if r.get("type") == RULE_TYPE)
        return found

    def _remote(self, rule: dict[str, Any]) -> RemoteAlert:
        name, marked = split_marker(rule.get("name") or "")
        metadata = rule.get("metadata")
        owner = metadata.get(OWNER) if isinstance(metadata, dict) else None
        channels = [c.get("id") for c in rule.get("channels") or () if isinstance(c, dict)]
        features = [
            f.get("key") or f.get("id") for f in rule.get("features") or () if isinstance(f, dict)
        ]
        return RemoteAlert(
            provider=self.name,
            id=str(rule.get("id")),
            key=owner if isinstance(owner, str) else marked,
            enabled=not rule.get("disabled", False),
            spec={
                "name": name,
                "thresholds": _thresholds(rule.get("thresholds")),
                "features": tuple(sorted(str(f) for f in features if f)),
                "channel": channels[0] if len(channels) == 1 else tuple(channels),
            },
            raw=rule,
        )

    def _body(self, alert: OpenMeterAlert, token: str | None = None) -> dict[str, Any]:
        metadata = {OWNER: alert.key, **({ATTEMPT: token} if token else {})}
        return {
            "type": RULE_TYPE,
            "name": mark(alert.name, alert.key),
            "disabled": not alert.enabled,
            "thresholds": [t.model_dump() for t in alert.thresholds],
            "features": list(alert.features),
            "channels": [self._channel],
            "metadata": metadata,
        }

    async def create_alert(self, alert: OpenMeterAlert, idempotency_key: str) -> RemoteAlert:
        """Create the rule; a retry first looks for the rule an earlier attempt made."""
        token = hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]
        what = f"create rule {alert.key!r}"
        body = self._body(alert, token)

        async def attempt(number: int) -> dict[str, Any]:
            if number:
                async for items in self.pages(RULES, what, {"includeDisabled": "true"}):
                    for rule in items:
                        metadata = rule.get("metadata")
                        if isinstance(metadata, dict) and metadata.get(ATTEMPT) == token:
                            return rule
            response = await send(self._client, self._limit, "POST", RULES, json=body)
            if response.status_code >= 400:
                raise ProviderError(
                    f"openmeter: {what}: HTTP {response.status_code}", status=response.status_code
                )
            answer = response.json()
            if not isinstance(answer, dict):
                raise TransientError("unexpected answer")
            return answer

        made = await with_retries(attempt, self._retry, f"openmeter: {what}")
        return self._remote(made)

    async def update_alert(
        self, alert_id: str, alert: OpenMeterAlert, idempotency_key: str
    ) -> None:
        """Replace the rule's fields (``PUT``), its enabled state included."""
        await self._call(
            "PUT", f"{RULES}/{alert_id}", f"update rule {alert.key!r}", json=self._body(alert)
        )

    async def set_enabled(self, alert_id: str, enabled: bool, idempotency_key: str) -> None:
        """Enable or disable the rule, keeping its other fields."""
        what = f"{'enable' if enabled else 'disable'} rule {alert_id}"
        rule = await self._call("GET", f"{RULES}/{alert_id}", what)
        body = {
            "type": rule.get("type"),
            "name": rule.get("name"),
            "disabled": not enabled,
            "thresholds": rule.get("thresholds") or [],
            "features": [f.get("id") for f in rule.get("features") or () if isinstance(f, dict)],
            "channels": [c.get("id") for c in rule.get("channels") or () if isinstance(c, dict)],
            "metadata": rule.get("metadata") or {},
        }
        await self._call("PUT", f"{RULES}/{alert_id}", what, json=body)

    async def remove_alert(self, alert_id: str, idempotency_key: str) -> None:
        """Delete (a rule already gone counts as deleted)."""
        await self._call(
            "DELETE", f"{RULES}/{alert_id}", f"delete rule {alert_id}", missing_ok=True
        )

    async def list_endpoints(self) -> list[RemoteEndpoint]:
        """None: the channel is given as ``channel_id``."""
        return []

    async def create_endpoint(self, url: str, idempotency_key: str) -> CreatedEndpoint:
        """Never planned (``[openmeter]`` has no ``webhook_url``)."""
        raise ProviderError(f"openmeter: {NO_ENDPOINTS}")

    async def fix_endpoint(self, endpoint: RemoteEndpoint, idempotency_key: str) -> None:
        """Never planned (``[openmeter]`` has no ``webhook_url``)."""
        raise ProviderError(f"openmeter: {NO_ENDPOINTS}")


class OpenMeterSpec(DeclaredModeSpec[OpenMeterConfig, OpenMeterCredentials]):
    """OpenMeter as the manager knows it: the ``[openmeter]`` table and ``OPENMETER_API_KEY``."""

    name = "openmeter"
    table = OpenMeterConfig
    credentials = OpenMeterCredentials

    def make_api(
        self,
        credentials: OpenMeterCredentials,
        table: OpenMeterConfig,
        *,
        concurrency: int,
        retry: RetryPolicy | None,
    ) -> ProviderAPI:
        """An :class:`OpenMeterAPI` for the token and the table's channel."""
        assert credentials.api_key
        return OpenMeterAPI(
            credentials.api_key,
            table,
            mode=declared_mode(credentials.mode),
            api_base=credentials.api_base,
            concurrency=concurrency,
            retry=retry,
        )


#: The registry's entry for OpenMeter.
SPEC = OpenMeterSpec()
