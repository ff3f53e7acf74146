"""Metronome's API client over its HTTP API, with one shared ``httpx.AsyncClient``.

The receiver reads each customer's alert statuses through it (reconcile); the manager's
:class:`~alerthooks.manager.metronome.MetronomeAPI` subclasses it for alerts.
"""

from __future__ import annotations

from typing import Any

from alerthooks.apis.http import (
    BearerClient,
    ProviderError,
    json_body,
    send,
    with_retries,
)

API_KEY_ENV = "METRONOME_API_KEY"
API_BASE_ENV = "ALERTHOOKS_METRONOME_API_BASE"
DEFAULT_API_BASE = "https://api.metronome.com"


class MetronomeClient(BearerClient):
    """Metronome's API for one token: requests with retries, and customers' alerts.

    ``api_base`` replaces ``https://api.metronome.com`` (plain ``http://`` works, for fakes);
    at most ``concurrency`` requests are in flight at once.
    """

    default_base = DEFAULT_API_BASE

    api_key_env = API_KEY_ENV
    api_base_env = API_BASE_ENV

    async def customer_statuses(self, customer: str) -> list[tuple[dict[str, Any], Any]]:
        """Each enabled alert ``customer`` sees (its own and those for all customers) with its
        ``customer_status`` as Metronome reports it (``ok``, ``in_alarm``, ``evaluating`` or
        None), all pages."""
        return [
            (entry["alert"], entry.get("customer_status"))
            for entry in await self._entries(customer, ["ENABLED"])
            if isinstance(entry.get("alert"), dict)
        ]

    async def customer_alerts(self, customer: str, statuses: list[str]) -> list[dict[str, Any]]:
        """The alerts ``customer`` sees whose status is one of ``statuses`` (``ENABLED``,
        ``DISABLED``, ``ARCHIVED``), all pages."""
        return [
            entry["alert"]
            for entry in await self._entries(customer, statuses)
            if isinstance(entry.get("alert"), dict)
        ]

    async def customer_ids(self) -> list[str]:
        """The id of every customer (``GET /v1/customers``, following ``next_page``)."""
        ids: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100}
            if cursor:
                params["next_page"] = cursor
            body = await self._call("GET", "/v1/customers", "list customers", params=params)
            ids.extend(
                str(c["id"]) for c in body.get("data") or () if isinstance(c, dict) and c.get("id")
            )
            cursor = body.get("next_page")
            if not cursor:
                return ids

    async def _entries(self, customer: str, statuses: list[str]) -> list[dict[str, Any]]:
        """The entries of ``POST /v1/customer-alerts/list`` for ``customer``, all pages."""
        entries: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params = {"next_page": cursor} if cursor else None
            body = await self._call(
                "POST",
                "/v1/customer-alerts/list",
                f"list alerts of customer {customer}",
                params=params,
                json={"customer_id": customer, "alert_statuses": statuses},
            )
            entries.extend(e for e in body.get("data") or () if isinstance(e, dict))
            cursor = body.get("next_page")
            if not cursor:
                return entries

    async def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        conflict_ok: bool = False,
        missing_ok: bool = False,
    ) -> dict[str, Any]:
        """The answer's JSON object; 429, 5xx, resets and timeouts are retried. With
        ``conflict_ok`` a 409 answers ``{"_conflict": True, "message": ...}``."""

        async def attempt(number: int) -> dict[str, Any]:
            response = await send(self._client, self._limit, method, path, params=params, json=json)
            status = response.status_code
            if status == 404 and missing_ok:
                return {}
            body = json_body(response)
            message = body.get("message") if isinstance(body, dict) else None
            if status == 409 and conflict_ok:
                return {"_conflict": True, "message": message}
            if status >= 400 or not isinstance(body, dict):
                raise ProviderError(
                    f"metronome: {what}: HTTP {status}: {message or 'unexpected answer'}",
                    status=status,
                )
            return body

        return await with_retries(attempt, self._retry, f"metronome: {what}")
