"""OpenMeter's API client (openmeterio/openmeter ``api/openapi.yaml``): the notification events
the receiver catches up from (``GET /api/v1/notification/events``), and the notification rules
the manager's :class:`~alerthooks.manager.openmeter.OpenMeterAPI` keeps
(``/api/v1/notification/rules``). Both list with ``page``/``pageSize`` and answer
``{items, page, pageSize, totalCount}``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from alerthooks.apis.http import (
    BearerClient,
    ProviderError,
    json_body,
    send,
    with_retries,
)

API_KEY_ENV = "OPENMETER_API_KEY"
API_BASE_ENV = "ALERTHOOKS_OPENMETER_API_BASE"
DEFAULT_API_BASE = "https://openmeter.cloud"
PAGE_SIZE = 100


class OpenMeterClient(BearerClient):
    """OpenMeter's API for one token: requests with retries, notification events and rules.

    ``api_base`` replaces ``https://openmeter.cloud`` (a self-hosted instance, or plain
    ``http://`` for fakes); at most ``concurrency`` requests are in flight at once.
    """

    default_base = DEFAULT_API_BASE

    api_key_env = API_KEY_ENV
    api_base_env = API_BASE_ENV

    async def pages(
        self, path: str, what: str, params: dict[str, Any] | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Each page's ``items`` of a ``page``/``pageSize`` listing, until a short page."""
        page = 1
        while True:
            body = await self._call(
                "GET", path, what, params={**(params or {}), "page": page, "pageSize": PAGE_SIZE}
            )
            items = [i for i in body.get("items") or () if isinstance(i, dict)]
            yield items
            total, size = body.get("totalCount"), body.get("pageSize")
            if not items:
                return
            if isinstance(total, int) and isinstance(size, int) and size > 0:
                if page * size >= total:  # the server may serve fewer than asked per page
                    return
            elif len(items) < PAGE_SIZE:
                return
            page += 1

    async def notification_events(self, since: datetime) -> AsyncIterator[dict[str, Any]]:
        """Every notification event created at or after ``since``, oldest first, all pages."""
        stamp = since.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
        params = {"from": stamp, "order": "ASC", "orderBy": "createdAt"}
        async for items in self.pages("/api/v1/notification/events", "list events", params):
            for item in items:
                yield item

    async def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> dict[str, Any]:
        """The answer's JSON object (``{}`` for 204, and for 404 with ``missing_ok``); 429,
        5xx, resets and timeouts are retried."""

        async def attempt(number: int) -> dict[str, Any]:
            response = await send(self._client, self._limit, method, path, params=params, json=json)
            status = response.status_code
            if status == 204 or (status == 404 and missing_ok):
                return {}
            body = json_body(response)
            if status >= 400 or not isinstance(body, dict):
                detail = body.get("detail") or body.get("title") if isinstance(body, dict) else None
                raise ProviderError(
                    f"openmeter: {what}: HTTP {status}: {detail or 'unexpected answer'}",
                    status=status,
                )
            return body

        return await with_retries(attempt, self._retry, f"openmeter: {what}")


__all__ = ["API_BASE_ENV", "API_KEY_ENV", "DEFAULT_API_BASE", "OpenMeterClient"]
