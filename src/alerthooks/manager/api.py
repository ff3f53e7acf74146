"""What every provider module offers the planner and the executor: the remote view of alerts
and webhook endpoints, the calls that change them, and the shared retry policy."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import httpx

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Whether credentials reach a provider's live or test data.
Mode = Literal["live", "test"]


class ProviderError(Exception):
    """A provider refused a request, or kept failing after every retry. One line, no secrets."""


class TransientError(Exception):
    """A failure worth retrying (429, 5xx, connection reset, timeout); raised by provider
    modules inside :func:`with_retries`, never seen by callers."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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
                    f"{what}: {exc} (gave up after {policy.attempts} attempts)"
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
        raise TransientError(f"HTTP {status}", retry_after=retry_after(response))
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


@dataclass(frozen=True)
class RemoteAlert:
    """An alert as the provider reports it. ``key`` is recovered from the ownership marker;
    ``None`` means the alert is not managed here and is never changed. ``spec`` holds the
    fields compared against the config, in the config's own terms."""

    provider: str
    id: str
    key: str | None
    enabled: bool
    spec: Mapping[str, Any]
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    #: Set on a just-created alert when the provider answered its first attempt from an earlier
    #: request with the same idempotency key (the alert was made by an earlier run).
    replayed: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class RemoteEndpoint:
    """A webhook endpoint as the provider reports it; ``api_version`` is the version its
    payloads are rendered in (``None``: the account's default)."""

    provider: str
    id: str
    url: str
    events: tuple[str, ...]
    enabled: bool
    api_version: str | None = None


@dataclass(frozen=True)
class CreatedEndpoint:
    """A newly created webhook endpoint; ``secret`` is its signing secret when the provider
    reveals one (Stripe, only at creation)."""

    id: str
    secret: str | None = field(default=None, repr=False)


class ProviderAPI(Protocol):
    """One provider's alert and webhook-endpoint API, as the planner and executor use it.

    ``updatable`` names the ``spec`` fields changed in place; any other changed field makes the
    plan a replace. ``event`` is the webhook event an endpoint must have enabled.
    ``endpoint_api_version`` is the payload version endpoints are created with (the one the
    receiver reads; ``None``: not pinned), and ``endpoint_version_in_place`` says whether
    :meth:`fix_endpoint` can move an existing endpoint to it (otherwise the plan only warns).
    ``removed`` is what :meth:`remove_alert` does, in the past tense (``"archived"``).
    """

    name: str
    mode: Mode
    account: str
    updatable: frozenset[str]
    event: str
    endpoint_api_version: str | None
    endpoint_version_in_place: bool
    removed: str

    def key_of(self, alert: Any) -> str:
        """The configured alert's key."""
        ...

    def desired_spec(self, alert: Any) -> dict[str, Any]:
        """The configured alert's fields in the same shape as :attr:`RemoteAlert.spec`."""
        ...

    def check_limits(self, desired: list[Any], kept_remote: list[RemoteAlert]) -> list[str]:
        """Problems with the provider's limits once the plan is applied (one line each)."""
        ...

    def replace_removes_first(
        self, alert: Any, old: RemoteAlert, desired: list[Any], kept_remote: list[RemoteAlert]
    ) -> bool:
        """Whether replacing ``old`` with ``alert`` must remove ``old`` first, because the
        provider would refuse one more alert in the meantime."""
        ...

    async def list_alerts(self) -> list[RemoteAlert]:
        """Every alert on the account, all pages."""
        ...

    async def list_endpoints(self) -> list[RemoteEndpoint]:
        """Every webhook endpoint on the account, all pages."""
        ...

    async def create_alert(self, alert: Any, idempotency_key: str) -> RemoteAlert:
        """Create the configured alert with the ownership marker; returns it as created."""
        ...

    async def update_alert(self, alert_id: str, alert: Any, idempotency_key: str) -> None:
        """Change the :attr:`updatable` fields and the enabled state in place."""
        ...

    async def set_enabled(self, alert_id: str, enabled: bool, idempotency_key: str) -> None:
        """Activate or deactivate an alert."""
        ...

    async def remove_alert(self, alert_id: str, idempotency_key: str) -> None:
        """Archive (Stripe) or delete (Chargebee) an alert."""
        ...

    async def create_endpoint(self, url: str, idempotency_key: str) -> CreatedEndpoint:
        """Create a webhook endpoint for ``url`` sending :attr:`event`."""
        ...

    async def fix_endpoint(self, endpoint: RemoteEndpoint, idempotency_key: str) -> None:
        """Enable the endpoint and add :attr:`event` to its events, keeping the others (and
        set :attr:`endpoint_api_version` when :attr:`endpoint_version_in_place`)."""
        ...

    async def aclose(self) -> None:
        """Release the HTTP connections."""
        ...
