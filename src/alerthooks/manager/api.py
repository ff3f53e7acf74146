"""What every provider module offers the planner and the executor: the remote view of alerts
and webhook endpoints and the calls that change them. The HTTP transport and retry policy live
in :mod:`alerthooks.apis.http` and are re-exported here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from alerthooks.apis.http import (
    ProviderError,
    RetryPolicy,
    TransientError,
    http_client,
    json_body,
    retry_after,
    send,
    with_retries,
)

__all__ = [
    "AdoptMode",
    "Adoption",
    "CreatedEndpoint",
    "Declaration",
    "Mode",
    "ProviderAPI",
    "ProviderError",
    "RemoteAlert",
    "RemoteEndpoint",
    "RetryPolicy",
    "ScopedListing",
    "TransientError",
    "http_client",
    "json_body",
    "retry_after",
    "send",
    "with_retries",
]

#: Whether credentials reach a provider's live or test data.
Mode = Literal["live", "test"]

#: How a provider takes an existing alert under management: ``in_place`` writes the ownership
#: marker on it; ``replace`` creates the marked alert, then removes the old one (the API cannot
#: write the marker on an existing alert); ``identity`` needs nothing, as an alert at the
#: identity an entry names already is that entry's (Orb).
AdoptMode = Literal["in_place", "replace", "identity"]


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


@dataclass(frozen=True)
class Declaration:
    """An existing alert as an ``alerts.toml`` entry: ``fields`` (without ``key``), in the
    order they are written, and ``notes`` for what the API does not tell (one comment line
    each)."""

    fields: Mapping[str, Any]
    notes: tuple[str, ...] = ()


@runtime_checkable
class Adoption(Protocol):
    """What a :class:`ProviderAPI` adds to meet the alerts that already exist (``plan``'s
    unmanaged list and lookalikes, ``--adopt``, ``alerthooks import``). A provider API without
    it (all six members) lists unmanaged alerts by id only and sees no lookalikes.

    ``identity_fields`` are the :attr:`RemoteAlert.spec` fields that identify an alert (shown
    for each unmanaged one, and making import's keys); ``adopt_mode`` is how
    :meth:`adopt_alert` or the executor takes one over (see :data:`AdoptMode`).
    """

    adopt_mode: AdoptMode
    identity_fields: tuple[str, ...]

    def identity(self, alert: Any) -> tuple[Any, ...]:
        """The configured ``alert``'s identifying fields, as the provider defines them."""
        ...

    def remote_identities(self, remote: RemoteAlert) -> tuple[tuple[Any, ...], ...]:
        """Each :meth:`identity` an entry could have for the unmanaged ``remote`` to look like
        it (several where the API does not tell everything; none for an alert of a kind the
        manager does not make): creating such an entry would duplicate ``remote``."""
        ...

    def declare(self, remote: RemoteAlert) -> Declaration | None:
        """The entry that declares the unmanaged ``remote``, or None when this manager does
        not manage its kind of alert."""
        ...

    async def adopt_alert(self, alert_id: str, alert: Any, idempotency_key: str) -> None:
        """Write the ownership marker of ``alert`` on the existing alert (``in_place`` only)."""
        ...


@runtime_checkable
class ScopedListing(Protocol):
    """A provider API that lists alerts per customer or subscription (Orb, Metronome), so
    :meth:`ProviderAPI.list_alerts` reads only the ones the table names."""

    async def read_whole_account(self) -> None:
        """Make :meth:`ProviderAPI.list_alerts` read every customer and subscription of the
        account (``alerthooks import``)."""
        ...
