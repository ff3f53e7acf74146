"""Metronome: the ``[metronome]`` table of ``alerts.toml``, the credentials, and the threshold
notification (alert) API, over Metronome's HTTP API with one shared ``httpx.AsyncClient``.

Metronome alerts cannot be edited, enabled or disabled through the API (``resources/v1/
alerts.py`` in Metronome-Industries/metronome-python has ``create`` and ``archive`` only), so
every change is a replace: create the new alert, then archive the old one
(``POST /v1/alerts/archive``).

Ownership lives in the alert's ``uniqueness_key``, which Metronome keeps and lists:
``alerthooks:<key>:<fields>:<attempt>``. ``<fields>`` is a short hash of each field Metronome does
not list back (``billable_metric_id``, ``customer_id``, ``credit_type_id``), so a change to one
of them is still seen; ``<attempt>`` comes from the apply's idempotency key, so a retried create
answers 409 (Metronome refuses a used uniqueness key) and finds the alert it made instead of
making a second one. The name carries the ``[alerthooks:<key>]`` marker too, which gives
webhooks an ``alert_key``.

Metronome lists alerts per customer only (``POST /v1/customer-alerts/list``): the manager reads
the customers the entries name, and alerts for all customers through ``lookup_customer_id``.
Managed alerts of customers no entry names any more are not seen, so ``--prune`` cannot archive
them. Metronome's API has no webhook endpoints (they are set in the Metronome app), so
``[metronome]`` takes no ``webhook_url``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
from typing import Any, Literal

from pydantic import Field, StrictBool, field_validator, model_validator

from alerthooks.apis.metronome import API_BASE_ENV, API_KEY_ENV, MetronomeClient
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
    DeclaredModeCredentials,
    DeclaredModeSpec,
    ProviderTable,
    declared_mode,
)
from alerthooks.marker import KEY_PATTERN, mark, split_marker

#: Whether the token reaches live or test data (``live`` or ``test``, default ``live``):
#: Metronome tokens do not say, so ``apply`` needs ``--live`` unless this says ``test``.
MODE_ENV = "ALERTHOOKS_METRONOME_MODE"
#: The fields Metronome does not list back: compared through the uniqueness key's hashes.
HIDDEN_FIELDS = ("billable_metric_id", "customer_id", "credit_type_id")
#: What a hidden field shows as in the plan when its hash says it changed.
CHANGED = "(other)"
NO_ENDPOINTS = (
    "Metronome's API has no webhook endpoints: add the endpoint in the Metronome app "
    "(Connections → Webhooks) and give the receiver its secret as METRONOME_WEBHOOK_SECRET"
)
_LISTED_STATUSES = ["ENABLED", "DISABLED"]
_SEEN_BY = "_seen_by"  # in RemoteAlert.raw: the customers whose lists showed the alert
_HASH = 6
_UNIQUENESS = re.compile(
    rf"^alerthooks:(?P<key>{KEY_PATTERN}):(?P<fields>[0-9a-f]{{{_HASH * len(HIDDEN_FIELDS)}}})"
    r":(?P<attempt>[0-9a-f]+)$"
)

MetronomeAlertType = Literal[
    "low_credit_balance_reached",
    "spend_threshold_reached",
    "monthly_invoice_total_spend_threshold_reached",
    "low_remaining_days_in_plan_reached",
    "low_remaining_credit_percentage_reached",
    "usage_threshold_reached",
    "low_remaining_days_for_commit_segment_reached",
    "low_remaining_commit_balance_reached",
    "low_remaining_commit_percentage_reached",
    "low_remaining_days_for_contract_credit_segment_reached",
    "low_remaining_contract_credit_balance_reached",
    "low_remaining_contract_credit_percentage_reached",
    "low_remaining_contract_credit_and_commit_balance_reached",
    "invoice_total_reached",
]

# -- the [metronome] table -------------------------------------------------------------------


class MetronomeAlert(AlertEntry):
    """One ``[[metronome.alerts]]`` entry: a threshold notification for one customer
    (``customer_id``) or for all of them."""

    name: str = Field(min_length=1)
    alert_type: MetronomeAlertType
    threshold: float
    billable_metric_id: str | None = Field(default=None, min_length=1)
    customer_id: str | None = Field(default=None, min_length=1)
    credit_type_id: str | None = Field(default=None, min_length=1)
    enabled: StrictBool = True

    @field_validator("threshold", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a number")
        return value

    @field_validator("enabled")
    @classmethod
    def _always_enabled(cls, value: bool) -> bool:
        if not value:
            raise ValueError(
                "Metronome alerts cannot be disabled through its API: remove the entry "
                "(apply --prune archives the alert)"
            )
        return value

    @model_validator(mode="after")
    def _metric(self) -> MetronomeAlert:
        if self.alert_type == "usage_threshold_reached" and not self.billable_metric_id:
            raise ValueError("billable_metric_id: required for a usage_threshold_reached alert")
        return self


class MetronomeConfig(ProviderTable):
    """The ``[metronome]`` table: ``lookup_customer_id`` is a customer through whom alerts for
    all customers (entries without ``customer_id``) are read, as Metronome lists alerts per
    customer only. No ``webhook_url`` (see :data:`NO_ENDPOINTS`)."""

    lookup_customer_id: str | None = Field(default=None, min_length=1)
    alerts: list[MetronomeAlert] = Field(default_factory=list)

    @field_validator("webhook_url")
    @classmethod
    def _no_endpoints(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError(NO_ENDPOINTS)
        return value

    @model_validator(mode="after")
    def _lookup_for_global_alerts(self) -> MetronomeConfig:
        if self.lookup_customer_id is None:
            for index, alert in enumerate(self.alerts):
                if alert.customer_id is None:
                    raise ValueError(
                        f"lookup_customer_id: required by metronome.alerts[{index}] (key "
                        f"{alert.key!r}), an alert for all customers: Metronome lists alerts "
                        "per customer only, so name a customer to read them through"
                    )
        return self


# -- credentials -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, repr=False)
class MetronomeCredentials(DeclaredModeCredentials):
    """``METRONOME_API_KEY`` (a bearer token), and ``ALERTHOOKS_METRONOME_API_BASE`` to replace
    ``https://api.metronome.com`` (plain ``http://127.0.0.1:PORT`` works, for fakes), and
    ``ALERTHOOKS_METRONOME_MODE`` (``live``, the default, or ``test``: the token does not say)."""

    api_key_env = API_KEY_ENV
    api_base_env = API_BASE_ENV
    mode_env = MODE_ENV


def _field_hash(value: str | None) -> str:
    return hashlib.sha256((value or "").encode()).hexdigest()[:_HASH]


def fields_hash(alert: MetronomeAlert) -> str:
    """The hashes of the alert's :data:`HIDDEN_FIELDS`, one after another."""
    return "".join(_field_hash(getattr(alert, name)) for name in HIDDEN_FIELDS)


def uniqueness_key(alert: MetronomeAlert, idempotency_key: str) -> str:
    """``alerthooks:<key>:<fields>:<attempt>`` (see the module's docstring)."""
    attempt = hashlib.sha256(idempotency_key.encode()).hexdigest()[:12]
    return f"alerthooks:{alert.key}:{fields_hash(alert)}:{attempt}"


def split_uniqueness_key(value: Any) -> tuple[str, str] | None:
    """``(key, fields hash)`` from a uniqueness key this module wrote, else ``None``."""
    match = _UNIQUENESS.match(value) if isinstance(value, str) else None
    return (match["key"], match["fields"]) if match else None


class MetronomeAPI(MetronomeClient):
    """Metronome's alert API, read through the customers the table names.

    ``api_base`` replaces ``https://api.metronome.com`` (plain ``http://`` works, for fakes);
    at most ``concurrency`` requests are in flight at once.
    """

    name = "metronome"
    updatable: frozenset[str] = frozenset()
    event = "alerts.usage_threshold_reached"
    endpoint_api_version: str | None = None
    endpoint_version_in_place = False
    removed = "archived"
    #: Metronome alerts cannot be edited (``resources/v1/alerts.py`` in metronome-python has
    #: create and archive only): adopting creates the marked alert, then archives the old one.
    adopt_mode: AdoptMode = "replace"
    #: What Metronome lists of an alert that identifies it; its customer and billable metric
    #: are not listed back (``types/v1/customers/customer_alert.py``).
    identity_fields = ("alert_type", "threshold")

    def __init__(
        self,
        api_key: str,
        table: MetronomeConfig,
        *,
        api_base: str | None = None,
        concurrency: int = 8,
        retry: RetryPolicy | None = None,
        mode: Mode = "live",
    ) -> None:
        # Metronome tokens do not say whether they reach the sandbox or production: ``mode``
        # comes from ALERTHOOKS_METRONOME_MODE (live by default).
        self.mode = mode
        self.account = (
            f"{mode} mode ({MODE_ENV}); alerts read per customer, webhook endpoints set in the "
            "Metronome app"
        )
        self._lookup = table.lookup_customer_id
        self._by_key = {alert.key: alert for alert in table.alerts}
        customers = {a.customer_id for a in table.alerts if a.customer_id}
        if self._lookup:
            customers.add(self._lookup)
        self._customers = sorted(customers)
        super().__init__(api_key, api_base=api_base, concurrency=concurrency, retry=retry)

    def __repr__(self) -> str:
        return f"MetronomeAPI({self.mode} mode)"

    # -- config side ---------------------------------------------------------------------

    def key_of(self, alert: MetronomeAlert) -> str:
        """The configured alert's key."""
        return alert.key

    def desired_spec(self, alert: MetronomeAlert) -> dict[str, Any]:
        """Name (without marker), type, threshold, the hidden fields, and ``status``."""
        return {
            "name": alert.name,
            "alert_type": alert.alert_type,
            "threshold": float(alert.threshold),
            "billable_metric_id": alert.billable_metric_id,
            "customer_id": alert.customer_id,
            "credit_type_id": alert.credit_type_id,
            "status": "enabled",
        }

    def check_limits(
        self, desired: list[MetronomeAlert], kept_remote: list[RemoteAlert]
    ) -> list[str]:
        """Metronome documents no alert limit."""
        return []

    def replace_removes_first(
        self,
        alert: MetronomeAlert,
        old: RemoteAlert,
        desired: list[MetronomeAlert],
        kept: list[RemoteAlert],
    ) -> bool:
        """Never: create first, so the alert is never missing."""
        return False

    # -- reads ---------------------------------------------------------------------------

    async def list_alerts(self) -> list[RemoteAlert]:
        """Every enabled and disabled alert the named customers see (their own and those for
        all customers), customers read concurrently."""
        pages = await asyncio.gather(
            *(self.customer_alerts(customer, _LISTED_STATUSES) for customer in self._customers)
        )
        seen: dict[str, RemoteAlert] = {}
        seen_by: dict[str, list[str]] = {}
        for customer, objects in zip(self._customers, pages, strict=True):
            for obj in objects:
                if isinstance(obj.get("id"), str):
                    seen_by.setdefault(obj["id"], []).append(customer)
                    if obj["id"] not in seen:
                        seen[obj["id"]] = self._remote_alert(obj)
        # Which customers' lists showed each alert: the only hint of its scope.
        return [
            dataclasses.replace(r, raw={**r.raw, _SEEN_BY: tuple(seen_by[id])})
            for id, r in seen.items()
        ]

    def _remote_alert(self, obj: dict[str, Any]) -> RemoteAlert:
        name, _ = split_marker(obj.get("name") or "")
        owned = split_uniqueness_key(obj.get("uniqueness_key"))
        key, hashes = owned if owned else (None, "")
        hidden: dict[str, Any] = dict.fromkeys(HIDDEN_FIELDS, CHANGED)
        configured = self._by_key.get(key) if key else None
        if configured is not None:
            for index, field in enumerate(HIDDEN_FIELDS):
                value = getattr(configured, field)
                if hashes[index * _HASH : (index + 1) * _HASH] == _field_hash(value):
                    hidden[field] = value
        threshold = obj.get("threshold")
        credit_type = obj.get("credit_type")
        return RemoteAlert(
            provider=self.name,
            id=str(obj["id"]),
            key=key,
            enabled=True,  # a disabled one shows as status "disabled": a replace re-enables it
            spec={
                "name": name,
                "alert_type": obj.get("type"),
                "threshold": float(threshold) if isinstance(threshold, int | float) else None,
                **hidden,
                "status": obj.get("status"),
            },
            raw={**obj, "credit_type_id": _id(credit_type)},
        )

    async def read_whole_account(self) -> None:
        """Read the alerts every customer sees from now on, not only the customers the table
        names (``GET /v1/customers``, all pages)."""
        self._customers = sorted({*self._customers, *await self.customer_ids()})

    # -- existing alerts -----------------------------------------------------------------

    def identity(self, alert: MetronomeAlert) -> tuple[Any, ...]:
        """Type, threshold, the customer whose list shows it (``lookup_customer_id`` for an
        entry for all customers) and the credit type (None: not named)."""
        return (
            alert.alert_type,
            float(alert.threshold),
            alert.customer_id or self._lookup,
            alert.credit_type_id,
        )

    def remote_identities(self, remote: RemoteAlert) -> tuple[tuple[Any, ...], ...]:
        """Type and threshold, with each customer whose list shows the alert, its credit type
        or none. Metronome does not list an alert's customer or billable metric, so two alerts
        that differ only there look alike."""
        kind, threshold = remote.spec.get("alert_type"), remote.spec.get("threshold")
        credits = {remote.raw.get("credit_type_id"), None}
        return tuple(
            (kind, threshold, customer, credit)
            for customer in remote.raw.get(_SEEN_BY) or ()
            for credit in credits
        )

    def declare(self, remote: RemoteAlert) -> Declaration | None:
        """Name, type, threshold and credit type; the customer guessed from which customers'
        lists show the alert (said in a note); None for a disabled alert (the manager keeps
        Metronome alerts enabled)."""
        spec = remote.spec
        threshold = spec.get("threshold")
        if spec.get("status") != "enabled" or not isinstance(threshold, float):
            return None
        fields: dict[str, Any] = {
            "name": spec.get("name") or f"{spec.get('alert_type')} at {threshold:g}",
            "alert_type": spec.get("alert_type"),
            "threshold": int(threshold) if threshold.is_integer() else threshold,
        }
        seen = list(remote.raw.get(_SEEN_BY) or ())
        notes = []
        if len(seen) == 1 and (seen[0] != self._lookup or len(self._customers) > 1):
            fields["customer_id"] = seen[0]
            notes.append(
                f"customer_id: Metronome does not list an alert's customer; only {seen[0]}'s "
                "list shows it"
            )
        else:
            notes.append(
                "customer_id: Metronome does not list an alert's customer; declared for all "
                f"customers as {', '.join(seen) or 'no customer'} see it: check before --adopt"
            )
        if remote.raw.get("credit_type_id"):
            fields["credit_type_id"] = remote.raw["credit_type_id"]
        if spec.get("alert_type") == "usage_threshold_reached":
            notes.append(
                "billable_metric_id: Metronome does not list it; add it (required for "
                "usage_threshold_reached)"
            )
        return Declaration(fields, tuple(notes))

    async def adopt_alert(self, alert_id: str, alert: MetronomeAlert, idempotency_key: str) -> None:
        """Never planned: Metronome alerts cannot be edited (adopting replaces them)."""
        raise ProviderError("metronome: alerts cannot be edited; adopting replaces them")

    async def list_endpoints(self) -> list[RemoteEndpoint]:
        """None: Metronome's API has no webhook endpoints."""
        return []

    # -- writes --------------------------------------------------------------------------

    async def create_alert(self, alert: MetronomeAlert, idempotency_key: str) -> RemoteAlert:
        """Create the alert with its uniqueness key; when Metronome answers 409 (the key is
        used: an earlier attempt made it), the alert made then is returned, ``replayed`` when
        it has been archived since."""
        unique = uniqueness_key(alert, idempotency_key)
        body: dict[str, Any] = {
            "alert_type": alert.alert_type,
            "name": mark(alert.name, alert.key),
            "threshold": alert.threshold,
            "uniqueness_key": unique,
        }
        for field in HIDDEN_FIELDS:
            if getattr(alert, field) is not None:
                body[field] = getattr(alert, field)
        what = f"create alert {alert.key!r}"
        answer = await self._call("POST", "/v1/alerts/create", what, json=body, conflict_ok=True)
        if answer.get("_conflict"):
            customer = alert.customer_id or self._lookup
            assert customer is not None
            made = [
                a
                for a in await self.customer_alerts(customer, [*_LISTED_STATUSES, "ARCHIVED"])
                if a.get("uniqueness_key") == unique
            ]
            if not made:
                raise ProviderError(f"metronome: {what}: HTTP 409: {answer.get('message')}")
            remote = self._remote_alert(made[0])
            return dataclasses.replace(remote, replayed=made[0].get("status") == "archived")
        data = answer.get("data")
        alert_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(alert_id, str):
            raise ProviderError(f"metronome: {what}: the answer has no data.id")
        return RemoteAlert(self.name, alert_id, alert.key, True, self.desired_spec(alert))

    async def update_alert(
        self, alert_id: str, alert: MetronomeAlert, idempotency_key: str
    ) -> None:
        """Never planned: Metronome alerts cannot be edited (every change is a replace)."""
        raise ProviderError("metronome: alerts cannot be edited through Metronome's API")

    async def set_enabled(self, alert_id: str, enabled: bool, idempotency_key: str) -> None:
        """Never planned: Metronome's API cannot enable or disable an alert."""
        raise ProviderError("metronome: alerts cannot be enabled or disabled through the API")

    async def remove_alert(self, alert_id: str, idempotency_key: str) -> None:
        """Archive (an alert already gone counts as archived)."""
        await self._call(
            "POST",
            "/v1/alerts/archive",
            f"archive alert {alert_id}",
            json={"id": alert_id},
            missing_ok=True,
        )

    async def create_endpoint(self, url: str, idempotency_key: str) -> CreatedEndpoint:
        """Never planned (``[metronome]`` has no ``webhook_url``)."""
        raise ProviderError(f"metronome: {NO_ENDPOINTS}")

    async def fix_endpoint(self, endpoint: RemoteEndpoint, idempotency_key: str) -> None:
        """Never planned (``[metronome]`` has no ``webhook_url``)."""
        raise ProviderError(f"metronome: {NO_ENDPOINTS}")


def _id(obj: Any) -> str | None:
    return obj.get("id") if isinstance(obj, dict) else None


class MetronomeSpec(DeclaredModeSpec[MetronomeConfig, MetronomeCredentials]):
    """Metronome as the manager knows it: the ``[metronome]`` table and ``METRONOME_API_KEY``
    (no webhook endpoints: Metronome's API has none)."""

    name = "metronome"
    table = MetronomeConfig
    credentials = MetronomeCredentials

    def make_api(
        self,
        credentials: MetronomeCredentials,
        table: MetronomeConfig,
        *,
        concurrency: int,
        retry: RetryPolicy | None,
    ) -> ProviderAPI:
        """A :class:`MetronomeAPI` for the token and the table (whose customers are read)."""
        assert credentials.api_key
        return MetronomeAPI(
            credentials.api_key,
            table,
            mode=declared_mode(credentials.mode),
            api_base=credentials.api_base,
            concurrency=concurrency,
            retry=retry,
        )


#: The registry's entry for Metronome.
SPEC = MetronomeSpec()
