"""Chargebee: the ``[chargebee]`` table of ``alerts.toml``, the credentials, and the alert and
webhook-endpoint API, over Chargebee's HTTP API (``/api/v2``) through
:class:`alerthooks.apis.chargebee.ChargebeeClient`, which :class:`ChargebeeAPI` extends.

The key is kept in the alert's ``meta`` as ``{"alerthooks": {"key": "..."}}``. ``threshold``
and ``enabled`` change in place; any other change is a replace (create, then delete).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Literal

from pydantic import Field, field_validator

from alerthooks.apis.chargebee import (
    API_BASE_ENV,
    API_KEY_ENV,
    SITE_ENV,
    ChargebeeClient,
    key_from_meta,
    marker_meta,
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
    ProviderCredentials,
    ProviderSpec,
    ProviderTable,
    env_value,
)
from alerthooks.providers.chargebee import PASSWORD_ENV, USERNAME_ENV

CHARGEBEE_NAME_MAX = 50
CHARGEBEE_ID_MAX = 50
CHARGEBEE_DESCRIPTION_MAX = 65_000
#: The payload version of the webhook endpoints the manager creates (the one the receiver
#: reads); an endpoint on another version is moved to it in place.
API_VERSION = "v2"

# -- the [chargebee] table -------------------------------------------------------------------


class Threshold(ConfigModel):
    """A Chargebee threshold: an absolute usage quantity, or a percentage of the entitlement."""

    mode: Literal["absolute", "percentage"]
    value: float = Field(gt=0)

    @field_validator("value", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a number")
        return value


class ChargebeeAlert(AlertEntry):
    """One ``[[chargebee.alerts]]`` entry: a usage-exceeded alert on a metered feature."""

    name: str = Field(min_length=1, max_length=CHARGEBEE_NAME_MAX)
    metered_feature_id: str = Field(min_length=1, max_length=CHARGEBEE_ID_MAX)
    threshold: Threshold
    subscription_id: str | None = Field(default=None, min_length=1, max_length=CHARGEBEE_ID_MAX)
    description: str | None = Field(default=None, max_length=CHARGEBEE_DESCRIPTION_MAX)


class ChargebeeConfig(ProviderTable):
    """The ``[chargebee]`` table."""

    alerts: list[ChargebeeAlert] = Field(default_factory=list)


# -- credentials -----------------------------------------------------------------------------


def chargebee_site_mode(site: str) -> Mode:
    """Chargebee test sites are named ``<name>-test``; every other site is live."""
    return "test" if site.endswith("-test") else "live"


@dataclasses.dataclass(frozen=True, repr=False)
class ChargebeeCredentials(ProviderCredentials):
    """``CHARGEBEE_API_KEY`` and ``CHARGEBEE_SITE``; ``ALERTHOOKS_CHARGEBEE_API_BASE`` to replace
    ``https://{site}.chargebee.com`` (plain ``http://127.0.0.1:PORT`` works, for fakes); and
    ``CHARGEBEE_WEBHOOK_USERNAME`` / ``_PASSWORD``, the Basic auth endpoints are given."""

    shown = frozenset({"site", "api_base"})

    api_key: str | None = None
    site: str | None = None
    api_base: str | None = None
    webhook_username: str | None = None
    webhook_password: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ChargebeeCredentials:
        """Read the five variables."""
        return cls(
            api_key=env_value(env, API_KEY_ENV),
            site=env_value(env, SITE_ENV),
            api_base=env_value(env, API_BASE_ENV),
            webhook_username=env_value(env, USERNAME_ENV),
            webhook_password=env_value(env, PASSWORD_ENV),
        )

    @property
    def webhook_auth(self) -> tuple[str, str] | None:
        """``(username, password)`` when both are set."""
        if self.webhook_username and self.webhook_password:
            return self.webhook_username, self.webhook_password
        return None


ALERT_EVENT = "alert_status_changed"
ALERT_TYPE = "usage_exceeded"


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _format_number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


class ChargebeeAPI(ChargebeeClient):
    """Chargebee's alert and webhook-endpoint API for one site.

    ``api_base`` replaces ``https://{site}.chargebee.com`` (plain ``http://`` works, for
    fakes); at most ``concurrency`` requests are in flight at once. ``webhook_auth`` is the
    (username, password) a created or corrected endpoint sends as Basic auth.
    """

    name = "chargebee"
    updatable: frozenset[str] = frozenset({"threshold"})
    event = ALERT_EVENT
    endpoint_api_version: str | None = API_VERSION
    endpoint_version_in_place = True
    removed = "deleted"
    #: Chargebee's alert update takes only ``threshold`` and ``status`` (``UpdateParams`` in
    #: ``chargebee/models/alert/operations.py`` of chargebee/chargebee-python), so ``meta``
    #: cannot be marked on an alert made by hand: adopting creates the marked alert, then
    #: deletes the old one.
    adopt_mode: AdoptMode = "replace"
    identity_fields = ("metered_feature_id", "subscription_id", "threshold")

    def __init__(
        self,
        api_key: str,
        site: str,
        *,
        api_base: str | None = None,
        concurrency: int = 8,
        retry: RetryPolicy | None = None,
        webhook_auth: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(api_key, site, api_base=api_base, concurrency=concurrency, retry=retry)
        self.mode = chargebee_site_mode(site)
        self.account = f"{self.mode} mode (site {site})"
        self._webhook_auth = webhook_auth

    def __repr__(self) -> str:
        return f"ChargebeeAPI({self.account})"

    # -- config side ---------------------------------------------------------------------

    def key_of(self, alert: ChargebeeAlert) -> str:
        """The configured alert's key."""
        return alert.key

    def desired_spec(self, alert: ChargebeeAlert) -> dict[str, Any]:
        """Name, metered feature, threshold, subscription and description."""
        return {
            "name": alert.name,
            "metered_feature_id": alert.metered_feature_id,
            "threshold": (alert.threshold.mode, float(alert.threshold.value)),
            "subscription_id": alert.subscription_id,
            "description": alert.description,
        }

    def check_limits(
        self, desired: list[ChargebeeAlert], kept_remote: list[RemoteAlert]
    ) -> list[str]:
        """Chargebee documents no per-feature alert limit."""
        return []

    def replace_removes_first(
        self,
        alert: ChargebeeAlert,
        old: RemoteAlert,
        desired: list[ChargebeeAlert],
        kept_remote: list[RemoteAlert],
    ) -> bool:
        """Never: create first, so the alert is never missing."""
        return False

    # -- existing alerts -----------------------------------------------------------------

    def identity(self, alert: ChargebeeAlert) -> tuple[Any, ...]:
        """Metered feature, subscription (None: all) and threshold (mode, value); name and
        description do not count."""
        spec = self.desired_spec(alert)
        return tuple(spec[name] for name in self.identity_fields)

    def remote_identities(self, remote: RemoteAlert) -> tuple[tuple[Any, ...], ...]:
        """A ``usage_exceeded`` alert's metered feature, subscription and threshold."""
        if remote.raw.get("type", ALERT_TYPE) != ALERT_TYPE:
            return ()
        return (tuple(remote.spec.get(name) for name in self.identity_fields),)

    def declare(self, remote: RemoteAlert) -> Declaration | None:
        """Name, metered feature, threshold, subscription and description (``enabled = false``
        for a disabled alert); None for alerts other than ``usage_exceeded``."""
        spec = remote.spec
        mode, value = spec.get("threshold") or (None, None)
        if remote.raw.get("type", ALERT_TYPE) != ALERT_TYPE or mode not in (
            "absolute",
            "percentage",
        ):
            return None
        if not spec.get("metered_feature_id") or not isinstance(value, float):
            return None
        fields: dict[str, Any] = {
            "name": spec.get("name") or f"usage at {_format_number(value)}",
            "metered_feature_id": spec["metered_feature_id"],
            "threshold": {"mode": mode, "value": int(value) if value.is_integer() else value},
        }
        for name in ("subscription_id", "description"):
            if spec.get(name):
                fields[name] = spec[name]
        if not remote.enabled:
            fields["enabled"] = False
        return Declaration(fields)

    async def adopt_alert(self, alert_id: str, alert: ChargebeeAlert, idempotency_key: str) -> None:
        """Never planned: Chargebee cannot set ``meta`` on an existing alert."""
        raise ProviderError("chargebee: an alert's meta cannot be updated; adopting replaces it")

    # -- reads ---------------------------------------------------------------------------

    async def list_alerts(self) -> list[RemoteAlert]:
        """Every alert on the site, 100 per page."""
        return [self._remote_alert(obj) for obj in await self.alerts()]

    def _remote_alert(self, obj: dict[str, Any]) -> RemoteAlert:
        threshold = obj.get("threshold") or {}
        return RemoteAlert(
            provider=self.name,
            id=str(obj["id"]),
            key=key_from_meta(obj.get("meta")),
            enabled=obj.get("status") != "disabled",
            spec={
                "name": obj.get("name"),
                "metered_feature_id": obj.get("metered_feature_id"),
                "threshold": (threshold.get("mode"), _number(threshold.get("value"))),
                "subscription_id": obj.get("subscription_id") or None,
                "description": obj.get("description") or None,
            },
            raw=obj,
        )

    async def list_endpoints(self) -> list[RemoteEndpoint]:
        """Every webhook endpoint on the site."""
        endpoints = []
        for entry in await self._list("/webhook_endpoints", "list webhook endpoints"):
            obj = entry.get("webhook_endpoint")
            if isinstance(obj, dict):
                endpoints.append(
                    RemoteEndpoint(
                        provider=self.name,
                        id=str(obj["id"]),
                        url=obj.get("url") or "",
                        events=tuple(obj.get("enabled_events") or ()),
                        enabled=not obj.get("disabled", False),
                        api_version=obj.get("api_version"),
                    )
                )
        return endpoints

    # -- writes --------------------------------------------------------------------------

    async def create_alert(self, alert: ChargebeeAlert, idempotency_key: str) -> RemoteAlert:
        """Create the alert with the ownership marker in ``meta`` (created enabled)."""
        params = {
            "type": ALERT_TYPE,
            "name": alert.name,
            "metered_feature_id": alert.metered_feature_id,
            "threshold": {
                "mode": alert.threshold.mode,
                "value": _format_number(alert.threshold.value),
            },
            "subscription_id": alert.subscription_id,
            "description": alert.description,
            "meta": marker_meta(alert.key),
        }
        body = await self._call(
            "POST", "/alerts", f"create alert {alert.key!r}", data=params, key=idempotency_key
        )
        return replace(self._remote_alert(body["alert"]), replayed=bool(body.get("_replayed")))

    async def update_alert(
        self, alert_id: str, alert: ChargebeeAlert, idempotency_key: str
    ) -> None:
        """Set threshold and status in place."""
        params = {
            "threshold": {
                "mode": alert.threshold.mode,
                "value": _format_number(alert.threshold.value),
            },
            "status": "enabled" if alert.enabled else "disabled",
        }
        await self._call(
            "POST",
            f"/alerts/{alert_id}",
            f"update alert {alert_id}",
            data=params,
            key=idempotency_key,
        )

    async def set_enabled(self, alert_id: str, enabled: bool, idempotency_key: str) -> None:
        """Enable or disable."""
        params = {"status": "enabled" if enabled else "disabled"}
        await self._call(
            "POST",
            f"/alerts/{alert_id}",
            f"update alert {alert_id}",
            data=params,
            key=idempotency_key,
        )

    async def remove_alert(self, alert_id: str, idempotency_key: str) -> None:
        """Delete."""
        await self._call(
            "POST",
            f"/alerts/{alert_id}/delete",
            f"delete alert {alert_id}",
            key=idempotency_key,
            missing_ok=True,
        )

    async def create_endpoint(self, url: str, idempotency_key: str) -> CreatedEndpoint:
        """Create an endpoint sending ``alert_status_changed`` with Basic auth."""
        params: dict[str, Any] = {
            "name": "alerthooks",
            "url": url,
            "api_version": API_VERSION,
            "enabled_events": [ALERT_EVENT],
        }
        params.update(self._auth_params())
        body = await self._call(
            "POST",
            "/webhook_endpoints",
            f"create webhook endpoint {url}",
            data=params,
            key=idempotency_key,
        )
        return CreatedEndpoint(id=str(body["webhook_endpoint"]["id"]))

    async def fix_endpoint(self, endpoint: RemoteEndpoint, idempotency_key: str) -> None:
        """Enable the endpoint, add ``alert_status_changed``, move it to :data:`API_VERSION`
        and set Basic auth."""
        events = list(endpoint.events)
        if ALERT_EVENT not in events:
            events.append(ALERT_EVENT)
        params: dict[str, Any] = {"enabled_events": events, "disabled": False}
        if endpoint.api_version != API_VERSION:
            params["api_version"] = API_VERSION
        params.update(self._auth_params())
        await self._call(
            "POST",
            f"/webhook_endpoints/{endpoint.id}",
            f"update webhook endpoint {endpoint.id}",
            data=params,
            key=idempotency_key,
        )

    def _auth_params(self) -> dict[str, str]:
        if self._webhook_auth is None:
            return {}
        username, password = self._webhook_auth
        return {"basic_auth_username": username, "basic_auth_password": password}


class ChargebeeSpec(ProviderSpec[ChargebeeConfig, ChargebeeCredentials]):
    """Chargebee as the manager knows it: the ``[chargebee]`` table, ``CHARGEBEE_API_KEY`` and
    ``CHARGEBEE_SITE``, and the Basic auth given to endpoints (no secret is revealed)."""

    name = "chargebee"
    table = ChargebeeConfig
    credentials = ChargebeeCredentials

    def check_credentials(
        self, credentials: ChargebeeCredentials, table: ChargebeeConfig
    ) -> list[str]:
        """Key and site are set; Basic auth credentials too when ``webhook_url`` is."""
        problems = []
        if not credentials.api_key:
            problems.append(f"{API_KEY_ENV}: not set ([chargebee] is configured)")
        if not credentials.site:
            problems.append(f"{SITE_ENV}: not set ([chargebee] is configured)")
        if table.webhook_url and credentials.webhook_auth is None:
            problems.append(
                f"{USERNAME_ENV}/{PASSWORD_ENV}: not set "
                "(chargebee.webhook_url needs Basic auth credentials)"
            )
        return problems

    def mode(self, credentials: ChargebeeCredentials) -> Mode:
        """From the site's name (see :func:`chargebee_site_mode`)."""
        return chargebee_site_mode(credentials.site or "")

    def make_api(
        self,
        credentials: ChargebeeCredentials,
        table: ChargebeeConfig,
        *,
        concurrency: int,
        retry: RetryPolicy | None,
    ) -> ProviderAPI:
        """A :class:`ChargebeeAPI` for the site."""
        assert credentials.api_key and credentials.site
        return ChargebeeAPI(
            credentials.api_key,
            credentials.site,
            api_base=credentials.api_base,
            concurrency=concurrency,
            retry=retry,
            webhook_auth=credentials.webhook_auth,
        )


#: The registry's entry for Chargebee.
SPEC = ChargebeeSpec()
