"""Chargebee's API client over its HTTP API (``/api/v2``), with one shared
``httpx.AsyncClient``: the chargebee SDK (v3) is synchronous and opens a new HTTP client for
every request, so running calls concurrently would mean a thread per call and a fresh connection
(and TLS handshake) each time.

The receiver reads events (catch-up, and one event by id for ``verify="fetch"``) and alert
statuses (reconcile) through it; the manager's
:class:`~alerthooks.manager.chargebee.ChargebeeAPI` subclasses it for alerts and webhook
endpoints. The ownership marker kept in an alert's ``meta`` is written and read here only.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal
from urllib.parse import quote

import httpx

from alerthooks.apis.http import (
    MissingCredentials,
    ProviderError,
    RetryPolicy,
    env_value,
    http_client,
    json_body,
    send,
    with_retries,
)

SITE_ENV = "CHARGEBEE_SITE"
API_KEY_ENV = "CHARGEBEE_API_KEY"
API_BASE_ENV = "ALERTHOOKS_CHARGEBEE_API_BASE"
PAGE_SIZE = 100
IDEMPOTENCY_HEADER = "chargebee-idempotency-key"
REPLAYED_HEADER = "chargebee-idempotency-replayed"
#: A Chargebee site name (the ``acme`` of ``acme.chargebee.com``).
SITE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}")

# Where the manager keeps its key in an alert's ``meta``, and what a key looks like.
_META_FIELD = "alerthooks"
_META_PROBE = f'"{_META_FIELD}"'  # cheap test before parsing: most meta holds no marker
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def marker_meta(key: str) -> str:
    """The ``meta`` JSON string that marks an alert as managed under ``key``."""
    return json.dumps({_META_FIELD: {"key": key}}, separators=(",", ":"))


def key_from_meta(meta: Any) -> str | None:
    """The manager's key in an alert's ``meta`` (``{"alerthooks": {"key": "..."}}``, as a JSON
    string or object), or None. ``meta`` is the user's free-form field: anything else in it is
    no key, never an error."""
    if isinstance(meta, str):
        if _META_PROBE not in meta:
            return None
        try:
            meta = json.loads(meta)
        except ValueError:
            return None
    if not isinstance(meta, dict):
        return None
    marker = meta.get(_META_FIELD)
    key = marker.get("key") if isinstance(marker, dict) else None
    return key if isinstance(key, str) and _KEY.fullmatch(key) else None


def form_encode(params: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Chargebee's (and Stripe's) bracket form encoding: ``threshold[mode]``, ``events[0]``."""
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        full = f"{prefix}[{name}]" if prefix else str(name)
        if value is None:
            continue
        if isinstance(value, dict):
            pairs.extend(form_encode(value, full))
        elif isinstance(value, list | tuple):
            pairs.extend(form_encode({str(i): v for i, v in enumerate(value)}, full))
        elif isinstance(value, bool):
            pairs.append((full, "true" if value else "false"))
        else:
            pairs.append((full, str(value)))
    return pairs


def site_api_base(site: str) -> str:
    """``https://{site}.chargebee.com``; raises :class:`ValueError` for a name that is not a
    Chargebee site's."""
    if not SITE_PATTERN.fullmatch(site):
        raise ValueError(f"chargebee_site: {site!r} is not a Chargebee site name")
    return f"https://{site}.chargebee.com"


class ChargebeeClient:
    """Chargebee's API for one site: requests with retries, paging, events, alerts and alert
    statuses.

    ``api_base`` replaces ``https://{site}.chargebee.com`` (plain ``http://`` works, for
    fakes); at most ``concurrency`` requests are in flight at once.
    """

    def __init__(
        self,
        api_key: str,
        site: str,
        *,
        api_base: str | None = None,
        concurrency: int = 8,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.site = site
        self._retry = retry or RetryPolicy()
        base = (api_base or f"https://{site}.chargebee.com").rstrip("/")
        self._client = http_client(
            f"{base}/api/v2",
            self._retry,
            concurrency,
            auth=httpx.BasicAuth(api_key, ""),
            headers={"Accept": "application/json"},
        )
        self._limit = asyncio.Semaphore(concurrency)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ChargebeeClient:
        """A client for ``CHARGEBEE_API_KEY`` and ``CHARGEBEE_SITE`` (and
        ``ALERTHOOKS_CHARGEBEE_API_BASE``); raises :class:`MissingCredentials` without them."""
        env = os.environ if env is None else env
        api_key, site = env_value(env, API_KEY_ENV), env_value(env, SITE_ENV)
        missing = [name for name, value in ((API_KEY_ENV, api_key), (SITE_ENV, site)) if not value]
        if missing:
            raise MissingCredentials(f"{' and '.join(missing)}: not set")
        assert api_key and site
        return cls(api_key, site, api_base=env_value(env, API_BASE_ENV))

    def __repr__(self) -> str:
        return f"ChargebeeClient(site {self.site})"

    async def aclose(self) -> None:
        """Close the shared HTTP client."""
        await self._client.aclose()

    # -- reads ---------------------------------------------------------------------------

    async def alerts(self) -> list[dict[str, Any]]:
        """Every alert object on the site, 100 per page (``GET /alerts``)."""
        return [
            entry["alert"]
            for entry in await self._list("/alerts", "list alerts")
            if isinstance(entry.get("alert"), dict)
        ]

    async def events(self, event_type: str, after: int) -> AsyncIterator[dict[str, Any]]:
        """Every event of ``event_type`` that occurred after ``after`` (Unix seconds), read 100
        per page (``GET /events``, following ``next_offset``); each item of the list is
        ``{"event": {...}}`` and the event is what is yielded."""
        offset: str | None = None
        while True:
            params: dict[str, Any] = {
                "event_type[is]": event_type,
                "occurred_at[after]": after,
                "limit": PAGE_SIZE,
            }
            if offset:
                params["offset"] = offset
            body = await self._call("GET", "/events", "list events", params=params)
            for entry in body.get("list") or ():
                event = entry.get("event") if isinstance(entry, dict) else None
                if isinstance(event, dict):
                    yield event
            offset = body.get("next_offset")
            if not offset or not isinstance(offset, str):
                return

    async def retrieve_event(self, event_id: str) -> dict[str, Any] | None:
        """The event Chargebee holds under ``event_id`` (``GET /events/{id}``), or None when
        it knows no such event (404); raises :class:`ProviderError` (with ``status``) when the
        API refuses or keeps failing."""
        body = await self._call(
            "GET",
            f"/events/{quote(event_id, safe='')}",
            f"retrieve event {event_id}",
            missing_ok=True,
        )
        if not body:
            return None
        event = body.get("event")
        if not isinstance(event, dict):
            raise ProviderError(f"chargebee: retrieve event {event_id}: the answer holds no event")
        return event

    async def alert_statuses(
        self, kind: Literal["subscriptions", "alerts"], id: str
    ) -> list[dict[str, Any]]:
        """The ``alert_status`` objects of one subscription
        (``GET /subscriptions/{id}/alert_statuses``) or of one alert across its subscriptions
        (``GET /alerts/{id}/alert_statuses``), all pages."""
        path = f"/{kind}/{quote(id, safe='')}/alert_statuses"
        entries = await self._list(path, f"list alert statuses of {kind[:-1]} {id}")
        return [e["alert_status"] for e in entries if isinstance(e.get("alert_status"), dict)]

    async def _list(self, path: str, what: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        offset: str | None = None
        while True:
            params: dict[str, Any] = {"limit": PAGE_SIZE}
            if offset:
                params["offset"] = offset
            body = await self._call("GET", path, what, params=params)
            entries.extend(e for e in body.get("list") or () if isinstance(e, dict))
            offset = body.get("next_offset")
            if not offset:
                return entries

    async def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        key: str | None = None,
        missing_ok: bool = False,
    ) -> dict[str, Any]:
        """The answer's JSON body (``{}`` for a 404 with ``missing_ok``); ``"_replayed"`` is
        added (True) when the first attempt was answered from an earlier request with the same
        idempotency key."""
        headers = {IDEMPOTENCY_HEADER: key} if key else {}
        content = form_encode(data) if data is not None else None

        async def attempt(number: int) -> dict[str, Any]:
            response = await send(
                self._client,
                self._limit,
                method,
                path,
                params=params,
                data=dict(content) if content else None,
                headers=headers,
            )
            status = response.status_code
            if status == 404 and missing_ok:
                return {}
            body = json_body(response)
            if status >= 400 or not isinstance(body, dict):
                message = body.get("message") if isinstance(body, dict) else None
                raise ProviderError(
                    f"chargebee: {what}: HTTP {status}: {message or 'unexpected response'}",
                    status=status,
                )
            if number == 0 and response.headers.get(REPLAYED_HEADER) == "true":
                body["_replayed"] = True
            return body

        return await with_retries(attempt, self._retry, f"chargebee: {what}")
