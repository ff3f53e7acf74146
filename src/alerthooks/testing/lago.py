"""Lago in the test kit: its webhook samples, :func:`lago_event`, which builds any of them as a
fresh delivery (a new triggered-alert id, ``triggered_at`` now), and :class:`FakeLago`, a
stateful fake of Lago's alert API."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from alerthooks.apis.lago import API_KEY_ENV, API_URL_ENV
from alerthooks.testing.fakeserver import FakeAPI, Result, as_int, register_fake
from alerthooks.testing.samples import load_sample, merge_overrides, register_samples


def lago_event(
    sample: str = "lago_alert_triggered",
    *,
    triggered_at: datetime | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The Lago sample ``sample`` with a new ``triggered_alert.lago_id`` and ``triggered_at``
    now (or the given aware datetime), as Lago writes it (ISO-8601, ``Z``); ``overrides`` merge
    in recursively (e.g. ``triggered_alert={"current_value": "9000.0"}``). Lago's event id is
    the ``X-Lago-Unique-Key`` header, which :meth:`~alerthooks.providers.Lago.sign` makes."""
    payload = load_sample(sample)
    alert = payload.get("triggered_alert")
    if isinstance(alert, dict):
        alert["lago_id"] = str(uuid.uuid4())
        moment = (triggered_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
        alert["triggered_at"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return merge_overrides(payload, overrides)


_SAMPLES = {
    "lago_alert_triggered": "``alert.triggered`` on billable-metric units, two thresholds "
    "crossed (``usage``)",
    "lago_alert_triggered_spend": "``alert.triggered`` on the current usage amount (``spend``)",
    "lago_alert_triggered_wallet": "``alert.triggered`` on a falling wallet credit balance "
    "(``credit_balance``)",
    "lago_invoice_created": "``invoice.created``: verified, acknowledged, never an alert",
}

register_samples(
    "lago", "Lago", _SAMPLES, lago_event, default="lago_alert_triggered", fixture="lago_alert"
)


SUBSCRIPTION_TYPES = (
    "current_usage_amount",
    "billable_metric_current_usage_amount",
    "billable_metric_current_usage_units",
    "lifetime_usage_amount",
    "billable_metric_lifetime_usage_units",
)
WALLET_TYPES = (
    "wallet_balance_amount",
    "wallet_credits_balance",
    "wallet_ongoing_balance_amount",
    "wallet_credits_ongoing_balance",
)
_METRIC_TYPES = frozenset(t for t in SUBSCRIPTION_TYPES if t.startswith("billable_metric_"))
_SOFT_LIMIT = 20  # UsageMonitoring::AlertThreshold::SOFT_LIMIT


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _decimal_string(value: Any) -> str | None:
    """A threshold value as Lago serializes a BigDecimal (``"1000.0"``); None when invalid."""
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    text = format(number.normalize(), "f")
    return text if "." in text else text + ".0"


@register_fake
class FakeLago(FakeAPI):
    """Lago's alert API: alerts per subscription (``/api/v1/subscriptions/{external_id}/
    alerts``) and per wallet (``/api/v1/customers/{external_id}/wallets/{code}/alerts``), each
    created, listed (``page``/``per_page``, ``meta.next_page``), shown, updated and deleted by
    ``code``, with Lago's rules: a code once per subscription or wallet, one alert per type (and
    billable metric) there, 1 to 20 thresholds of distinct numeric values, wallet types on
    wallets only, a billable metric exactly for the ``billable_metric_*`` types; 422 with
    ``error_details`` otherwise. Also ``GET /api/v1/webhooks/json_public_key`` when built with a
    ``public_key`` (PEM). Bearer-key auth, JSON bodies ``{"alert": {...}}``.

    ``env()`` gives the variables that point :mod:`alerthooks.manager` (and the receiver's
    public-key fetch) here.
    """

    provider = "lago"

    def __init__(
        self,
        *,
        api_key: str = "lago_test_fake",
        public_key: str | None = None,
        page_size: int = 20,
        **options: Any,
    ) -> None:
        self.api_key = api_key
        self.public_key = public_key
        #: The most alerts per page, whatever ``per_page`` asks.
        self.page_size = page_size
        self._alerts: dict[str, dict[str, Any]] = {}
        super().__init__(**options)

    def env(self) -> dict[str, str]:
        """``LAGO_API_KEY``, ``LAGO_API_URL`` and ``ALERTHOOKS_LAGO_MODE=test`` (the fake
        holds test data)."""
        return {API_KEY_ENV: self.api_key, API_URL_ENV: self.url, "ALERTHOOKS_LAGO_MODE": "test"}

    def _clear(self) -> None:
        self._alerts.clear()

    # -- state for tests -------------------------------------------------------------------

    def alerts(self) -> list[dict[str, Any]]:
        """Copies of the alerts, oldest first (each with its ``_scope``)."""
        with self._lock:
            return [json.loads(json.dumps(a)) for a in self._alerts.values()]

    def add_alert(self, scope: str, **alert: Any) -> dict[str, Any]:
        """Create an alert directly under ``scope`` (``subscription:<external_id>`` or
        ``wallet:<external_customer_id>/<wallet_code>``), as someone using Lago's UI would;
        ``alert`` takes the create fields. Raises ``ValueError`` where Lago would answer 422."""
        with self._lock:
            status, body = self._create(scope, {"alert": alert})
        if status != 200:
            raise ValueError(body)
        created: dict[str, Any] = body["alert"]
        return created

    # -- API -------------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        sub = "/api/v1/subscriptions/{sub}/alerts"
        wallet = "/api/v1/customers/{customer}/wallets/{wallet}/alerts"
        routes = [self._route("GET", "/api/v1/webhooks/json_public_key", self._public_key)]
        for base in (sub, wallet):
            routes += [
                self._route("GET", base, self._scoped(self._list)),
                self._route("POST", base, self._scoped(self._create)),
                self._route("GET", base + "/{code}", self._scoped(self._show)),
                self._route("PUT", base + "/{code}", self._scoped(self._update)),
                self._route("DELETE", base + "/{code}", self._scoped(self._delete)),
            ]
        return routes

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    def _error(self, status: int, message: str, code: str) -> Result:
        if status == 422:
            return status, {
                "status": 422,
                "error": "Unprocessable Entity",
                "code": "validation_errors",
                "error_details": {code: [message]},
            }
        return status, {"status": status, "error": message, "code": code}

    def _public_key(self, _: dict[str, Any], __: dict[str, str]) -> Result:
        if self.public_key is None:
            return self._error(404, "Not Found", "webhook_jwt_public_key_not_found")
        encoded = base64.encodebytes(self.public_key.encode()).decode()
        return 200, {"webhook": {"public_key": encoded}}

    @staticmethod
    def _scoped(handler: Any) -> Any:
        def call(params: dict[str, Any], path: dict[str, str]) -> Result:
            if "sub" in path:
                scope = f"subscription:{path['sub']}"
            else:
                scope = f"wallet:{path['customer']}/{path['wallet']}"
            result: Result = handler(scope, params, *([path["code"]] if "code" in path else []))
            return result

        return call

    def _find(self, scope: str, code: str) -> dict[str, Any] | None:
        return next(
            (a for a in self._alerts.values() if a["_scope"] == scope and a["code"] == code), None
        )

    def _view(self, alert: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in alert.items() if not k.startswith("_")}

    def _list(self, scope: str, params: dict[str, Any]) -> Result:
        page = as_int(params.get("page", 1))
        per_page = as_int(params.get("per_page", 20))
        if page is None or page < 1 or per_page is None or per_page < 1:
            return self._error(422, "value_is_invalid", "page")
        per_page = min(per_page, self.page_size)
        found = [a for a in self._alerts.values() if a["_scope"] == scope]
        pages = max(1, -(-len(found) // per_page))
        chunk = found[(page - 1) * per_page : page * per_page]
        return 200, {
            "alerts": [self._view(a) for a in chunk],
            "meta": {
                "current_page": page,
                "next_page": page + 1 if page < pages else None,
                "prev_page": page - 1 if page > 1 else None,
                "total_pages": pages,
                "total_count": len(found),
            },
        }

    def _show(self, scope: str, _: dict[str, Any], code: str) -> Result:
        alert = self._find(scope, code)
        if alert is None:
            return self._error(404, "Not Found", "alert_not_found")
        return 200, {"alert": self._view(alert)}

    def _thresholds(self, given: Any) -> list[dict[str, Any]] | Result:
        if not isinstance(given, list) or not given:
            return self._error(422, "value_is_mandatory", "thresholds")
        if len(given) > _SOFT_LIMIT:
            return self._error(422, "too_many_thresholds", "thresholds")
        made = []
        for entry in given:
            value = _decimal_string(entry.get("value")) if isinstance(entry, dict) else None
            if value is None:
                return self._error(422, "value_is_invalid", "thresholds:value")
            made.append(
                {
                    "code": entry.get("code"),
                    "value": value,
                    "recurring": bool(entry.get("recurring", False)),
                }
            )
        values = [t["value"] for t in made if not t["recurring"]]
        if len(values) != len(set(values)):
            return self._error(422, "duplicate_threshold_values", "thresholds")
        return made

    def _create(self, scope: str, params: dict[str, Any]) -> Result:
        given = params.get("alert")
        if not isinstance(given, dict):
            return self._error(400, "alert is missing", "bad_request")
        kind = given.get("alert_type")
        allowed = WALLET_TYPES if scope.startswith("wallet:") else SUBSCRIPTION_TYPES
        if kind not in allowed:
            return self._error(422, "invalid_type", "alert_type")
        code = given.get("code")
        if not isinstance(code, str) or not code:
            return self._error(422, "value_is_mandatory", "code")
        if self._find(scope, code) is not None:
            return self._error(422, "value_already_exist", "code")
        metric = given.get("billable_metric_code")
        if (kind in _METRIC_TYPES) != bool(metric):
            return self._error(422, "value_is_invalid", "billable_metric")
        if any(
            a["_scope"] == scope
            and a["alert_type"] == kind
            and (a["billable_metric"] or {}).get("code") == metric
            for a in self._alerts.values()
        ):
            return self._error(422, "value_already_exist", "alert_type")
        thresholds = self._thresholds(given.get("thresholds"))
        if isinstance(thresholds, tuple):
            return thresholds
        external = scope.split(":", 1)[1]
        alert_id = str(uuid.uuid4())
        alert: dict[str, Any] = {
            "_scope": scope,
            "lago_id": alert_id,
            "lago_organization_id": "org-fake",
            "external_subscription_id": external if scope.startswith("subscription:") else None,
            "subscription_external_id": external if scope.startswith("subscription:") else None,
            "lago_wallet_id": None if scope.startswith("subscription:") else str(uuid.uuid4()),
            "wallet_code": external.split("/", 1)[1] if scope.startswith("wallet:") else None,
            "alert_type": kind,
            "code": code,
            "name": given.get("name"),
            "direction": "decreasing" if kind in WALLET_TYPES else "increasing",
            "previous_value": "0.0",
            "last_processed_at": None,
            "thresholds": thresholds,
            "created_at": _now(),
            "billable_metric": {"lago_id": str(uuid.uuid4()), "code": metric} if metric else None,
        }
        self._alerts[alert_id] = alert
        return 200, {"alert": self._view(alert)}

    def _update(self, scope: str, params: dict[str, Any], code: str) -> Result:
        alert = self._find(scope, code)
        if alert is None:
            return self._error(404, "Not Found", "alert_not_found")
        given = params.get("alert")
        if not isinstance(given, dict):
            return self._error(400, "alert is missing", "bad_request")
        if "thresholds" in given:
            thresholds = self._thresholds(given["thresholds"])
            if isinstance(thresholds, tuple):
                return thresholds
            alert["thresholds"] = thresholds
        if "name" in given:
            alert["name"] = given["name"]
        if "code" in given and given["code"] != code:
            if self._find(scope, given["code"]) is not None:
                return self._error(422, "value_already_exist", "code")
            alert["code"] = given["code"]
        if given.get("billable_metric_code"):
            alert["billable_metric"] = {
                "lago_id": str(uuid.uuid4()),
                "code": given["billable_metric_code"],
            }
        return 200, {"alert": self._view(alert)}

    def _delete(self, scope: str, _: dict[str, Any], code: str) -> Result:
        alert = self._find(scope, code)
        if alert is None:
            return self._error(404, "Not Found", "alert_not_found")
        del self._alerts[alert["lago_id"]]
        return 200, {"alert": self._view(alert)}


__all__ = ["FakeLago", "lago_event"]
