"""OpenMeter in the test kit: its notification samples, :func:`openmeter_event`, which builds any
of them as a fresh delivery (a new event id, ``timestamp`` now), and :class:`FakeOpenMeter`, a
stateful fake of OpenMeter's notification API (rules, channels, events)."""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from alerthooks.apis.openmeter import API_BASE_ENV, API_KEY_ENV
from alerthooks.testing.fakeserver import FakeAPI, Result, as_int, register_fake
from alerthooks.testing.samples import load_sample, merge_overrides, register_samples

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid(moment: datetime | None = None) -> str:
    """A ULID (OpenMeter's ids): 48 bits of milliseconds, 80 random bits, Crockford base32."""
    millis = int((moment or datetime.now(timezone.utc)).timestamp() * 1000)
    value = (millis << 80) | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def rfc3339(moment: datetime) -> str:
    """``moment`` as OpenMeter writes times: UTC, milliseconds, ``Z``."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"


def openmeter_event(
    sample: str = "openmeter_balance_threshold",
    *,
    id: str | None = None,
    timestamp: datetime | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The OpenMeter sample ``sample`` with a new event id (or ``id``) and ``timestamp`` now (or
    the given aware datetime); ``overrides`` merge in recursively (e.g.
    ``data={"threshold": {"value": 90}}``)."""
    moment = timestamp or datetime.now(timezone.utc)
    payload = load_sample(sample)
    payload["id"] = id or ulid(moment)
    payload["timestamp"] = rfc3339(moment)
    return merge_overrides(payload, overrides)


_SAMPLES = {
    "openmeter_balance_threshold": "``entitlements.balance.threshold`` at 80 % usage "
    "(``alert.triggered``)",
    "openmeter_balance_threshold_balance_value": "``entitlements.balance.threshold`` on the "
    "remaining balance (``credit_balance``)",
    "openmeter_entitlements_reset": "``entitlements.reset`` (``alert.cleared``)",
    "openmeter_invoice_created": "``invoice.created``: verified, acknowledged, never an alert",
}

register_samples(
    "openmeter",
    "OpenMeter",
    _SAMPLES,
    openmeter_event,
    default="openmeter_balance_threshold",
    fixture="openmeter_alert",
)

_THRESHOLD_TYPES = frozenset(
    {"usage_value", "usage_percentage", "balance_value", "PERCENT", "NUMBER"}
)


@register_fake
class FakeOpenMeter(FakeAPI):
    """OpenMeter's notification API: rules (``/api/v1/notification/rules``: listed with
    ``page``/``pageSize`` and ``includeDisabled``, created, read, replaced with ``PUT``, deleted;
    1 to 10 thresholds of a known type, channels that exist), webhook channels
    (``/api/v1/notification/channels``) and notification events
    (``/api/v1/notification/events``, filtered by ``from``, ordered by ``createdAt``) that tests
    add with :meth:`add_event`. Bearer-token auth, JSON bodies, problem+json errors.

    ``env()`` gives the variables that point :mod:`alerthooks.manager` and ``alerthooks
    catch-up`` here.
    """

    provider = "openmeter"

    def __init__(
        self, *, api_key: str = "om_test_fake", page_size: int = 100, **options: Any
    ) -> None:
        self.api_key = api_key
        #: The most items per page, whatever ``pageSize`` asks.
        self.page_size = page_size
        self._rules: dict[str, dict[str, Any]] = {}
        self._channels: dict[str, dict[str, Any]] = {}
        self._events: list[dict[str, Any]] = []
        super().__init__(**options)

    def env(self) -> dict[str, str]:
        """``OPENMETER_API_KEY``, ``ALERTHOOKS_OPENMETER_API_BASE`` and
        ``ALERTHOOKS_OPENMETER_MODE=test`` (the fake holds test data)."""
        return {
            API_KEY_ENV: self.api_key,
            API_BASE_ENV: self.url,
            "ALERTHOOKS_OPENMETER_MODE": "test",
        }

    def _clear(self) -> None:
        self._rules.clear()
        self._channels.clear()
        self._events.clear()

    # -- state for tests -------------------------------------------------------------------

    def rules(self) -> list[dict[str, Any]]:
        """Copies of the rules, oldest first."""
        with self._lock:
            return [json.loads(json.dumps(r)) for r in self._rules.values()]

    def add_channel(self, url: str = "https://example.com/webhooks/openmeter") -> str:
        """A webhook channel sending to ``url``; returns its id."""
        with self._lock:
            channel = self._channel({"type": "WEBHOOK", "name": "alerthooks", "url": url})
            return str(channel["id"])

    def add_rule(self, **rule: Any) -> dict[str, Any]:
        """Create a rule directly, as someone using OpenMeter's console would (the create
        request's fields). Raises ``ValueError`` where OpenMeter would answer 400."""
        with self._lock:
            status, body = self._create(rule, {})
        if status != 201:
            raise ValueError(body)
        return body

    def add_event(
        self, payload: dict[str, Any], *, rule_id: str = "", created_at: datetime | None = None
    ) -> dict[str, Any]:
        """A notification event as OpenMeter lists it, carrying ``payload`` (a webhook payload,
        such as :func:`openmeter_event` builds) under the payload's id."""
        moment = created_at or datetime.now(timezone.utc)
        event: dict[str, Any] = {
            "id": payload.get("id") or ulid(moment),
            "type": payload.get("type"),
            "createdAt": rfc3339(moment),
            "rule": self._rules.get(rule_id) or {"id": rule_id or ulid(), "name": "rule"},
            "deliveryStatus": [],
            "payload": payload,
        }
        with self._lock:
            self._events.append(event)
            self._events.sort(key=lambda e: e["createdAt"])
        return event

    # -- API -------------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        rules, channels = "/api/v1/notification/rules", "/api/v1/notification/channels"
        return [
            self._route("GET", rules, self._list_rules),
            self._route("POST", rules, self._create),
            self._route("GET", rules + "/{id}", self._get),
            self._route("PUT", rules + "/{id}", self._update),
            self._route("DELETE", rules + "/{id}", self._delete),
            self._route("GET", channels, self._list_channels),
            self._route("POST", channels, lambda p, _: (201, self._channel(p))),
            self._route("GET", "/api/v1/notification/events", self._list_events),
        ]

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    def _error(self, status: int, message: str, code: str) -> Result:
        return status, {
            "type": "about:blank",
            "title": code.replace("_", " "),
            "status": status,
            "detail": message,
        }

    def _page(self, items: list[dict[str, Any]], params: dict[str, Any]) -> Result:
        page = as_int(params.get("page", 1))
        size = as_int(params.get("pageSize", 100))
        if page is None or page < 1 or size is None or not 1 <= size <= 1000:
            return self._error(400, "invalid page or pageSize", "bad_request")
        size = min(size, self.page_size)
        chunk = items[(page - 1) * size : page * size]
        return 200, {
            "items": json.loads(json.dumps(chunk)),
            "page": page,
            "pageSize": size,
            "totalCount": len(items),
        }

    def _channel(self, params: dict[str, Any]) -> dict[str, Any]:
        now = rfc3339(datetime.now(timezone.utc))
        channel_id = ulid()
        channel: dict[str, Any] = {
            "id": channel_id,
            "type": "WEBHOOK",
            "name": params.get("name") or "webhook",
            "url": params.get("url"),
            "disabled": bool(params.get("disabled", False)),
            "signingSecret": "whsec_" + secrets.token_urlsafe(24),
            "createdAt": now,
            "updatedAt": now,
        }
        self._channels[channel_id] = channel
        return channel

    def _list_channels(self, params: dict[str, Any], _: dict[str, str]) -> Result:
        return self._page(list(self._channels.values()), params)

    def _list_rules(self, params: dict[str, Any], _: dict[str, str]) -> Result:
        disabled = str(params.get("includeDisabled", "false")).lower() == "true"
        found = [r for r in self._rules.values() if disabled or not r["disabled"]]
        return self._page(found, params)

    def _checked(self, params: dict[str, Any]) -> dict[str, Any] | Result:
        if params.get("type") != "entitlements.balance.threshold":
            return self._error(400, "type: only entitlements.balance.threshold", "validation")
        if not isinstance(params.get("name"), str) or not params["name"]:
            return self._error(400, "name: required", "validation")
        thresholds = params.get("thresholds")
        if not isinstance(thresholds, list) or not 1 <= len(thresholds) <= 10:
            return self._error(400, "thresholds: 1 to 10 required", "validation")
        for t in thresholds:
            if not isinstance(t, dict) or t.get("type") not in _THRESHOLD_TYPES:
                return self._error(400, "thresholds: unknown type", "validation")
            if isinstance(t.get("value"), bool) or not isinstance(t.get("value"), int | float):
                return self._error(400, "thresholds: value must be a number", "validation")
        channels = params.get("channels")
        if not isinstance(channels, list) or not channels:
            return self._error(400, "channels: at least one required", "validation")
        missing = [c for c in channels if c not in self._channels]
        if missing:
            return self._error(400, f"channels: {missing[0]} not found", "validation")
        features = params.get("features") or []
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            return self._error(400, "features: a list of ids or keys", "validation")
        return {
            "type": params["type"],
            "name": params["name"],
            "disabled": bool(params.get("disabled", False)),
            "thresholds": thresholds,
            "channels": [{"id": c, "type": "WEBHOOK", "name": "webhook"} for c in channels],
            "features": [{"id": f if f.isupper() else ulid(), "key": f} for f in features],
            "metadata": params.get("metadata") or {},
        }

    def _create(self, params: dict[str, Any], _: dict[str, str]) -> Result:
        fields = self._checked(params)
        if isinstance(fields, tuple):
            return fields
        now = rfc3339(datetime.now(timezone.utc))
        rule = {"id": ulid(), **fields, "createdAt": now, "updatedAt": now}
        self._rules[rule["id"]] = rule
        return 201, json.loads(json.dumps(rule))

    def _get(self, _: dict[str, Any], path: dict[str, str]) -> Result:
        rule = self._rules.get(path["id"])
        if rule is None:
            return self._error(404, f"rule {path['id']} not found", "not_found")
        return 200, json.loads(json.dumps(rule))

    def _update(self, params: dict[str, Any], path: dict[str, str]) -> Result:
        rule = self._rules.get(path["id"])
        if rule is None:
            return self._error(404, f"rule {path['id']} not found", "not_found")
        fields = self._checked(params)
        if isinstance(fields, tuple):
            return fields
        rule.update(fields, updatedAt=rfc3339(datetime.now(timezone.utc)))
        return 200, json.loads(json.dumps(rule))

    def _delete(self, _: dict[str, Any], path: dict[str, str]) -> Result:
        if self._rules.pop(path["id"], None) is None:
            return self._error(404, f"rule {path['id']} not found", "not_found")
        return 204, {}

    def _list_events(self, params: dict[str, Any], _: dict[str, str]) -> Result:
        since = params.get("from")
        found = self._events
        if isinstance(since, str):
            moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
            found = [
                e
                for e in found
                if datetime.fromisoformat(e["createdAt"].replace("Z", "+00:00")) >= moment
            ]
        if str(params.get("order", "DESC")).upper() == "DESC":
            found = list(reversed(found))
        return self._page(found, params)


__all__ = ["FakeOpenMeter", "openmeter_event", "ulid"]
