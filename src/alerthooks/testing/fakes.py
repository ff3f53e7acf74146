"""Stateful fakes of Stripe's and Chargebee's alert and webhook-endpoint APIs, served over real
HTTP on 127.0.0.1 (a free port) in a background thread.

They behave like the real APIs for what :mod:`alerthooks.manager` uses: form-encoded requests,
Stripe's ``has_more``/``starting_after`` and Chargebee's ``limit``/``next_offset`` paging,
idempotency keys replayed, Stripe's 25 alerts per (meter, customer). On top they count calls per
endpoint, add latency to every call, and inject faults (429, 500, connection reset, timeout),
before or after the request takes effect::

    with FakeStripe() as stripe_api, FakeChargebee() as chargebee_api:
        env = {**stripe_api.env(), **chargebee_api.env()}   # point the manager at the fakes
        stripe_api.inject("reset", method="POST", path="/v1/billing/alerts", after=True)
        ...
        assert stripe_api.calls["POST /v1/billing/alerts"] == 3
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

FaultKind = Literal["429", "500", "reset", "timeout"]
_Result = tuple[int, dict[str, Any]]
_Handler = Callable[[dict[str, Any], dict[str, str]], _Result]


@dataclass
class Fault:
    """A fault served instead of (``after=False``) or after (``after=True``: the change is made,
    then the answer is lost) the next ``times`` matching calls. ``method`` and ``path`` (a route
    template such as ``/v1/billing/alerts/{id}/archive``) narrow which calls match."""

    kind: FaultKind
    method: str | None = None
    path: str | None = None
    times: int = 1
    after: bool = False

    def matches(self, method: str, template: str) -> bool:
        """Whether a call to ``method template`` takes this fault."""
        return (self.method is None or self.method == method) and (
            self.path is None or self.path == template
        )


def _nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Decode bracket form keys (``a[b][0]=v``, ``a[]=v``) into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"^[^\[]+|(?<=\[)[^\]]*(?=\])", key)
        node = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if part == "":
                part = str(len(node))
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    listed: dict[str, Any] = _listify(root)
    return listed


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {k: _listify(v) for k, v in node.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


class _Reset:
    """An answer cut off mid-body, then the connection closed: the client sees a reset."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"512")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"id": ', "more_body": True})
        # Returning without finishing the body makes the server drop the connection.


class _FakeAPI:
    """Shared machinery: the loopback server, call counting, latency, faults, idempotency."""

    idempotency_header = "idempotency-key"
    replayed_header = "idempotent-replayed"

    def __init__(self, *, latency: float = 0.0, hang: float = 2.0) -> None:
        #: Seconds added to every call.
        self.latency = latency
        #: Seconds a ``timeout`` fault holds the answer (longer than the client's timeout).
        self.hang = hang
        #: Calls per endpoint, as ``"METHOD /route/{template}"``; faulted calls count too.
        self.calls: Counter[str] = Counter()
        #: The most calls that were being answered at the same time.
        self.max_in_flight = 0
        self._in_flight = 0
        self._faults: list[Fault] = []
        self._idempotent: dict[str, tuple[str, int, dict[str, Any]]] = {}
        self._lock = threading.RLock()
        self._endpoints: dict[str, dict[str, Any]] = {}
        self._closing = False
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self.app = Starlette(routes=self._routes())

    # -- lifecycle -------------------------------------------------------------------------

    def endpoints(self) -> list[dict[str, Any]]:
        """Copies of the webhook endpoints."""
        with self._lock:
            return [json.loads(json.dumps(e)) for e in self._endpoints.values()]

    def start(self) -> None:
        """Serve on a free loopback port in a background thread."""
        # proto=IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections (it checks).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="off", access_log=False, log_config=None
        )
        self._server = uvicorn.Server(config)
        self._closing = False
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{type(self).__name__} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving; held (``timeout``) answers are released first."""
        self._closing = True
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._server = self._thread = None

    def __enter__(self) -> _FakeAPI:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, the API base address."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def total_calls(self) -> int:
        """Every call received so far."""
        return sum(self.calls.values())

    def inject(
        self,
        kind: FaultKind,
        *,
        method: str | None = None,
        path: str | None = None,
        times: int = 1,
        after: bool = False,
    ) -> Fault:
        """Queue a :class:`Fault`; faults are taken in the order they were injected."""
        fault = Fault(kind, method, path, times, after)
        with self._lock:
            self._faults.append(fault)
        return fault

    def reset(self) -> None:
        """Forget every object, call count, fault and idempotency key."""
        with self._lock:
            self.calls.clear()
            self.max_in_flight = 0
            self._faults.clear()
            self._idempotent.clear()
            self.latency = 0.0
            self._clear()

    def _clear(self) -> None:
        raise NotImplementedError

    def _routes(self) -> list[Route]:
        raise NotImplementedError

    def _authorized(self, request: Request) -> bool:
        raise NotImplementedError

    def _error(self, status: int, message: str, code: str) -> _Result:
        raise NotImplementedError

    # -- request handling ------------------------------------------------------------------

    def _route(self, method: str, template: str, handler: _Handler) -> Route:
        async def endpoint(request: Request) -> Any:
            return await self._handle(request, method, template, handler)

        return Route(template, endpoint, methods=[method])

    def _take_fault(self, method: str, template: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, template):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    async def _handle(self, request: Request, method: str, template: str, handler: _Handler) -> Any:
        with self._lock:
            self.calls[f"{method} {template}"] += 1
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            return await self._answer(request, method, template, handler)
        finally:
            with self._lock:
                self._in_flight -= 1

    async def _answer(self, request: Request, method: str, template: str, handler: _Handler) -> Any:
        if self.latency:
            await asyncio.sleep(self.latency)
        if not self._authorized(request):
            return self._json(self._error(401, "invalid API key", "api_authentication_failed"))
        fault = self._take_fault(method, template)
        if fault is not None and not fault.after:
            return await self._fault(fault)
        if method == "GET":
            params = _nest(list(request.query_params.multi_items()))
        else:
            raw = (await request.body()).decode("utf-8", "replace")
            params = _nest(parse_qsl(raw, keep_blank_values=True))
        key = request.headers.get(self.idempotency_header)
        replayed = False
        with self._lock:
            if key and method == "POST":
                fingerprint = hashlib.sha256(
                    json.dumps([template, request.url.path, params], sort_keys=True).encode()
                ).hexdigest()
                seen = self._idempotent.get(key)
                if seen is not None and seen[0] != fingerprint:
                    status, body = self._error(
                        400,
                        "Keys for idempotent requests can only be used with the same "
                        "parameters they were first used with.",
                        "idempotency_error",
                    )
                elif seen is not None:
                    status, body, replayed = seen[1], seen[2], True
                else:
                    status, body = handler(params, dict(request.path_params))
                    if status < 500:
                        self._idempotent[key] = (fingerprint, status, body)
            else:
                status, body = handler(params, dict(request.path_params))
        if fault is not None:
            return await self._fault(fault)
        response = self._json((status, body))
        if replayed:
            response.headers[self.replayed_header] = "true"
        return response

    async def _fault(self, fault: Fault) -> Any:
        if fault.kind == "429":
            response = self._json(self._error(429, "Too many requests", "rate_limit"))
            response.headers["retry-after"] = "0"
            return response
        if fault.kind == "500":
            return self._json(self._error(500, "Internal error", "internal_error"))
        if fault.kind == "reset":
            return _Reset()
        deadline = time.monotonic() + self.hang
        while time.monotonic() < deadline and not self._closing:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return self._json(self._error(504, "Timed out", "timeout"))

    @staticmethod
    def _json(result: _Result) -> Response:
        status, body = result
        return JSONResponse(body, status_code=status)

    @staticmethod
    def _new_id(prefix: str) -> str:
        return f"{prefix}_{uuid.uuid4().hex[:24]}"


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class FakeStripe(_FakeAPI):
    """Stripe's ``/v1/billing/alerts`` and ``/v1/webhook_endpoints``.

    ``env()`` gives the variables that point :mod:`alerthooks.manager` here.
    """

    idempotency_header = "idempotency-key"
    replayed_header = "idempotent-replayed"

    def __init__(self, *, api_key: str = "sk_test_fake", **options: Any) -> None:
        self.api_key = api_key
        self._alerts: dict[str, dict[str, Any]] = {}
        # Ids of the alerts that are not archived, per (meter, customer): the 25 limit.
        self._by_pair: dict[tuple[str, str | None], set[str]] = {}
        super().__init__(**options)

    def env(self) -> dict[str, str]:
        """``STRIPE_API_KEY`` and ``ALERTHOOKS_STRIPE_API_BASE`` for this fake."""
        return {"STRIPE_API_KEY": self.api_key, "ALERTHOOKS_STRIPE_API_BASE": self.url}

    def _clear(self) -> None:
        self._alerts.clear()
        self._by_pair.clear()
        self._endpoints.clear()

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
        ]

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    def _error(self, status: int, message: str, code: str) -> _Result:
        kind = "api_error" if status >= 500 else "invalid_request_error"
        if code == "idempotency_error":
            kind = "idempotency_error"
        return status, {"error": {"type": kind, "code": code, "message": message}}

    def _page(self, objects: list[dict[str, Any]], params: dict[str, Any], url: str) -> _Result:
        limit = _int(params.get("limit", 10))
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

    def _list_alerts(self, params: dict[str, Any], _: dict[str, str]) -> _Result:
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

    def _create_alert(self, params: dict[str, Any], _: dict[str, str]) -> _Result:
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
        gte = _int(usage.get("gte"))
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

    def _retrieve_alert(self, _: dict[str, Any], path: dict[str, str]) -> _Result:
        alert = self._alerts.get(path["id"])
        if alert is None:
            return self._error(404, f"No such alert: '{path['id']}'", "resource_missing")
        return 200, dict(alert)

    def _status(self, status: str) -> _Handler:
        def handler(_: dict[str, Any], path: dict[str, str]) -> _Result:
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

    def _list_endpoints(self, params: dict[str, Any], _: dict[str, str]) -> _Result:
        return self._page(list(reversed(self._endpoints.values())), params, "/v1/webhook_endpoints")

    def _create_endpoint(self, params: dict[str, Any], _: dict[str, str]) -> _Result:
        url = params.get("url")
        events = params.get("enabled_events")
        if not url or not isinstance(events, list) or not events:
            return self._error(400, "url and enabled_events are required", "parameter_missing")
        endpoint = self._make_endpoint(url, events, params.get("api_version"))
        endpoint["description"] = params.get("description")
        return 200, {**endpoint, "secret": f"whsec_{uuid.uuid4().hex}"}

    def _update_endpoint(self, params: dict[str, Any], path: dict[str, str]) -> _Result:
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


class FakeChargebee(_FakeAPI):
    """Chargebee's ``/api/v2/alerts`` and ``/api/v2/webhook_endpoints`` for one site.

    ``env()`` gives the variables that point :mod:`alerthooks.manager` here.
    """

    idempotency_header = "chargebee-idempotency-key"
    replayed_header = "chargebee-idempotency-replayed"

    def __init__(
        self, *, api_key: str = "test_fake", site: str = "acme-test", **options: Any
    ) -> None:
        self.api_key = api_key
        self.site = site
        self._alerts: dict[str, dict[str, Any]] = {}
        #: Basic auth each endpoint was given, by endpoint id (Chargebee never returns it).
        self.endpoint_auth: dict[str, tuple[str | None, str | None]] = {}
        super().__init__(**options)

    def env(self) -> dict[str, str]:
        """``CHARGEBEE_API_KEY``, ``CHARGEBEE_SITE`` and ``ALERTHOOKS_CHARGEBEE_API_BASE``."""
        return {
            "CHARGEBEE_API_KEY": self.api_key,
            "CHARGEBEE_SITE": self.site,
            "ALERTHOOKS_CHARGEBEE_API_BASE": self.url,
        }

    def _clear(self) -> None:
        self._alerts.clear()
        self._endpoints.clear()
        self.endpoint_auth.clear()

    # -- state for tests -------------------------------------------------------------------

    def alerts(self) -> list[dict[str, Any]]:
        """Copies of the alerts, oldest first."""
        with self._lock:
            return [json.loads(json.dumps(a)) for a in self._alerts.values()]

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
        ]

    def _authorized(self, request: Request) -> bool:
        expected = base64.b64encode(f"{self.api_key}:".encode()).decode()
        return request.headers.get("authorization") == f"Basic {expected}"

    def _error(self, status: int, message: str, code: str) -> _Result:
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

    def _page(self, name: str, objects: list[dict[str, Any]], params: dict[str, Any]) -> _Result:
        limit = _int(params.get("limit", 10))
        start = _int(params.get("offset", 0))
        if limit is None or not 1 <= limit <= 100 or start is None or start < 0:
            return self._error(400, "invalid limit or offset", "param_invalid")
        page = objects[start : start + limit]
        body: dict[str, Any] = {"list": [{name: dict(o)} for o in page]}
        if start + limit < len(objects):
            body["next_offset"] = str(start + limit)
        return 200, body

    def _list_alerts(self, params: dict[str, Any], _: dict[str, str]) -> _Result:
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
            "threshold": {"mode": threshold.get("mode"), "value": _num(threshold.get("value"))},
            "created_at": now,
            "updated_at": now,
        }
        self._alerts[alert["id"]] = {k: v for k, v in alert.items() if v is not None}
        return self._alerts[alert["id"]]

    def _create_alert(self, params: dict[str, Any], _: dict[str, str]) -> _Result:
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
            or _num(threshold.get("value")) is None
        ):
            return self._error(400, "threshold : invalid value", "param_invalid")
        return 200, {"alert": dict(self._make_alert(params))}

    def _retrieve_alert(self, _: dict[str, Any], path: dict[str, str]) -> _Result:
        alert = self._alerts.get(path["id"])
        if alert is None:
            return self._error(404, f"alert {path['id']} not found", "resource_not_found")
        return 200, {"alert": dict(alert)}

    def _update_alert(self, params: dict[str, Any], path: dict[str, str]) -> _Result:
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
                "value": _num(threshold.get("value", alert["threshold"]["value"])),
            }
        if "status" in params:
            if params["status"] not in ("enabled", "disabled"):
                return self._error(400, "status : invalid value", "param_invalid")
            alert["status"] = params["status"]
        alert["updated_at"] = int(time.time())
        return 200, {"alert": dict(alert)}

    def _delete_alert(self, _: dict[str, Any], path: dict[str, str]) -> _Result:
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

    def _list_endpoints(self, params: dict[str, Any], _: dict[str, str]) -> _Result:
        return self._page("webhook_endpoint", list(self._endpoints.values()), params)

    def _create_endpoint(self, params: dict[str, Any], _: dict[str, str]) -> _Result:
        if not params.get("name") or not params.get("url"):
            return self._error(400, "name and url are required", "param_invalid")
        return 200, {"webhook_endpoint": dict(self._make_endpoint(params))}

    def _update_endpoint(self, params: dict[str, Any], path: dict[str, str]) -> _Result:
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


def _num(value: Any) -> float | int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else number


def main(argv: list[str] | None = None) -> None:
    """``python -m alerthooks.testing.fakes [--latency S]``: serve both fakes until interrupted,
    printing the environment that points ``alerthooks plan``/``apply`` at them."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m alerthooks.testing.fakes")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each call")
    args = parser.parse_args(argv)
    stripe_api, chargebee_api = (
        FakeStripe(latency=args.latency),
        FakeChargebee(latency=args.latency),
    )
    with stripe_api, chargebee_api:
        for name, value in {**stripe_api.env(), **chargebee_api.env()}.items():
            print(f"export {name}={value}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


__all__ = ["FakeChargebee", "FakeStripe", "Fault", "main"]

if __name__ == "__main__":
    main()
