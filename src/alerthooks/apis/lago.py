"""Lago's API client (getlago/lago-api ``config/routes.rb``, ``app/controllers/api/v1/``): the
webhook public key the receiver needs for ``jwt`` endpoints, and the alert routes the manager's
:class:`~alerthooks.manager.lago.LagoAPI` uses: ``/api/v1/subscriptions/{external_id}/alerts``
and ``/api/v1/customers/{external_customer_id}/wallets/{wallet_code}/alerts``, each with
``/{code}`` for one alert (show, update, delete).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import httpx

from alerthooks.apis.http import (
    BearerClient,
    ProviderError,
    json_body,
    send,
    with_retries,
)

logger = logging.getLogger(__name__)

API_KEY_ENV = "LAGO_API_KEY"
API_URL_ENV = "LAGO_API_URL"
DEFAULT_API_URL = "https://api.getlago.com"
"""Lago Cloud's API URL: the JWT issuer and the API base unless ``LAGO_API_URL`` says another
(a self-hosted instance's own URL)."""
PER_PAGE = 100


def fetch_public_key(api_url: str, api_key: str, *, timeout: float = 10.0) -> str | None:
    """The instance's webhook public key (base64 of a PEM) from
    ``GET {api_url}/api/v1/webhooks/json_public_key``; None (logged) when it cannot be had, so
    ``jwt`` deliveries are refused (503) rather than the app failing to start. Synchronous: it
    runs once, when the provider is built."""
    url = f"{api_url.rstrip('/')}/api/v1/webhooks/json_public_key"
    try:
        response = httpx.get(url, headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout)
        response.raise_for_status()
        key = response.json()["webhook"]["public_key"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        logger.warning("Lago public key not fetched from %s: %s", url, exc)
        return None
    return key if isinstance(key, str) and key.strip() else None


def subscription_path(external_subscription_id: str) -> str:
    """The alerts of a subscription, by its external id."""
    return f"/api/v1/subscriptions/{quote(external_subscription_id, safe='')}/alerts"


def wallet_path(external_customer_id: str, wallet_code: str) -> str:
    """The alerts of a customer's wallet, by the customer's external id and the wallet's code."""
    customer, wallet = quote(external_customer_id, safe=""), quote(wallet_code, safe="")
    return f"/api/v1/customers/{customer}/wallets/{wallet}/alerts"


class LagoClient(BearerClient):
    """Lago's API for one API key: requests with retries, alerts per subscription or wallet.

    ``api_base`` (``LAGO_API_URL`` in :meth:`from_env`) replaces ``https://api.getlago.com``
    (plain ``http://`` works, for fakes); at most ``concurrency`` requests are in flight at
    once.
    """

    default_base = DEFAULT_API_URL

    api_key_env = API_KEY_ENV
    api_base_env = API_URL_ENV

    async def alerts(self, path: str) -> list[dict[str, Any]]:
        """Every alert under ``path`` (:func:`subscription_path` or :func:`wallet_path`), all
        pages; a subscription or wallet Lago does not know has none."""
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            body = await self._call(
                "GET",
                path,
                f"list alerts of {path}",
                params={"page": page, "per_page": PER_PAGE},
                missing_ok=True,
            )
            found.extend(a for a in body.get("alerts") or () if isinstance(a, dict))
            meta = body.get("meta")
            following = meta.get("next_page") if isinstance(meta, dict) else None
            if not isinstance(following, int) or following <= page:
                return found
            page = following

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
        """The answer's JSON object; 429, 5xx, resets and timeouts are retried. With
        ``missing_ok`` a 404 answers ``{}``; a 422 answers ``{"_invalid": details}``."""

        async def attempt(number: int) -> dict[str, Any]:
            response = await send(self._client, self._limit, method, path, params=params, json=json)
            status = response.status_code
            if status == 404 and missing_ok:
                return {}
            body = json_body(response)
            if status == 422 and isinstance(body, dict):
                return {"_invalid": body.get("error_details") or {}}
            if status >= 400 or not isinstance(body, dict):
                detail = body.get("code") or body.get("error") if isinstance(body, dict) else None
                raise ProviderError(
                    f"lago: {what}: HTTP {status}: {detail or 'unexpected answer'}", status=status
                )
            return body

        return await with_retries(attempt, self._retry, f"lago: {what}")


__all__ = [
    "API_KEY_ENV",
    "API_URL_ENV",
    "DEFAULT_API_URL",
    "LagoClient",
    "fetch_public_key",
    "subscription_path",
    "wallet_path",
]
