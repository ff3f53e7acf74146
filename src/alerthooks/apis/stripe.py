"""Stripe's API client, through the official SDK's async client: authentication, form
encoding, idempotency keys and error types from the SDK, with answers read as the JSON they are
rather than turned into ``StripeObject`` instances (about 0.2 ms of CPU per object).

The receiver reads ``GET /v1/events`` through it (catch-up); the manager's
:class:`~alerthooks.manager.stripe.StripeAPI` subclasses it for billing alerts and webhook
endpoints.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import stripe

from alerthooks.apis.http import (
    MissingCredentials,
    ProviderError,
    RetryPolicy,
    TransientError,
    env_value,
    with_retries,
)

API_KEY_ENV = "STRIPE_API_KEY"
API_BASE_ENV = "ALERTHOOKS_STRIPE_API_BASE"
PAGE_SIZE = 100
#: The answer header Stripe sets when it replayed an earlier request's idempotency key.
REPLAYED_HEADER = "idempotent-replayed"

_SECRET = re.compile(r"whsec_[A-Za-z0-9]+")


class _RedactSigningSecrets(logging.Filter):
    """The SDK logs whole response bodies at DEBUG, and a created endpoint's body holds its
    signing secret; keep the secret out of logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "whsec_" in record.msg:
            record.msg = _SECRET.sub("whsec_[redacted]", record.msg)
        return True


if not any(isinstance(f, _RedactSigningSecrets) for f in logging.getLogger("stripe").filters):
    logging.getLogger("stripe").addFilter(_RedactSigningSecrets())


class StripeClient:
    """Stripe's API for one key: requests with retries, paging, and the events list.

    ``api_base`` replaces ``https://api.stripe.com`` (plain ``http://`` works, for fakes);
    at most ``concurrency`` requests are in flight at once.
    """

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str | None = None,
        concurrency: int = 8,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._key_hint = api_key[:8]
        self._retry = retry or RetryPolicy()
        self._http = stripe.HTTPXClient(timeout=self._retry.timeout)
        self._client = stripe.StripeClient(
            api_key,
            http_client=self._http,
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            max_network_retries=0,
        )
        self._limit = asyncio.Semaphore(concurrency)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StripeClient:
        """A client for ``STRIPE_API_KEY`` (and ``ALERTHOOKS_STRIPE_API_BASE``); raises
        :class:`MissingCredentials` without a key."""
        env = os.environ if env is None else env
        api_key = env_value(env, API_KEY_ENV)
        if not api_key:
            raise MissingCredentials(f"{API_KEY_ENV}: not set")
        return cls(api_key, api_base=env_value(env, API_BASE_ENV))

    def __repr__(self) -> str:
        return f"StripeClient({self._key_hint}…)"

    async def aclose(self) -> None:
        """Close the shared HTTP client."""
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def _list_all(self, what: str, path: str) -> list[dict[str, Any]]:
        """Every object of a Stripe list, following ``starting_after`` 100 at a time (each page
        needs the previous page's last id, so pages are read one after another)."""
        objects: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": PAGE_SIZE}
            if after:
                params["starting_after"] = after
            page = await self._call(what, "get", path, params)
            data = page.get("data") or []
            objects.extend(data)
            if not page.get("has_more") or not data:
                return objects
            after = data[-1]["id"]

    async def events(self, event_type: str, since: int) -> AsyncIterator[dict[str, Any]]:
        """Every event of ``event_type`` created at or after ``since`` (Unix seconds), newest
        first, read 100 per page (``GET /v1/events``, following ``has_more``)."""
        after: str | None = None
        while True:
            params: dict[str, Any] = {
                "type": event_type,
                "created": {"gte": since},
                "limit": PAGE_SIZE,
            }
            if after:
                params["starting_after"] = after
            page = await self._call("list events", "get", "/v1/events", params)
            data = [obj for obj in page.get("data") or () if isinstance(obj, dict)]
            for obj in data:
                yield obj
            if not page.get("has_more") or not data or not isinstance(data[-1].get("id"), str):
                return
            after = data[-1]["id"]

    async def fetch_event(self, event_id: str, *, context: str | None = None) -> dict[str, Any]:
        """``GET /v1/events/{event_id}``: one event as Stripe keeps it (30 days), read in the
        account ``context`` names (a thin event's ``context``), if any."""
        return await self._call("retrieve event", "get", f"/v1/events/{event_id}", _in(context))

    async def fetch_thin_event(
        self, event_id: str, *, context: str | None = None
    ) -> dict[str, Any]:
        """``GET /v2/core/events/{event_id}``: a thin event; for one of a v1 event (such as
        ``v1.billing.alert.triggered``), ``snapshot_event`` names that event."""
        path = f"/v2/core/events/{event_id}"
        return await self._call("retrieve thin event", "get", path, _in(context))

    async def _call(
        self,
        what: str,
        method: str,
        path: str,
        params: dict[str, Any],
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        return (await self._call_counted(what, method, path, params, idempotency_key))[0]

    async def _call_counted(
        self,
        what: str,
        method: str,
        path: str,
        params: dict[str, Any],
        idempotency_key: str | None = None,
    ) -> tuple[dict[str, Any], Mapping[str, str], int]:
        """The answer's JSON object and headers, and the number of the attempt that got it (0 =
        the first)."""
        options = {"idempotency_key": idempotency_key} if idempotency_key else {}

        async def attempt(number: int) -> tuple[dict[str, Any], Mapping[str, str], int]:
            async with self._limit:
                try:
                    response = await self._client.raw_request_async(
                        method, path, **params, **options
                    )
                    if not isinstance(response.data, dict):
                        raise ProviderError(f"stripe: {what}: the answer is not a JSON object")
                    return response.data, response.headers, number
                except stripe.APIConnectionError:
                    raise TransientError("connection failed or timed out") from None
                except stripe.StripeError as exc:
                    status = exc.http_status or 0
                    if status in (409, 429) or status >= 500:
                        raise TransientError(f"HTTP {status}", status=status) from None
                    message = exc.user_message or (exc.error.message if exc.error else None)
                    raise ProviderError(
                        f"stripe: {what}: HTTP {status}: {message or exc}", status=status
                    ) from None

        return await with_retries(attempt, self._retry, f"stripe: {what}")


def _in(context: str | None) -> dict[str, Any]:
    """The request option that reads in the account a thin event's ``context`` names."""
    return {"stripe_context": context} if context else {}
