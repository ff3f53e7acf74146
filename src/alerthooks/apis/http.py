"""The HTTP transport every provider API client shares: one ``httpx.AsyncClient`` per API,
a concurrency limit, and the retry policy (429, 5xx, resets and timeouts are retried with
exponential backoff, honouring ``Retry-After``). Used by :mod:`alerthooks.apis`' clients, which
both the receiver (catch-up, reconcile, Chargebee's fetch verification) and the manager use."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import httpx

logger = logging.getLogger(__name__)

T = TypeVar("T")


class MissingCredentials(Exception):
    """A provider has an API to read but no credentials for it; ``str(error)`` is one line
    naming what to set (``STRIPE_API_KEY: not set``)."""


class ProviderError(Exception):
    """A provider refused a request, or kept failing after every retry. One line, no secrets;
    ``status`` is the last HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientError(Exception):
    """A failure worth retrying (429, 5xx, connection reset, timeout); raised by provider
    modules inside :func:`with_retries`, never seen by callers."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: ``attempts`` in total per request, exponential backoff from ``backoff``
    seconds capped at ``max_backoff``, and ``timeout`` seconds per request."""

    attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 8.0
    timeout: float = 30.0


async def with_retries(call: Callable[[int], Awaitable[T]], policy: RetryPolicy, what: str) -> T:
    """Run ``call(attempt)`` until it stops raising :class:`TransientError` or the attempts run
    out (then :class:`ProviderError`)."""
    for attempt in range(policy.attempts):
        try:
            return await call(attempt)
        except TransientError as exc:
            if attempt + 1 >= policy.attempts:
                raise ProviderError(
                    f"{what}: {exc} (gave up after {policy.attempts} attempts)",
                    status=exc.status,
                ) from None
            delay = min(policy.max_backoff, policy.backoff * 2**attempt)
            delay *= 0.5 + random.random() / 2
            if exc.retry_after is not None:
                delay = max(delay, min(exc.retry_after, policy.max_backoff))
            logger.warning("%s: %s; retrying in %.2fs", what, exc, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def http_client(
    base_url: str, retry: RetryPolicy, concurrency: int, **options: Any
) -> httpx.AsyncClient:
    """The one ``httpx.AsyncClient`` a provider module shares for ``base_url``: ``retry``'s
    timeout per request, keep-alive for ``concurrency`` connections; ``options`` (headers,
    auth) go to httpx."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=retry.timeout,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        **options,
    )


async def send(
    client: httpx.AsyncClient, limit: asyncio.Semaphore, method: str, path: str, **options: Any
) -> httpx.Response:
    """One request under ``limit``, read whole; a timeout, a reset, a 429 or a 5xx raises
    :class:`TransientError` (with the answer's ``Retry-After``), for :func:`with_retries`.
    ``options`` go to ``httpx.AsyncClient.request``."""
    async with limit:
        try:
            response = await client.request(method, path, **options)
            await response.aread()
        except httpx.TimeoutException:
            raise TransientError("timed out") from None
        except httpx.TransportError as exc:
            raise TransientError(f"connection failed ({type(exc).__name__})") from None
    status = response.status_code
    if status == 429 or status >= 500:
        raise TransientError(f"HTTP {status}", retry_after=retry_after(response), status=status)
    return response


def json_body(response: httpx.Response) -> Any:
    """The answer's JSON, or None when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def retry_after(response: httpx.Response) -> float | None:
    """The answer's ``Retry-After`` in seconds, or None when it has none in seconds."""
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def env_value(env: Mapping[str, str], name: str) -> str | None:
    """``env[name]`` stripped, or ``None`` when unset or empty."""
    return env.get(name, "").strip() or None


_Client = TypeVar("_Client", bound="BearerClient")


class BearerClient:
    """The shared part of an API reached with one bearer token (Metronome, Lago, OpenMeter): one
    ``httpx.AsyncClient`` for ``api_base`` (:attr:`default_base` unless another is given) with
    the retry policy's timeout, and at most ``concurrency`` requests in flight. A subclass names
    its default address and the variables :meth:`from_env` reads."""

    default_base: ClassVar[str] = ""
    api_key_env: ClassVar[str] = ""
    api_base_env: ClassVar[str] = ""

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str | None = None,
        concurrency: int = 8,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._retry = retry or RetryPolicy()
        self._client = http_client(
            (api_base or self.default_base).rstrip("/"),
            self._retry,
            concurrency,
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
        )
        self._limit = asyncio.Semaphore(concurrency)

    @classmethod
    def from_env(cls: type[_Client], env: Mapping[str, str] | None = None) -> _Client:
        """A client for the key in :attr:`api_key_env` at the address in :attr:`api_base_env`
        (:attr:`default_base` when unset); raises :class:`MissingCredentials` without a key."""
        env = os.environ if env is None else env
        api_key = env_value(env, cls.api_key_env)
        if not api_key:
            raise MissingCredentials(f"{cls.api_key_env}: not set")
        return cls(api_key, api_base=env_value(env, cls.api_base_env))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    async def aclose(self) -> None:
        """Close the shared HTTP client."""
        await self._client.aclose()
