"""Metronome in the test kit: its webhook samples, :func:`metronome_event`, which builds any of
them as a fresh delivery (a new event id, the alert's ``timestamp`` now), and
:class:`FakeMetronome`, a stateful fake of Metronome's alert API."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from alerthooks.apis.metronome import API_BASE_ENV, API_KEY_ENV
from alerthooks.manager.metronome import MODE_ENV
from alerthooks.testing.fakeserver import FakeAPI, Result, as_int, register_fake
from alerthooks.testing.samples import load_sample, merge_overrides, register_samples


def metronome_event(
    sample: str = "metronome_usage_threshold_reached",
    *,
    id: str | None = None,
    timestamp: datetime | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The Metronome sample ``sample`` with a new event id (a UUID, or ``id``) and, for alerts,
    ``properties.timestamp`` now (or the given aware datetime) as Metronome writes it
    (``2024-10-07T17:15:45.789Z``); ``overrides`` merge in recursively."""
    payload = load_sample(sample)
    payload["id"] = id or str(uuid.uuid4())
    properties = payload.get("properties")
    if isinstance(properties, dict) and "timestamp" in properties:
        moment = (timestamp or datetime.now(timezone.utc)).astimezone(timezone.utc)
        properties["timestamp"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return merge_overrides(payload, overrides)


_SAMPLES = {
    "metronome_usage_threshold_reached": "``alerts.usage_threshold_reached`` (``alert.triggered``)",
    "metronome_usage_threshold_resolved": "``alerts.usage_threshold_resolved`` (``alert.cleared``)",
    "metronome_spend_threshold_reached": "``alerts.spend_threshold_reached``",
    "metronome_low_remaining_credit_balance_reached": "``alerts.low_remaining_credit_balance_"
    "reached``",
    "metronome_invoice_finalized": "``invoice.finalized``: verified, acknowledged, never an alert",
}


register_samples(
    "metronome",
    "Metronome",
    _SAMPLES,
    metronome_event,
    default="metronome_usage_threshold_reached",
    fixture="metronome_alert",
)

#: Metronome's id of the USD (cents) credit type, the default one.
USD_CREDIT_TYPE = {"id": "2714e483-4ff1-48e4-9e25-ac732e8f24f2", "name": "USD (cents)"}


@register_fake
class FakeMetronome(FakeAPI):
    """Metronome's alert API: ``POST /v1/alerts/create`` (a used ``uniqueness_key`` answers
    409), ``POST /v1/alerts/archive`` and ``POST /v1/customer-alerts/list`` (a customer's own
    alerts and those for all customers; enabled only unless ``alert_statuses`` says otherwise;
    ``next_page`` paging; each alert with the ``customer_status`` :meth:`set_customer_status`
    set). Bearer-token auth, JSON bodies.

    ``env()`` gives the variables that point :mod:`alerthooks.manager` here.
    """

    provider = "metronome"

    def __init__(
        self, *, api_key: str = "metronome_test_fake", page_size: int = 25, **options: Any
    ) -> None:
        self.api_key = api_key
        #: Alerts per page of ``/v1/customer-alerts/list``.
        self.page_size = page_size
        self._alerts: dict[str, dict[str, Any]] = {}
        # (alert id, customer id) -> customer_status, where set (otherwise "ok").
        self._statuses: dict[tuple[str, str], str | None] = {}
        #: Customers ``GET /v1/customers`` lists besides those the alerts name.
        self.customers: set[str] = set()
        super().__init__(**options)

    def env(self) -> dict[str, str]:
        """``METRONOME_API_KEY``, ``ALERTHOOKS_METRONOME_API_BASE``, and
        ``ALERTHOOKS_METRONOME_MODE=test`` (the fake holds test data)."""
        return {API_KEY_ENV: self.api_key, API_BASE_ENV: self.url, MODE_ENV: "test"}

    def _clear(self) -> None:
        self._alerts.clear()
        self._statuses.clear()
        self.customers.clear()

    def set_customer_status(self, alert_id: str, customer_id: str, status: str | None) -> None:
        """Set the ``customer_status`` (``ok``, ``in_alarm``, ``evaluating`` or None) that
        ``/v1/customer-alerts/list`` reports for the alert and customer, as Metronome's own
        evaluation would; ``ok`` until set."""
        with self._lock:
            self._statuses[(alert_id, customer_id)] = status

    # -- state for tests -------------------------------------------------------------------

    def alerts(self) -> list[dict[str, Any]]:
        """Copies of the alerts (archived ones too), oldest first, with the fields Metronome
        does not list back (``customer_id``, ``billable_metric_id``) beside them."""
        with self._lock:
            return [json.loads(json.dumps(a)) for a in self._alerts.values()]

    def _live(self) -> list[dict[str, Any]]:
        return [a for a in self._alerts.values() if a["status"] == "enabled"]

    def _identity(self, alert: dict[str, Any]) -> tuple[Any, ...]:
        return (
            alert["type"],
            float(alert["threshold"]),
            alert["_customer_id"],
            alert["_billable_metric_id"],
            alert["credit_type"]["id"],
        )

    def add_alert(
        self,
        name: str,
        alert_type: str,
        threshold: float,
        *,
        customer_id: str | None = None,
        billable_metric_id: str | None = None,
        uniqueness_key: str | None = None,
        status: str = "enabled",
    ) -> dict[str, Any]:
        """Create an alert directly, as someone using the Metronome app would."""
        with self._lock:
            alert = self._make(
                {
                    "name": name,
                    "alert_type": alert_type,
                    "threshold": threshold,
                    "customer_id": customer_id,
                    "billable_metric_id": billable_metric_id,
                    "uniqueness_key": uniqueness_key,
                }
            )
            alert["status"] = status
            return dict(alert)

    # -- API -------------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        return [
            self._route("POST", "/v1/alerts/create", self._create),
            self._route("POST", "/v1/alerts/archive", self._archive),
            self._route("POST", "/v1/customer-alerts/list", self._list),
            self._route("GET", "/v1/customers", self._customers),
        ]

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    def _error(self, status: int, message: str, code: str) -> Result:
        return status, {"message": message}

    def _make(self, params: dict[str, Any]) -> dict[str, Any]:
        alert: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "name": params["name"],
            "type": params["alert_type"],
            "status": "enabled",
            "threshold": params["threshold"],
            "credit_type": dict(USD_CREDIT_TYPE)
            if params.get("credit_type_id") in (None, USD_CREDIT_TYPE["id"])
            else {"id": params["credit_type_id"], "name": "custom"},
            "uniqueness_key": params.get("uniqueness_key"),
            "updated_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            # Not listed back by Metronome: kept here to scope the listing.
            "_customer_id": params.get("customer_id"),
            "_billable_metric_id": params.get("billable_metric_id"),
        }
        self._alerts[alert["id"]] = alert
        return alert

    def _create(self, params: dict[str, Any], _: dict[str, str]) -> Result:
        for name in ("alert_type", "name"):
            if not isinstance(params.get(name), str) or not params[name]:
                return self._error(400, f"{name} is required", "validation")
        threshold = params.get("threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            return self._error(400, "threshold must be a number", "validation")
        if params["alert_type"] == "usage_threshold_reached" and not params.get(
            "billable_metric_id"
        ):
            return self._error(400, "billable_metric_id is required", "validation")
        unique = params.get("uniqueness_key")
        if unique and any(a["uniqueness_key"] == unique for a in self._alerts.values()):
            return self._error(409, "An alert with this uniqueness key already exists", "conflict")
        return 200, {"data": {"id": self._make(params)["id"]}}

    def _archive(self, params: dict[str, Any], _: dict[str, str]) -> Result:
        alert = self._alerts.get(params.get("id") or "")
        if alert is None:
            return self._error(404, "alert not found", "not_found")
        alert["status"] = "archived"
        if params.get("release_uniqueness_key"):
            alert["uniqueness_key"] = None
        return 200, {"data": {"id": alert["id"]}}

    def _customers(self, params: dict[str, Any], _: dict[str, str]) -> Result:
        start = as_int(params.get("next_page", 0))
        if start is None or start < 0:
            return self._error(400, "invalid next_page", "validation")
        ids = sorted(
            self.customers | {a["_customer_id"] for a in self._alerts.values() if a["_customer_id"]}
        )
        more = start + self.page_size < len(ids)
        return 200, {
            "data": [{"id": id, "name": id} for id in ids[start : start + self.page_size]],
            "next_page": str(start + self.page_size) if more else None,
        }

    def _list(self, params: dict[str, Any], _: dict[str, str]) -> Result:
        customer = params.get("customer_id")
        if not isinstance(customer, str) or not customer:
            return self._error(400, "customer_id is required", "validation")
        statuses = params.get("alert_statuses") or ["ENABLED"]
        wanted = {str(s).lower() for s in statuses}
        start = as_int(params.get("next_page", 0))
        if start is None or start < 0:
            return self._error(400, "invalid next_page", "validation")
        found = [
            a
            for a in self._alerts.values()
            if a["status"] in wanted and a["_customer_id"] in (None, customer)
        ]
        page = found[start : start + self.page_size]
        more = start + self.page_size < len(found)
        return 200, {
            "data": [
                {
                    "alert": {k: v for k, v in a.items() if not k.startswith("_")},
                    "customer_status": None
                    if a["status"] == "archived"
                    else self._statuses.get((a["id"], customer), "ok"),
                }
                for a in page
            ],
            "next_page": str(start + self.page_size) if more else None,
        }


__all__ = ["FakeMetronome", "metronome_event"]
