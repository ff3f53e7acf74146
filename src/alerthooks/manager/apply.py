"""Execute a plan: independent changes run concurrently, each request retried on 429, 5xx,
resets and timeouts, every write carrying an idempotency key."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alerthooks.manager.api import Adoption, ProviderAPI, ProviderError, RetryPolicy
from alerthooks.manager.config import Config, ConfigError, Credentials
from alerthooks.manager.plan import Change, ChangeKind, Plan, PlanError, build_plan
from alerthooks.manager.registry import PROVIDERS, provider_spec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What applying one change did; ``error`` is set when it failed."""

    change: Change
    message: str
    error: str | None = None


@dataclass(frozen=True)
class NewEndpointSecret:
    """The signing secret of a webhook endpoint created by this apply (shown only once)."""

    provider: str
    url: str
    secret: str = field(repr=False)

    @property
    def env(self) -> str:
        """The environment variable where the receiver reads this secret (e.g.
        ``STRIPE_WEBHOOK_SECRET``), from the provider's registry entry; ``""`` when the
        provider is not registered or names none."""
        spec = PROVIDERS.get(self.provider)
        return (spec.endpoint_secret_env if spec is not None else None) or ""


@dataclass
class ApplyResult:
    """Every change's outcome, and the secrets of newly created endpoints."""

    outcomes: list[Outcome] = field(default_factory=list)
    secrets: list[NewEndpointSecret] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        """Outcomes with an error; a later apply picks these up again."""
        return [o for o in self.outcomes if o.error is not None]

    @property
    def ok(self) -> bool:
        """Whether every change succeeded."""
        return not self.failed


def idempotency_key(*parts: Any) -> str:
    """A stable idempotency key derived from the planned change."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return f"alerthooks-{digest[:48]}"


def make_apis(
    config: Config,
    credentials: Credentials,
    *,
    concurrency: int = 8,
    retry: RetryPolicy | None = None,
) -> dict[str, ProviderAPI]:
    """One API client per provider the config names, from ``credentials``.

    Raises :class:`ConfigError` (one line per problem, before any request) when a credential
    is missing or malformed.
    """
    problems: list[str] = []
    for name, table in config.tables.items():
        problems.extend(provider_spec(name).check_credentials(credentials.of(name), table))
    if problems:
        raise ConfigError("\n".join(problems))
    return {
        name: provider_spec(name).make_api(
            credentials.of(name), table, concurrency=concurrency, retry=retry
        )
        for name, table in config.tables.items()
    }


async def apply_plan(
    plan: Plan,
    apis: Mapping[str, ProviderAPI],
    on_outcome: Callable[[Outcome], None] | None = None,
) -> ApplyResult:
    """Apply every write in ``plan`` concurrently (each provider's client bounds how many
    requests are in flight). A failed change does not stop the others; the next apply
    finishes what this one left. ``on_outcome`` is called as each change finishes (progress).

    Raises :class:`PlanError` before any write when the plan has :attr:`Plan.refusals` (a
    create that would duplicate an existing alert)."""
    if plan.refusals:
        raise PlanError("\n".join(plan.refusals))
    run = uuid.uuid4().hex
    result = ApplyResult()
    changes = [c for c in plan.changes if c.is_write]

    async def one(change: Change) -> Outcome:
        outcome = await _apply_change(change, apis[change.provider], run, result)
        if on_outcome is not None:
            on_outcome(outcome)
        return outcome

    outcomes = await asyncio.gather(*(one(c) for c in changes))
    result.outcomes.extend(outcomes)
    return result


async def _apply_change(change: Change, api: ProviderAPI, run: str, result: ApplyResult) -> Outcome:
    try:
        message = await _execute(change, api, run, result)
    except ProviderError as exc:
        logger.error("%s %s %s failed: %s", change.provider, change.kind.value, change.key, exc)
        return Outcome(change, "failed", str(exc))
    logger.info("%s %s %s: %s", change.provider, change.kind.value, change.key, message)
    return Outcome(change, message)


async def _execute(change: Change, api: ProviderAPI, run: str, result: ApplyResult) -> str:
    kind = change.kind
    remote = change.remote
    desired = change.desired
    if kind in (ChangeKind.CREATE, ChangeKind.REPLACE, ChangeKind.ADOPT_REPLACE):
        # Stable across runs: a rerun of the same planned create replays instead of duplicating.
        key = idempotency_key(
            api.name,
            "adopt" if kind is ChangeKind.ADOPT_REPLACE else "create",
            api.key_of(desired),
            api.desired_spec(desired),
            remote.id if remote else None,
        )
        if remote is not None and change.remove_first:
            await api.remove_alert(remote.id, idempotency_key(run, "remove", remote.id))
        created = await api.create_alert(desired, key)
        if created.replayed:
            # An earlier run made this alert, yet the listing did not show it: it has been
            # archived or deleted since. Make a new one under a key of this run.
            logger.info(
                "%s %s: earlier alert %s is gone; creating anew", api.name, change.key, created.id
            )
            created = await api.create_alert(desired, idempotency_key(run, key))
        if created.enabled != desired.enabled:
            await api.set_enabled(created.id, desired.enabled, idempotency_key(run, created.id))
        message = f"created {created.id}"
        if remote is not None and change.remove_first:
            message += f", {api.removed} {remote.id} first"
        elif remote is not None:
            await api.remove_alert(remote.id, idempotency_key(run, "remove", remote.id))
            message += f", {api.removed} {remote.id}"
        for copy in change.copies:
            await api.remove_alert(copy.id, idempotency_key(run, "remove", copy.id))
            message += f", {api.removed} {copy.id}"
        return message
    if kind is ChangeKind.ADOPT:
        assert remote is not None and isinstance(api, Adoption)
        await api.adopt_alert(remote.id, desired, idempotency_key(run, "adopt", remote.id))
        return f"marked {remote.id} as {change.key}"
    if kind is ChangeKind.ADOPT_MERGE:
        assert remote is not None
        await api.remove_alert(remote.id, idempotency_key(run, "remove", remote.id))
        return f"{api.removed} the copy {remote.id}"
    if kind is ChangeKind.UPDATE:
        assert remote is not None
        await api.update_alert(remote.id, desired, idempotency_key(run, "update", remote.id))
        return f"updated {remote.id}"
    if kind in (ChangeKind.ACTIVATE, ChangeKind.DEACTIVATE):
        assert remote is not None
        enabled = kind is ChangeKind.ACTIVATE
        await api.set_enabled(remote.id, enabled, idempotency_key(run, kind.value, remote.id))
        return f"{kind.value}d {remote.id}"
    if kind is ChangeKind.DELETE:
        assert remote is not None
        await api.remove_alert(remote.id, idempotency_key(run, "remove", remote.id))
        return f"{api.removed} {remote.id}"
    if kind is ChangeKind.CREATE_ENDPOINT:
        created_endpoint = await api.create_endpoint(
            change.key, idempotency_key(run, "endpoint", api.name, change.key)
        )
        if created_endpoint.secret:
            result.secrets.append(NewEndpointSecret(api.name, change.key, created_endpoint.secret))
        return f"created endpoint {created_endpoint.id}"
    if kind is ChangeKind.UPDATE_ENDPOINT:
        assert change.endpoint is not None
        await api.fix_endpoint(
            change.endpoint, idempotency_key(run, "endpoint", change.endpoint.id)
        )
        return f"updated endpoint {change.endpoint.id}"
    raise AssertionError(f"unexpected change kind {kind}")  # pragma: no cover


async def close_apis(apis: Mapping[str, ProviderAPI]) -> None:
    """Close every client made by :func:`make_apis`."""
    await asyncio.gather(*(api.aclose() for api in apis.values()))


class AlertManager:
    """Plan and apply one config against the providers it names, reusing one HTTP client per
    provider. Use as ``async with AlertManager(config, Credentials.from_env()) as m:``.

    Raises :class:`ConfigError` on construction when a credential is missing or malformed.
    """

    def __init__(
        self,
        config: Config,
        credentials: Credentials,
        *,
        concurrency: int = 8,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.config = config
        self.apis = make_apis(config, credentials, concurrency=concurrency, retry=retry)

    async def __aenter__(self) -> AlertManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await close_apis(self.apis)

    def live_providers(self) -> list[str]:
        """Providers whose credentials are live mode (``--live`` is needed to apply)."""
        return [name for name, api in self.apis.items() if api.mode == "live"]

    async def plan(
        self, *, prune: bool = False, adopt: bool = False, allow_duplicates: bool = False
    ) -> Plan:
        """Read the providers and diff against the config (see :func:`build_plan`)."""
        return await build_plan(
            self.config,
            self.apis,
            prune=prune,
            adopt=adopt,
            allow_duplicates=allow_duplicates,
        )

    async def apply(
        self, plan: Plan, on_outcome: Callable[[Outcome], None] | None = None
    ) -> ApplyResult:
        """Apply ``plan`` (see :func:`apply_plan`)."""
        return await apply_plan(plan, self.apis, on_outcome)
