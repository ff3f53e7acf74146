"""Orb in the test kit: its webhook samples, :func:`orb_event`, which builds any of them as a
fresh delivery (a new event id, ``created_at`` now), and :class:`FakeOrb`, a stateful fake of
Orb's alert API."""

from __future__ import annotations

import json
import secrets
import string
from datetime import datetime, timezone
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from alerthooks.manager.orb import (
    API_BASE_ENV,
    API_KEY_ENV,
    CUSTOMER_TYPES,
    MODE_ENV,
    SUBSCRIPTION_TYPES,
)
from alerthooks.testing.fakeserver import FakeAPI, Result, as_int, register_fake
from alerthooks.testing.samples import load_sample, merge_overrides, register_samples

_ID_ALPHABET = string.ascii_letters + string.digits


def _event_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


def orb_event(
    sample: str = "orb_subscription_usage_exceeded",
    *,
    id: str | None = None,
    created_at: datetime | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The Orb sample ``sample`` with a new event id (or ``id``) and ``created_at`` now (or the
    given aware datetime), as Orb writes it (ISO-8601 with ``+00:00``); ``overrides`` merge in
    recursively (e.g. ``properties={"evaluated_quantity": 2000}``)."""
    payload = load_sample(sample)
    payload["id"] = id or _event_id()
    moment = created_at or datetime.now(timezone.utc)
    payload["created_at"] = moment.astimezone(timezone.utc).isoformat(timespec="seconds")
    return merge_overrides(payload, overrides)


_SAMPLES = {
    "orb_subscription_usage_exceeded": "``subscription.usage_exceeded`` (``alert.triggered``)",
    "orb_subscription_cost_exceeded": "``subscription.cost_exceeded`` (``alert.triggered``)",
    "orb_customer_credit_balance_dropped": "``customer.credit_balance_dropped``",
    "orb_customer_credit_balance_depleted": "``customer.credit_balance_depleted``",
    "orb_customer_credit_balance_recovered": "``customer.credit_balance_recovered`` "
    "(``alert.cleared``)",
    "orb_customer_created": "``customer.created``: verified, acknowledged, never an alert",
}


register_samples(
    "orb",
    "Orb",
    _SAMPLES,
    orb_event,
    default="orb_subscription_usage_exceeded",
    fixture="orb_alert",
)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@register_fake
class FakeOrb(FakeAPI):
    """Orb's ``/v1/alerts`` API: alerts listed per subscription or customer (newest first,
    ``cursor``/``limit`` paging with ``pagination_metadata``), created per subscription or
    customer with one alert per identity (Orb's rule), thresholds updated in place, enabled and
    disabled; no deletion, as in Orb. Bearer-key auth, JSON bodies, ``Idempotency-Key``
    replayed.

    ``env()`` gives the variables that point :mod:`alerthooks.manager` here.
    """

    provider = "orb"
    idempotency_header = "idempotency-key"

    def __init__(self, *, api_key: str = "orb_test_fake", **options: Any) -> None:
        self.api_key = api_key
        self._alerts: dict[str, dict[str, Any]] = {}
        super().__init__(**options)

    def env(self) -> dict[str, str]:
        """``ORB_API_KEY``, ``ALERTHOOKS_ORB_API_BASE``, and ``ALERTHOOKS_ORB_MODE=test``
        (the fake holds test data)."""
        return {API_KEY_ENV: self.api_key, API_BASE_ENV: self.url, MODE_ENV: "test"}

    def _clear(self) -> None:
        self._alerts.clear()

    # -- state for tests -------------------------------------------------------------------

    def alerts(self) -> list[dict[str, Any]]:
        """Copies of the alerts, oldest first."""
        with self._lock:
            return [json.loads(json.dumps(a)) for a in self._alerts.values()]

    def _live(self) -> list[dict[str, Any]]:
        return [a for a in self._alerts.values() if a.get("enabled")]

    def add_alert(
        self,
        type: str,
        *,
        subscription_id: str | None = None,
        customer_id: str | None = None,
        metric_id: str | None = None,
        currency: str | None = None,
        thresholds: list[float] = (),  # type: ignore[assignment]
        enabled: bool = True,
        plan_id: str | None = None,
    ) -> dict[str, Any]:
        """Create an alert directly, as someone using the dashboard would (``plan_id`` makes
        it a plan-level alert, listed with the subscription)."""
        with self._lock:
            alert = self._make(
                type,
                subscription_id=subscription_id,
                customer_id=customer_id,
                metric_id=metric_id,
                currency=currency,
                thresholds=list(thresholds),
            )
            alert["enabled"] = enabled
            if plan_id:
                alert["plan"] = {"id": plan_id, "plan_version": "1", "name": None}
            return dict(alert)

    # -- API -------------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        return [
            self._route("GET", "/v1/alerts", self._list),
            self._route("GET", "/v1/customers", partial(self._scopes, "customer")),
            self._route("GET", "/v1/subscriptions", partial(self._scopes, "subscription")),
            self._route("POST", "/v1/alerts/subscription_id/{id}", self._create_for_subscription),
            self._route("POST", "/v1/alerts/customer_id/{id}", self._create_for_customer),
            self._route("GET", "/v1/alerts/{id}", self._retrieve),
            self._route("PUT", "/v1/alerts/{id}", self._update),
            self._route("POST", "/v1/alerts/{id}/enable", partial(self._set, True)),
            self._route("POST", "/v1/alerts/{id}/disable", partial(self._set, False)),
        ]

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    def _error(self, status: int, message: str, code: str) -> Result:
        return status, {
            "type": f"https://docs.withorb.com/reference/error-responses#{status}-{code}",
            "status": status,
            "title": code.replace("_", " "),
            "detail": message,
        }

    def _identity(self, alert: dict[str, Any]) -> tuple[Any, ...]:
        def of(name: str) -> Any:
            inner = alert.get(name)
            return inner.get("id") if isinstance(inner, dict) else None

        if alert["type"] in SUBSCRIPTION_TYPES:
            return (alert["type"], of("subscription"), of("metric"), bool(alert.get("plan")))
        return (alert["type"], of("customer"), alert.get("currency"))

    def _make(
        self,
        type: str,
        *,
        subscription_id: str | None,
        customer_id: str | None,
        metric_id: str | None,
        currency: str | None,
        thresholds: list[Any],
    ) -> dict[str, Any]:
        alert: dict[str, Any] = {
            "id": secrets.token_urlsafe(12),
            "created_at": _now(),
            "type": type,
            "enabled": True,
            "currency": currency,
            "customer": {"id": customer_id, "external_customer_id": None} if customer_id else None,
            "subscription": {"id": subscription_id} if subscription_id else None,
            "metric": {"id": metric_id} if metric_id else None,
            "plan": None,
            "thresholds": [{"value": float(t)} for t in thresholds] or None,
            "balance_alert_status": None,
        }
        self._alerts[alert["id"]] = alert
        return alert

    def _thresholds(self, params: dict[str, Any], *, required: bool) -> list[float] | None:
        given = params.get("thresholds")
        if given is None and not required:
            return []
        if not isinstance(given, list) or (required and not given):
            return None
        values = [t.get("value") if isinstance(t, dict) else None for t in given]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            return None
        return [float(v) for v in values]  # type: ignore[arg-type]

    def _duplicate(self, alert: dict[str, Any]) -> bool:
        identity = self._identity(alert)
        return any(
            self._identity(other) == identity
            for other in self._alerts.values()
            if other["id"] != alert["id"]
        )

    def _create_for_subscription(self, params: dict[str, Any], path: dict[str, str]) -> Result:
        kind = params.get("type")
        if kind not in SUBSCRIPTION_TYPES:
            return self._error(400, f"type must be one of {SUBSCRIPTION_TYPES}", "invalid_type")
        thresholds = self._thresholds(params, required=True)
        if thresholds is None:
            return self._error(400, "thresholds: a non-empty list of {value}", "validation")
        if kind == "usage_exceeded" and not params.get("metric_id"):
            return self._error(400, "metric_id is required for usage_exceeded", "validation")
        return self._created(
            kind,
            subscription_id=path["id"],
            customer_id=None,
            metric_id=params.get("metric_id"),
            currency=None,
            thresholds=thresholds,
        )

    def _create_for_customer(self, params: dict[str, Any], path: dict[str, str]) -> Result:
        kind = params.get("type")
        if kind not in CUSTOMER_TYPES:
            return self._error(400, f"type must be one of {CUSTOMER_TYPES}", "invalid_type")
        if not isinstance(params.get("currency"), str):
            return self._error(400, "currency is required", "validation")
        thresholds = self._thresholds(params, required=kind == "credit_balance_dropped")
        if thresholds is None:
            return self._error(400, "thresholds: a list of {value}", "validation")
        return self._created(
            kind,
            subscription_id=None,
            customer_id=path["id"],
            metric_id=None,
            currency=params["currency"],
            thresholds=thresholds,
        )

    def _created(self, kind: str, **fields: Any) -> Result:
        alert = self._make(kind, **fields)
        if self._duplicate(alert):
            del self._alerts[alert["id"]]
            return self._error(
                400, f"an alert of type {kind} already exists here", "duplicate_resource_creation"
            )
        return 201, dict(alert)

    def _list(self, params: dict[str, Any], _: dict[str, str]) -> Result:
        scopes = [
            n for n in ("subscription_id", "customer_id", "external_customer_id") if n in params
        ]
        if len(scopes) != 1:
            return self._error(
                400,
                "exactly one of customer_id, external_customer_id, subscription_id is required",
                "validation",
            )
        limit = as_int(params.get("limit", 20))
        start = as_int(params.get("cursor", 0))
        if limit is None or not 1 <= limit <= 100 or start is None or start < 0:
            return self._error(400, "invalid limit or cursor", "validation")
        field, value = scopes[0], params[scopes[0]]
        if field == "subscription_id":
            found = [
                a for a in self._alerts.values() if (a["subscription"] or {}).get("id") == value
            ]
        else:
            name = "id" if field == "customer_id" else "external_customer_id"
            found = [
                a
                for a in self._alerts.values()
                if a["subscription"] is None and (a["customer"] or {}).get(name) == value
            ]
        found.reverse()  # newest first
        page = found[start : start + limit]
        more = start + limit < len(found)
        return 200, {
            "data": [dict(a) for a in page],
            "pagination_metadata": {
                "has_more": more,
                "next_cursor": str(start + limit) if more else None,
            },
        }

    def _scopes(self, kind: str, params: dict[str, Any], _: dict[str, str]) -> Result:
        """``GET /v1/customers`` or ``/v1/subscriptions``: those the alerts name (the fake
        keeps no customers of its own), ``{"id": ...}`` each, paged like alerts."""
        limit = as_int(params.get("limit", 20))
        start = as_int(params.get("cursor", 0))
        if limit is None or not 1 <= limit <= 100 or start is None or start < 0:
            return self._error(400, "invalid limit or cursor", "validation")
        ids = sorted({a[kind]["id"] for a in self._alerts.values() if a.get(kind)})
        more = start + limit < len(ids)
        return 200, {
            "data": [{"id": id} for id in ids[start : start + limit]],
            "pagination_metadata": {
                "has_more": more,
                "next_cursor": str(start + limit) if more else None,
            },
        }

    def _retrieve(self, _: dict[str, Any], path: dict[str, str]) -> Result:
        alert = self._alerts.get(path["id"])
        if alert is None:
            return self._error(404, f"alert {path['id']} not found", "resource_not_found")
        return 200, dict(alert)

    def _update(self, params: dict[str, Any], path: dict[str, str]) -> Result:
        alert = self._alerts.get(path["id"])
        if alert is None:
            return self._error(404, f"alert {path['id']} not found", "resource_not_found")
        unknown = set(params) - {"thresholds"}
        if unknown:
            return self._error(400, f"{sorted(unknown)[0]}: not updatable", "validation")
        thresholds = self._thresholds(params, required=True)
        if thresholds is None:
            return self._error(400, "thresholds: a non-empty list of {value}", "validation")
        alert["thresholds"] = [{"value": t} for t in thresholds]
        return 200, dict(alert)

    def _set(self, enabled: bool, _: dict[str, Any], path: dict[str, str]) -> Result:
        alert = self._alerts.get(path["id"])
        if alert is None:
            return self._error(404, f"alert {path['id']} not found", "resource_not_found")
        alert["enabled"] = enabled
        return 200, dict(alert)


__all__ = ["FakeOrb", "orb_event"]
