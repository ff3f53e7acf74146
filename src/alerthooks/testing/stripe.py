"""Stripe in the test kit: its samples and builders, and :class:`FakeStripe`, a stateful fake
of its alert and webhook-endpoint APIs.

Builders return a fresh dict with a new event id (and the current time) unless one is given.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from typing import Any, Literal

from starlette.requests import Request
from starlette.routing import Route

from alerthooks.testing.fakeserver import FakeAPI, Handler, Result, as_int, register_fake
from alerthooks.testing.samples import load_sample, merge_overrides, register_sample


def _event_id() -> str:
    return "evt_" + secrets.token_hex(12)


AlertType = Literal["usage_threshold", "credit_balance_threshold", "spend_threshold"]
_TRIGGERED_SAMPLES: dict[str, str] = {
    "usage_threshold": "stripe_alert_triggered",
    "credit_balance_threshold": "stripe_alert_triggered_credit_balance",
    "spend_threshold": "stripe_alert_triggered_spend",
}


def stripe_alert_triggered(
    *,
    id: str | None = None,
    alert_id: str | None = None,
    title: str | None = None,
    meter: str | dict[str, Any] | None = None,
    gte: int | None = None,
    customer: str | None = None,
    value: int | float | None = None,
    created: int | None = None,
    livemode: bool | None = None,
    expanded_meter: bool = False,
    alert_type: AlertType = "usage_threshold",
    **overrides: Any,
) -> dict[str, Any]:
    """A ``billing.alert.triggered`` event of a usage alert, or of the ``alert_type`` given
    (a credit-balance or spend alert, whose ``meter`` and ``gte`` do not apply). Keyword
    arguments set the named fields; ``overrides`` are merged into the event dict recursively
    (e.g. ``data={"object": {...}}``).
    """
    if expanded_meter:
        sample = "stripe_alert_triggered_expanded_meter"
    else:
        sample = _TRIGGERED_SAMPLES[alert_type]
    if alert_type != "usage_threshold" and (meter is not None or gte is not None):
        raise ValueError("meter and gte apply to usage_threshold alerts only")
    payload = _fresh(sample, id, created)
    obj = payload["data"]["object"]
    alert = obj["alert"]
    threshold = alert[alert_type]
    if meter is not None:
        threshold["meter"] = meter
    if gte is not None:
        threshold["gte"] = gte
    _set_common(payload, alert_id, title, customer, value, livemode)
    return merge_overrides(payload, overrides)


def stripe_alert_recovered(
    *,
    id: str | None = None,
    alert_id: str | None = None,
    title: str | None = None,
    customer: str | None = None,
    value: int | float | str | None = None,
    created: int | None = None,
    livemode: bool | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A ``billing.alert.recovered`` event (``alert.cleared``) of the credit-balance alert
    that ``stripe_alert_triggered(alert_type="credit_balance_threshold")`` triggers: the same
    alert and customer unless given."""
    payload = _fresh("stripe_alert_recovered", id, created)
    _set_common(payload, alert_id, title, customer, value, livemode)
    return merge_overrides(payload, overrides)


def stripe_thin_event(
    *,
    id: str | None = None,
    type: str = "v1.billing.alert.triggered",
    alert_id: str | None = None,
    created: datetime | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A thin event as a Stripe event destination delivers it (``object: "v2.core.event"``):
    its type and the alert it concerns (``related_object``), nothing more; the rest is read
    from the API (:meth:`FakeStripe.add_thin_event` keeps what the API answers)."""
    payload = load_sample("stripe_thin_alert_triggered")
    payload["id"] = id or "evt_test_65" + secrets.token_hex(20)
    payload["type"] = type
    moment = created or datetime.now(timezone.utc)
    payload["created"] = moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    payload["created"] = payload["created"].replace("+00:00", "Z")
    if alert_id is not None:
        payload["related_object"] = {
            "id": alert_id,
            "type": "billing.alert",
            "url": f"/v1/billing/alerts/{alert_id}",
        }
    return merge_overrides(payload, overrides)


def _fresh(sample: str, id: str | None, created: int | None) -> dict[str, Any]:
    payload = load_sample(sample)
    payload["id"] = id or _event_id()
    payload["created"] = int(time.time()) if created is None else created
    return payload


def _set_common(
    payload: dict[str, Any],
    alert_id: str | None,
    title: str | None,
    customer: str | None,
    value: int | float | str | None,
    livemode: bool | None,
) -> None:
    """Set the fields every alert event has: the alert's id and title, the customer (in the
    alert's filter too, where it has one), the value and the mode."""
    obj = payload["data"]["object"]
    alert = obj["alert"]
    if alert_id is not None:
        alert["id"] = alert_id
    if title is not None:
        alert["title"] = title
    if customer is not None:
        obj["customer"] = customer
        config = alert.get(alert.get("alert_type") or "usage_threshold") or {}
        filters = config.get("filters")
        if isinstance(filters, list) and filters:
            filters[0]["customer"] = customer
    if value is not None:
        obj["value"] = value
    if livemode is not None:
        payload["livemode"] = obj["livemode"] = alert["livemode"] = livemode


def stripe_customer_created(*, id: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A ``customer.created`` event: verified and acknowledged, never an alert."""
    payload = load_sample("stripe_customer_created")
    payload["id"] = id or _event_id()
    payload["created"] = int(time.time())
    return merge_overrides(payload, overrides)


register_sample(
    "stripe_alert_triggered",
    provider="stripe",
    file="stripe_alert_triggered.json",
    build=stripe_alert_triggered,
    doc="A fresh Stripe ``billing.alert.triggered`` event (see ``stripe_alert_triggered``).",
    default=True,
    fixture="stripe_alert",
)
register_sample(
    "stripe_alert_triggered_expanded_meter",
    provider="stripe",
    file="stripe_alert_triggered_expanded_meter.json",
    build=partial(stripe_alert_triggered, expanded_meter=True),
    doc="A fresh ``billing.alert.triggered`` event whose meter is expanded to an object.",
)
register_sample(
    "stripe_alert_triggered_credit_balance",
    provider="stripe",
    file="stripe_alert_triggered_credit_balance.json",
    build=partial(stripe_alert_triggered, alert_type="credit_balance_threshold"),
    doc="A fresh ``billing.alert.triggered`` event of a credit-balance alert (a prepaid "
    "balance at or below $10).",
)
register_sample(
    "stripe_alert_triggered_spend",
    provider="stripe",
    file="stripe_alert_triggered_spend.json",
    build=partial(stripe_alert_triggered, alert_type="spend_threshold"),
    doc="A fresh ``billing.alert.triggered`` event of a spend alert (over $500 in a billing "
    "period).",
)
register_sample(
    "stripe_alert_recovered",
    provider="stripe",
    file="stripe_alert_recovered.json",
    build=stripe_alert_recovered,
    doc="A fresh ``billing.alert.recovered`` event (``alert.cleared``) of the credit-balance "
    "alert.",
)
register_sample(
    "stripe_thin_alert_triggered",
    provider="stripe",
    file="stripe_thin_alert_triggered.json",
    build=stripe_thin_event,
    doc="A fresh thin ``v1.billing.alert.triggered`` event (read from the API when "
    "``STRIPE_API_KEY`` is set, else kept unparsed).",
)
register_sample(
    "stripe_customer_created",
    provider="stripe",
    file="stripe_customer_created.json",
    build=stripe_customer_created,
    doc="A fresh Stripe ``customer.created`` event: verified, acknowledged, never an alert.",
)


@register_fake
class FakeStripe(FakeAPI):
    """Stripe's ``/v1/billing/alerts``, ``/v1/webhook_endpoints``, ``/v1/events`` (the list and
    ``/v1/events/{id}``) and ``/v2/core/events/{id}``.

    ``env()`` gives the variables that point :mod:`alerthooks.manager` (and catch-up, and the
    reading of thin events) here; :meth:`add_event` puts an event where ``GET /v1/events``
    lists it; :meth:`add_thin_event` keeps a snapshot event and the thin event that stands for
    it, and returns the thin event to deliver.
    """

    provider = "stripe"
    idempotency_header = "idempotency-key"
    replayed_header = "idempotent-replayed"

    def __init__(self, *, api_key: str = "sk_test_fake", **options: Any) -> None:
        self.api_key = api_key
        self._alerts: dict[str, dict[str, Any]] = {}
        # Ids of the alerts that are not archived, per (meter, customer): the 25 limit.
        self._by_pair: dict[tuple[str, str | None], set[str]] = {}
        self._events: list[dict[str, Any]] = []
        self._events_order: list[dict[str, Any]] | None = None  # newest first, see _list_events
        self._event_position: dict[str, int] = {}
        # Thin events by id, as GET /v2/core/events/{id} answers them.
        self._thin: dict[str, dict[str, Any]] = {}
        super().__init__(**options)

    def env(self) -> dict[str, str]:
        """``STRIPE_API_KEY`` and ``ALERTHOOKS_STRIPE_API_BASE`` for this fake."""
        return {"STRIPE_API_KEY": self.api_key, "ALERTHOOKS_STRIPE_API_BASE": self.url}

    def _clear(self) -> None:
        self._alerts.clear()
        self._by_pair.clear()
        self._endpoints.clear()
        self._events.clear()
        self._events_order = None
        self._thin.clear()

    def _set_status(self, alert: dict[str, Any], status: str) -> None:
        alert["status"] = status
        if status == "archived":
            pair = (alert["usage_threshold"]["meter"], _customer_of(alert))
            self._by_pair.get(pair, set()).discard(alert["id"])

    # -- state for tests -------------------------------------------------------------------

    def alerts(self, *, archived: bool = False) -> list[dict[str, Any]]:
        """Copies of the alerts, oldest first; archived ones only when asked."""
        with self._lock:
            return [
                json.loads(json.dumps(a))
                for a in self._alerts.values()
                if archived or a["status"] != "archived"
            ]

    def add_alert(
        self,
        title: str,
        meter: str,
        gte: int,
        *,
        customer: str | None = None,
        status: str = "active",
    ) -> dict[str, Any]:
        """Create an alert directly, as someone using the dashboard would."""
        with self._lock:
            alert = self._make_alert(title, meter, gte, customer)
            self._set_status(alert, status)
            return dict(alert)

    def add_event(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Keep ``payload`` (an event, such as :func:`stripe_alert_triggered` builds) where
        ``GET /v1/events`` lists it, as Stripe keeps every event it creates; returns it."""
        with self._lock:
            self._events.append(json.loads(json.dumps(payload)))
        return payload

    def add_thin_event(
        self,
        snapshot: dict[str, Any],
        *,
        id: str | None = None,
        type: str | None = None,
        keep_snapshot: bool = True,
    ) -> dict[str, Any]:
        """Keep ``snapshot`` (a ``billing.alert.*`` event) as :meth:`add_event` does, and a thin
        event that names it in ``snapshot_event`` (``GET /v2/core/events/{id}``); return the
        thin event as an event destination delivers it (without ``snapshot_event``, which
        only the API gives). ``type`` defaults to ``v1.`` and the snapshot's type;
        ``keep_snapshot=False`` leaves the snapshot out, as when Stripe no longer holds it."""
        if keep_snapshot:
            self.add_event(snapshot)
        alert_id = snapshot["data"]["object"]["alert"]["id"]
        created = datetime.fromtimestamp(snapshot["created"], timezone.utc)
        thin = stripe_thin_event(
            id=id, type=type or f"v1.{snapshot['type']}", alert_id=alert_id, created=created
        )
        thin["livemode"] = snapshot.get("livemode", False)
        with self._lock:
            self._thin[thin["id"]] = {**thin, "changes": None, "snapshot_event": snapshot["id"]}
        return thin

    def events(self) -> list[dict[str, Any]]:
        """Copies of the events kept, in the order added."""
        with self._lock:
            return [json.loads(json.dumps(e)) for e in self._events]

    def add_endpoint(
        self,
        url: str,
        events: list[str],
        *,
        disabled: bool = False,
        api_version: str | None = None,
    ) -> dict[str, Any]:
        """Create a webhook endpoint directly (``api_version`` None: the account default)."""
        with self._lock:
            endpoint = self._make_endpoint(url, events, api_version)
            endpoint["status"] = "disabled" if disabled else "enabled"
            return dict(endpoint)

    def _live(self) -> list[dict[str, Any]]:
        return [a for a in self._alerts.values() if a["status"] == "active"]

    def _identity(self, alert: dict[str, Any]) -> tuple[Any, ...]:
        usage = alert["usage_threshold"]
        return (usage["meter"], _customer_of(alert), usage["gte"])

    # -- API -------------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        return [
            self._route("GET", "/v1/billing/alerts", self._list_alerts),
            self._route("POST", "/v1/billing/alerts", self._create_alert),
            self._route("GET", "/v1/billing/alerts/{id}", self._retrieve_alert),
            self._route("POST", "/v1/billing/alerts/{id}/activate", self._status("active")),
            self._route("POST", "/v1/billing/alerts/{id}/deactivate", self._status("inactive")),
            self._route("POST", "/v1/billing/alerts/{id}/archive", self._status("archived")),
            self._route("GET", "/v1/webhook_endpoints", self._list_endpoints),
            self._route("POST", "/v1/webhook_endpoints", self._create_endpoint),
            self._route("POST", "/v1/webhook_endpoints/{id}", self._update_endpoint),
            self._route("GET", "/v1/events", self._list_events),
            self._route("GET", "/v1/events/{id}", self._retrieve_event),
            self._route("GET", "/v2/core/events/{id}", self._retrieve_thin_event),
        ]

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    def _error(self, status: int, message: str, code: str) -> Result:
        kind = "api_error" if status >= 500 else "invalid_request_error"
        if code == "idempotency_error":
            kind = "idempotency_error"
        return status, {"error": {"type": kind, "code": code, "message": message}}

    def _page(self, objects: list[dict[str, Any]], params: dict[str, Any], url: str) -> Result:
        limit = as_int(params.get("limit", 10))
        if limit is None or not 1 <= limit <= 100:
            return self._error(400, "limit must be between 1 and 100", "parameter_invalid")
        after = params.get("starting_after")
        if after:
            ids = [o["id"] for o in objects]
            if after not in ids:
                return self._error(404, f"No such object: '{after}'", "resource_missing")
            objects = objects[ids.index(after) + 1 :]
        page = objects[:limit]
        return 200, {
            "object": "list",
            "url": url,
            "has_more": len(objects) > limit,
            "data": [dict(o) for o in page],
        }

    def _list_events(self, params: dict[str, Any], _: dict[str, str]) -> Result:
        # Newest first, as Stripe lists them. Read lazily from ``starting_after`` on, so that
        # paging through many thousands of events costs a page's work per page.
        limit = as_int(params.get("limit", 10))
        if limit is None or not 1 <= limit <= 100:
            return self._error(400, "limit must be between 1 and 100", "parameter_invalid")
        tests: list[tuple[Callable[[int, int], bool], int]] = []
        created = params.get("created")
        if isinstance(created, dict):
            for op, test in (("gte", int.__ge__), ("gt", int.__gt__), ("lte", int.__le__)):
                if op in created:
                    bound = as_int(created[op])
                    if bound is None:
                        return self._error(
                            400, f"created[{op}] is not an integer", "parameter_invalid"
                        )
                    tests.append((test, bound))
        kind = params.get("type")

        def wanted(event: dict[str, Any]) -> bool:
            if kind and event.get("type") != kind:
                return False
            at = int(event.get("created", 0))
            return all(test(at, bound) for test, bound in tests)

        order = self._events_newest_first()
        start = 0
        after = params.get("starting_after")
        if after:
            position = self._event_position.get(after)
            if position is None or not wanted(order[position]):
                return self._error(404, f"No such object: '{after}'", "resource_missing")
            start = position + 1
        page: list[dict[str, Any]] = []
        has_more = False
        for event in itertools.islice(order, start, None):
            if wanted(event):
                if len(page) == limit:
                    has_more = True
                    break
                page.append(dict(event))
        return 200, {"object": "list", "url": "/v1/events", "has_more": has_more, "data": page}

    def _events_newest_first(self) -> list[dict[str, Any]]:
        if self._events_order is None or len(self._events_order) != len(self._events):
            ranked = sorted(
                enumerate(self._events), key=lambda pair: (pair[1].get("created", 0), pair[0])
            )
            self._events_order = [e for _, e in reversed(ranked)]
            self._event_position = {e["id"]: i for i, e in enumerate(self._events_order)}
        return self._events_order

    def _retrieve_event(self, _: dict[str, Any], path: dict[str, str]) -> Result:
        for event in self._events:
            if event.get("id") == path["id"]:
                return 200, dict(event)
        return self._error(404, f"No such event: '{path['id']}'", "resource_missing")

    def _retrieve_thin_event(self, _: dict[str, Any], path: dict[str, str]) -> Result:
        event = self._thin.get(path["id"])
        if event is None:
            return self._error(404, f"No such event: '{path['id']}'", "resource_missing")
        return 200, dict(event)

    def _list_alerts(self, params: dict[str, Any], _: dict[str, str]) -> Result:
        alerts = [a for a in reversed(self._alerts.values()) if a["status"] != "archived"]
        if params.get("meter"):
            alerts = [a for a in alerts if a["usage_threshold"]["meter"] == params["meter"]]
        return self._page(alerts, params, "/v1/billing/alerts")

    def _make_alert(self, title: str, meter: str, gte: int, customer: str | None) -> dict[str, Any]:
        alert: dict[str, Any] = {
            "id": self._new_id("alrt"),
            "object": "billing.alert",
            "alert_type": "usage_threshold",
            "livemode": self.api_key.startswith(("sk_live_", "rk_live_")),
            "status": "active",
            "title": title,
            "usage_threshold": {
                "filters": [{"customer": customer, "type": "customer"}] if customer else None,
                "gte": gte,
                "meter": meter,
                "recurrence": "one_time",
            },
        }
        self._alerts[alert["id"]] = alert
        self._by_pair.setdefault((meter, customer), set()).add(alert["id"])
        return alert

    def _create_alert(self, params: dict[str, Any], _: dict[str, str]) -> Result:
        title = params.get("title")
        usage = params.get("usage_threshold")
        if params.get("alert_type") != "usage_threshold":
            return self._error(400, "alert_type must be usage_threshold", "parameter_invalid")
        if not isinstance(title, str) or not title or len(title) > 256:
            return self._error(
                400, "title is required, at most 256 characters", "parameter_invalid"
            )
        if not isinstance(usage, dict):
            return self._error(400, "usage_threshold is required", "parameter_missing")
        gte = as_int(usage.get("gte"))
        meter = usage.get("meter")
        filters = usage.get("filters") or []
        if gte is None or gte <= 0 or not meter or usage.get("recurrence") != "one_time":
            return self._error(400, "invalid usage_threshold", "parameter_invalid")
        if not isinstance(filters, list) or len(filters) > 1:
            return self._error(400, "at most one filter", "parameter_invalid")
        customer = filters[0].get("customer") if filters else None
        if len(self._by_pair.get((meter, customer), ())) >= 25:
            return self._error(
                400, "You can have at most 25 alerts per meter and customer", "limit_exceeded"
            )
        return 200, dict(self._make_alert(title, meter, gte, customer))

    def _retrieve_alert(self, _: dict[str, Any], path: dict[str, str]) -> Result:
        alert = self._alerts.get(path["id"])
        if alert is None:
            return self._error(404, f"No such alert: '{path['id']}'", "resource_missing")
        return 200, dict(alert)

    def _status(self, status: str) -> Handler:
        def handler(_: dict[str, Any], path: dict[str, str]) -> Result:
            alert = self._alerts.get(path["id"])
            if alert is None:
                return self._error(404, f"No such alert: '{path['id']}'", "resource_missing")
            if alert["status"] == "archived":
                return self._error(400, "This alert is archived", "alert_archived")
            self._set_status(alert, status)
            return 200, dict(alert)

        return handler

    def _make_endpoint(
        self, url: str, events: list[str], api_version: str | None = None
    ) -> dict[str, Any]:
        endpoint: dict[str, Any] = {
            "id": self._new_id("we"),
            "object": "webhook_endpoint",
            "api_version": api_version,
            "url": url,
            "enabled_events": list(events),
            "status": "enabled",
            "description": None,
            "livemode": False,
            "metadata": {},
        }
        self._endpoints[endpoint["id"]] = endpoint
        return endpoint

    def _list_endpoints(self, params: dict[str, Any], _: dict[str, str]) -> Result:
        return self._page(list(reversed(self._endpoints.values())), params, "/v1/webhook_endpoints")

    def _create_endpoint(self, params: dict[str, Any], _: dict[str, str]) -> Result:
        url = params.get("url")
        events = params.get("enabled_events")
        if not url or not isinstance(events, list) or not events:
            return self._error(400, "url and enabled_events are required", "parameter_missing")
        endpoint = self._make_endpoint(url, events, params.get("api_version"))
        endpoint["description"] = params.get("description")
        return 200, {**endpoint, "secret": f"whsec_{uuid.uuid4().hex}"}

    def _update_endpoint(self, params: dict[str, Any], path: dict[str, str]) -> Result:
        endpoint = self._endpoints.get(path["id"])
        if endpoint is None:
            return self._error(404, f"No such webhook endpoint: '{path['id']}'", "resource_missing")
        if "enabled_events" in params:
            endpoint["enabled_events"] = list(params["enabled_events"])
        if "disabled" in params:
            endpoint["status"] = "disabled" if params["disabled"] == "true" else "enabled"
        if "url" in params:
            endpoint["url"] = params["url"]
        return 200, dict(endpoint)


def _customer_of(alert: dict[str, Any]) -> str | None:
    filters = alert["usage_threshold"].get("filters") or []
    return filters[0].get("customer") if filters else None


__all__ = [
    "FakeStripe",
    "stripe_alert_recovered",
    "stripe_alert_triggered",
    "stripe_customer_created",
    "stripe_thin_event",
]
