"""Chargebee in the test kit: its samples and builders, and :class:`FakeChargebee`, a stateful
fake of one site's alert and webhook-endpoint APIs.

Builders return a fresh dict with a new event id (and the current time) unless one is given.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from functools import partial
from typing import Any, Literal

from starlette.requests import Request
from starlette.routing import Route

from alerthooks.apis.chargebee import API_BASE_ENV, API_KEY_ENV, SITE_ENV
from alerthooks.providers.chargebee import PASSWORD_ENV, USERNAME_ENV
from alerthooks.testing.fakeserver import FakeAPI, Result, as_int, as_number, register_fake
from alerthooks.testing.samples import load_sample, merge_overrides, register_sample


def _event_id() -> str:
    return "ev_" + secrets.token_hex(8)


_OTHER_SAMPLES = {
    "spend_exceeded": "chargebee_alert_spend_exceeded",
    "credit_balance_dropped": "chargebee_alert_credit_balance_dropped",
}


def chargebee_alert_status_changed(
    alarm_status: Literal["in_alarm", "within_limit"] = "in_alarm",
    *,
    id: str | None = None,
    alert_id: str | None = None,
    name: str | None = None,
    metered_feature_id: str | None = None,
    subscription_id: str | None = None,
    threshold: dict[str, Any] | None = None,
    occurred_at: int | None = None,
    alert_type: Literal["usage_exceeded", "spend_exceeded", "credit_balance_dropped"] = (
        "usage_exceeded"
    ),
    **overrides: Any,
) -> dict[str, Any]:
    """An ``alert_status_changed`` event; ``in_alarm`` normalizes to ``alert.triggered`` and
    ``within_limit`` to ``alert.cleared``. ``alert_type`` picks the alert: a usage alert on a
    metered feature, a spend alert or a credit-balance alert (both in ``USD``). ``overrides``
    merge recursively into the event."""
    if alert_type == "usage_exceeded":
        sample = (
            "chargebee_alert_in_alarm"
            if alarm_status == "in_alarm"
            else "chargebee_alert_within_limit"
        )
    else:
        sample = _OTHER_SAMPLES[alert_type]
    payload = load_sample(sample)
    payload["id"] = id or _event_id()
    payload["occurred_at"] = int(time.time()) if occurred_at is None else occurred_at
    content = payload["content"]
    alert, status = content["alert"], content["alert_status"]
    status["alarm_status"] = alarm_status
    if alert_id is not None:
        alert["id"] = status["alert_id"] = alert_id
    if name is not None:
        alert["name"] = name
    if metered_feature_id is not None:
        alert["metered_feature_id"] = metered_feature_id
    if subscription_id is not None:
        status["subscription_id"] = subscription_id
    if threshold is not None:
        alert["threshold"] = {**alert["threshold"], **threshold}
    return merge_overrides(payload, overrides)


def chargebee_subscription_created(*, id: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A ``subscription_created`` event: verified and acknowledged, never an alert."""
    payload = load_sample("chargebee_subscription_created")
    payload["id"] = id or _event_id()
    payload["occurred_at"] = int(time.time())
    return merge_overrides(payload, overrides)


register_sample(
    "chargebee_alert_in_alarm",
    provider="chargebee",
    file="chargebee_alert_in_alarm.json",
    build=partial(chargebee_alert_status_changed, "in_alarm"),
    doc="A fresh Chargebee ``alert_status_changed`` event, ``in_alarm`` (``alert.triggered``).",
    default=True,
    fixture="chargebee_alert",
)
register_sample(
    "chargebee_alert_within_limit",
    provider="chargebee",
    file="chargebee_alert_within_limit.json",
    build=partial(chargebee_alert_status_changed, "within_limit"),
    doc="A fresh Chargebee ``alert_status_changed`` event, ``within_limit`` (``alert.cleared``).",
    fixture="chargebee_alert_cleared",
)
register_sample(
    "chargebee_alert_spend_exceeded",
    provider="chargebee",
    file="chargebee_alert_spend_exceeded.json",
    build=partial(chargebee_alert_status_changed, "in_alarm", alert_type="spend_exceeded"),
    doc="A fresh Chargebee ``alert_status_changed`` event of a ``spend_exceeded`` alert, "
    "``in_alarm``.",
)
register_sample(
    "chargebee_alert_credit_balance_dropped",
    provider="chargebee",
    file="chargebee_alert_credit_balance_dropped.json",
    build=partial(chargebee_alert_status_changed, "in_alarm", alert_type="credit_balance_dropped"),
    doc="A fresh Chargebee ``alert_status_changed`` event of a ``credit_balance_dropped`` "
    "alert, ``in_alarm``.",
)
register_sample(
    "chargebee_subscription_created",
    provider="chargebee",
    file="chargebee_subscription_created.json",
    build=chargebee_subscription_created,
    doc="A fresh Chargebee ``subscription_created`` event: verified, acknowledged, never an alert.",
)


@register_fake
class FakeChargebee(FakeAPI):
    """Chargebee's ``/api/v2/alerts``, ``/api/v2/webhook_endpoints``, ``/api/v2/events`` and
    the alert statuses of subscriptions and alerts, for one site.

    ``env()`` gives the variables that point :mod:`alerthooks.manager` (and catch-up) here.
    :meth:`add_event` keeps an event where ``GET /api/v2/events`` lists it and, for an
    ``alert_status_changed`` event, sets the alert status it carries (the one that occurred
    last wins); :meth:`set_alert_status` sets one directly.
    """

    provider = "chargebee"
    idempotency_header = "chargebee-idempotency-key"
    replayed_header = "chargebee-idempotency-replayed"

    def __init__(
        self,
        *,
        api_key: str = "test_fake",
        site: str = "acme-test",
        webhook_username: str = "alerthooks",
        webhook_password: str = "fake-webhook-password",
        **options: Any,
    ) -> None:
        self.api_key = api_key
        self.site = site
        #: The Basic credentials :meth:`exports` gives the manager for the webhook endpoint.
        self.webhook_username = webhook_username
        self.webhook_password = webhook_password
        self._alerts: dict[str, dict[str, Any]] = {}
        #: Basic auth each endpoint was given, by endpoint id (Chargebee never returns it).
        self.endpoint_auth: dict[str, tuple[str | None, str | None]] = {}
        self._events: list[dict[str, Any]] = []
        # (alert id, subscription id) -> alert_status object, and the occurred_at that set it.
        self._statuses: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        super().__init__(**options)

    def env(self) -> dict[str, str]:
        """``CHARGEBEE_API_KEY``, ``CHARGEBEE_SITE`` and ``ALERTHOOKS_CHARGEBEE_API_BASE``."""
        return {API_KEY_ENV: self.api_key, SITE_ENV: self.site, API_BASE_ENV: self.url}

    def exports(self) -> dict[str, str]:
        """:meth:`env` and ``CHARGEBEE_WEBHOOK_USERNAME``/``_PASSWORD``, which ``plan`` needs
        for a config with ``chargebee.webhook_url`` (and the receiver to accept deliveries)."""
        return {
            **self.env(),
            USERNAME_ENV: self.webhook_username,
            PASSWORD_ENV: self.webhook_password,
        }

    def _clear(self) -> None:
        self._alerts.clear()
        self._endpoints.clear()
        self.endpoint_auth.clear()
        self._events.clear()
        self._statuses.clear()

    # -- state for tests -------------------------------------------------------------------

    def alerts(self) -> list[dict[str, Any]]:
        """Copies of the alerts, oldest first."""
        with self._lock:
            return [json.loads(json.dumps(a)) for a in self._alerts.values()]

    def _live(self) -> list[dict[str, Any]]:
        return [a for a in self._alerts.values() if a.get("status") == "enabled"]

    def _identity(self, alert: dict[str, Any]) -> tuple[Any, ...]:
        threshold = alert.get("threshold") or {}
        value = threshold.get("value")
        return (
            alert.get("type"),
            alert.get("metered_feature_id"),
            alert.get("subscription_id") or None,
            threshold.get("mode"),
            float(value) if value is not None else None,
        )

    def add_alert(
        self,
        name: str,
        metered_feature_id: str,
        mode: str,
        value: float,
        *,
        subscription_id: str | None = None,
        status: str = "enabled",
        meta: str | None = None,
    ) -> dict[str, Any]:
        """Create an alert directly, as someone using the dashboard would."""
        with self._lock:
            alert = self._make_alert(
                {
                    "name": name,
                    "metered_feature_id": metered_feature_id,
                    "threshold": {"mode": mode, "value": value},
                    "subscription_id": subscription_id,
                    "meta": meta,
                }
            )
            alert["status"] = status
            return dict(alert)

    def add_event(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Keep ``payload`` (an event, such as :func:`chargebee_alert_status_changed` builds)
        where ``GET /api/v2/events`` lists it; an ``alert_status_changed`` event also sets the
        status it carries unless a later one is set. Returns it."""
        with self._lock:
            event = json.loads(json.dumps(payload))
            self._events.append(event)
            status = (event.get("content") or {}).get("alert_status")
            if event.get("event_type") == "alert_status_changed" and isinstance(status, dict):
                key = (str(status.get("alert_id")), str(status.get("subscription_id")))
                occurred = int(event.get("occurred_at") or 0)
                if key not in self._statuses or self._statuses[key][0] <= occurred:
                    self._statuses[key] = (occurred, status)
        return payload

    def events(self) -> list[dict[str, Any]]:
        """Copies of the events kept, in the order added."""
        with self._lock:
            return [json.loads(json.dumps(e)) for e in self._events]

    def set_alert_status(
        self,
        alert_id: str,
        subscription_id: str,
        alarm_status: Literal["in_alarm", "within_limit"],
        *,
        alarm_triggered_at: int | None = None,
    ) -> None:
        """Set an alert's status for a subscription, as Chargebee's own evaluation would."""
        status: dict[str, Any] = {
            "alert_id": alert_id,
            "subscription_id": subscription_id,
            "alarm_status": alarm_status,
            "object": "alert_status",
        }
        if alarm_triggered_at is not None:
            status["alarm_triggered_at"] = alarm_triggered_at
        with self._lock:
            self._statuses[(alert_id, subscription_id)] = (int(time.time()), status)

    def add_endpoint(
        self, url: str, events: list[str], *, disabled: bool = False, api_version: str = "v2"
    ) -> dict[str, Any]:
        """Create a webhook endpoint directly."""
        with self._lock:
            endpoint = self._make_endpoint(
                {"name": "manual", "url": url, "enabled_events": events, "api_version": api_version}
            )
            endpoint["disabled"] = disabled
            return dict(endpoint)

    # -- API -------------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        return [
            self._route("GET", "/api/v2/alerts", self._list_alerts),
            self._route("POST", "/api/v2/alerts", self._create_alert),
            self._route("GET", "/api/v2/alerts/{id}", self._retrieve_alert),
            self._route("POST", "/api/v2/alerts/{id}", self._update_alert),
            self._route("POST", "/api/v2/alerts/{id}/delete", self._delete_alert),
            self._route("GET", "/api/v2/webhook_endpoints", self._list_endpoints),
            self._route("POST", "/api/v2/webhook_endpoints", self._create_endpoint),
            self._route("POST", "/api/v2/webhook_endpoints/{id}", self._update_endpoint),
            self._route("GET", "/api/v2/events", self._list_events),
            self._route(
                "GET", "/api/v2/subscriptions/{id}/alert_statuses", self._subscription_statuses
            ),
            self._route("GET", "/api/v2/alerts/{id}/alert_statuses", self._alert_statuses),
        ]

    def _authorized(self, request: Request) -> bool:
        expected = base64.b64encode(f"{self.api_key}:".encode()).decode()
        return request.headers.get("authorization") == f"Basic {expected}"

    def _error(self, status: int, message: str, code: str) -> Result:
        codes = {
            401: "api_authentication_failed",
            404: "resource_not_found",
            429: "api_request_limit_exceeded",
        }
        return status, {
            "message": message,
            "type": "invalid_request" if status < 500 else "internal_error",
            "api_error_code": codes.get(status, code),
            "error_code": code,
            "http_status_code": status,
        }

    def _page(self, name: str, objects: list[dict[str, Any]], params: dict[str, Any]) -> Result:
        limit = as_int(params.get("limit", 10))
        start = as_int(params.get("offset", 0))
        if limit is None or not 1 <= limit <= 100 or start is None or start < 0:
            return self._error(400, "invalid limit or offset", "param_invalid")
        page = objects[start : start + limit]
        body: dict[str, Any] = {"list": [{name: dict(o)} for o in page]}
        if start + limit < len(objects):
            body["next_offset"] = str(start + limit)
        return 200, body

    def _list_events(self, params: dict[str, Any], _: dict[str, str]) -> Result:
        # Newest first, as Chargebee lists them by default.
        events = sorted(
            enumerate(self._events), key=lambda pair: (pair[1].get("occurred_at", 0), pair[0])
        )
        found = [e for _, e in reversed(events)]
        kind = params.get("event_type")
        if isinstance(kind, dict) and "is" in kind:
            found = [e for e in found if e.get("event_type") == kind["is"]]
        occurred = params.get("occurred_at")
        if isinstance(occurred, dict):
            for op, test in (("after", int.__gt__), ("before", int.__lt__)):
                if op in occurred:
                    bound = as_int(occurred[op])
                    if bound is None:
                        return self._error(
                            400, f"occurred_at[{op}] : invalid value", "param_invalid"
                        )
                    found = [e for e in found if test(int(e.get("occurred_at", 0)), bound)]
        return self._page("event", found, params)

    def _subscription_statuses(self, params: dict[str, Any], path: dict[str, str]) -> Result:
        found = [s for (_, sub), (_, s) in self._statuses.items() if sub == path["id"]]
        return self._page("alert_status", found, params)

    def _alert_statuses(self, params: dict[str, Any], path: dict[str, str]) -> Result:
        if path["id"] not in self._alerts:
            return self._error(404, f"alert {path['id']} not found", "resource_not_found")
        found = [s for (alert, _), (_, s) in self._statuses.items() if alert == path["id"]]
        return self._page("alert_status", found, params)

    def _list_alerts(self, params: dict[str, Any], _: dict[str, str]) -> Result:
        return self._page("alert", list(self._alerts.values()), params)

    def _make_alert(self, params: dict[str, Any]) -> dict[str, Any]:
        now = int(time.time())
        threshold = params.get("threshold") or {}
        alert: dict[str, Any] = {
            "id": self._new_id("alert"),
            "object": "alert",
            "type": "usage_exceeded",
            "name": params.get("name"),
            "description": params.get("description"),
            "metered_feature_id": params.get("metered_feature_id"),
            "subscription_id": params.get("subscription_id"),
            "status": "enabled",
            "meta": params.get("meta"),
            "threshold": {
                "mode": threshold.get("mode"),
                "value": as_number(threshold.get("value")),
            },
            "created_at": now,
            "updated_at": now,
        }
        self._alerts[alert["id"]] = {k: v for k, v in alert.items() if v is not None}
        return self._alerts[alert["id"]]

    def _create_alert(self, params: dict[str, Any], _: dict[str, str]) -> Result:
        threshold = params.get("threshold")
        if params.get("type") != "usage_exceeded":
            return self._error(400, "type : invalid value", "param_invalid")
        for name, limit in (("name", 50), ("metered_feature_id", 50), ("subscription_id", 50)):
            value = params.get(name)
            if (value is None and name != "subscription_id") or (value and len(value) > limit):
                return self._error(400, f"{name} : invalid value", "param_invalid")
        if (
            not isinstance(threshold, dict)
            or threshold.get("mode") not in ("absolute", "percentage")
            or as_number(threshold.get("value")) is None
        ):
            return self._error(400, "threshold : invalid value", "param_invalid")
        return 200, {"alert": dict(self._make_alert(params))}

    def _retrieve_alert(self, _: dict[str, Any], path: dict[str, str]) -> Result:
        alert = self._alerts.get(path["id"])
        if alert is None:
            return self._error(404, f"alert {path['id']} not found", "resource_not_found")
        return 200, {"alert": dict(alert)}

    def _update_alert(self, params: dict[str, Any], path: dict[str, str]) -> Result:
        alert = self._alerts.get(path["id"])
        if alert is None:
            return self._error(404, f"alert {path['id']} not found", "resource_not_found")
        unknown = set(params) - {"threshold", "status"}
        if unknown:
            return self._error(400, f"{sorted(unknown)[0]} : not updatable", "param_invalid")
        threshold = params.get("threshold")
        if isinstance(threshold, dict):
            alert["threshold"] = {
                "mode": threshold.get("mode", alert["threshold"]["mode"]),
                "value": as_number(threshold.get("value", alert["threshold"]["value"])),
            }
        if "status" in params:
            if params["status"] not in ("enabled", "disabled"):
                return self._error(400, "status : invalid value", "param_invalid")
            alert["status"] = params["status"]
        alert["updated_at"] = int(time.time())
        return 200, {"alert": dict(alert)}

    def _delete_alert(self, _: dict[str, Any], path: dict[str, str]) -> Result:
        alert = self._alerts.pop(path["id"], None)
        if alert is None:
            return self._error(404, f"alert {path['id']} not found", "resource_not_found")
        return 200, {"alert": alert}

    def _make_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        endpoint: dict[str, Any] = {
            "id": self._new_id("whe"),
            "object": "webhook_endpoint",
            "name": params.get("name"),
            "url": params.get("url"),
            "api_version": params.get("api_version", "v2"),
            "disabled": False,
            "send_card_resource": False,
            "primary_url": False,
            "enabled_events": list(params.get("enabled_events") or []),
        }
        self._endpoints[endpoint["id"]] = endpoint
        self.endpoint_auth[endpoint["id"]] = (
            params.get("basic_auth_username"),
            params.get("basic_auth_password"),
        )
        return endpoint

    def _list_endpoints(self, params: dict[str, Any], _: dict[str, str]) -> Result:
        return self._page("webhook_endpoint", list(self._endpoints.values()), params)

    def _create_endpoint(self, params: dict[str, Any], _: dict[str, str]) -> Result:
        if not params.get("name") or not params.get("url"):
            return self._error(400, "name and url are required", "param_invalid")
        return 200, {"webhook_endpoint": dict(self._make_endpoint(params))}

    def _update_endpoint(self, params: dict[str, Any], path: dict[str, str]) -> Result:
        endpoint = self._endpoints.get(path["id"])
        if endpoint is None:
            return self._error(
                404, f"webhook endpoint {path['id']} not found", "resource_not_found"
            )
        if "enabled_events" in params:
            endpoint["enabled_events"] = list(params["enabled_events"])
        if "disabled" in params:
            endpoint["disabled"] = params["disabled"] == "true"
        for name in ("url", "name", "api_version"):
            if name in params:
                endpoint[name] = params[name]
        if "basic_auth_username" in params or "basic_auth_password" in params:
            self.endpoint_auth[endpoint["id"]] = (
                params.get("basic_auth_username"),
                params.get("basic_auth_password"),
            )
        return 200, {"webhook_endpoint": dict(endpoint)}


__all__ = ["FakeChargebee", "chargebee_alert_status_changed", "chargebee_subscription_created"]
