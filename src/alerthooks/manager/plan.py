"""Diff the config against what the providers report: typed changes, and a readable table."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from alerthooks.manager.api import Mode, ProviderAPI, RemoteAlert, RemoteEndpoint
from alerthooks.manager.config import Config
from alerthooks.manager.spec import ProviderTable


class PlanError(Exception):
    """The plan cannot be applied (a provider limit would be exceeded); one line per problem."""


class ChangeKind(str, enum.Enum):
    """What a :class:`Change` does."""

    CREATE = "create"
    UPDATE = "update"  # in place
    REPLACE = "replace"  # create the new alert, then remove the old one
    ACTIVATE = "activate"
    DEACTIVATE = "deactivate"
    DELETE = "delete"  # Stripe: archive; Chargebee: delete
    KEEP = "keep"  # managed, key left the config, no --prune: left alone
    CREATE_ENDPOINT = "create endpoint"
    UPDATE_ENDPOINT = "update endpoint"
    EXTRA_ENDPOINT = "extra endpoint"  # a second endpoint sending alerts to the URL: left alone
    ENDPOINT_VERSION = "endpoint version"  # on another payload version, not fixable: left alone


_NOT_WRITES = frozenset({ChangeKind.KEEP, ChangeKind.EXTRA_ENDPOINT, ChangeKind.ENDPOINT_VERSION})


@dataclass(frozen=True)
class Change:
    """One planned change. ``key`` is the alert's key (the URL for endpoint changes);
    ``desired`` the configured alert; ``remote`` the alert or endpoint it acts on."""

    provider: str
    kind: ChangeKind
    key: str
    detail: str = ""
    desired: Any = None
    remote: RemoteAlert | None = None
    endpoint: RemoteEndpoint | None = None
    #: For a replace: remove the old alert before creating the new one (a provider limit).
    remove_first: bool = False

    @property
    def is_write(self) -> bool:
        """Whether applying this change calls the provider."""
        return self.kind not in _NOT_WRITES


@dataclass(frozen=True)
class ProviderPlan:
    """The changes for one provider, with the mode (live or test) of its credentials."""

    provider: str
    mode: Mode
    account: str
    changes: tuple[Change, ...]
    unmanaged: int = 0


@dataclass(frozen=True)
class Plan:
    """Every provider's changes; :attr:`has_changes` is what ``--detailed-exitcode`` reports."""

    providers: tuple[ProviderPlan, ...] = field(default_factory=tuple)

    @property
    def changes(self) -> list[Change]:
        """All changes, provider by provider."""
        return [c for p in self.providers for c in p.changes]

    @property
    def has_changes(self) -> bool:
        """Whether applying would call any provider to write."""
        return any(c.is_write for c in self.changes)


def _describe_diff(desired: Mapping[str, Any], remote: Mapping[str, Any]) -> str:
    parts = []
    for name, want in desired.items():
        have = remote.get(name)
        if want != have:
            parts.append(f"{name}: {_show(have)} → {_show(want)}")
    return "; ".join(parts)


def _show(value: Any) -> str:
    if isinstance(value, tuple) and len(value) == 2:  # (mode, value) thresholds
        mode, number = value
        if isinstance(number, float) and number == int(number):
            number = int(number)
        return f"{number}{'%' if mode == 'percentage' else ''}"
    if value is None:
        return "-"
    return repr(value) if isinstance(value, str) else str(value)


def diff_alerts(
    api: ProviderAPI,
    desired: Sequence[Any],
    remote: Sequence[RemoteAlert],
    *,
    prune: bool = False,
) -> list[Change]:
    """The changes that turn ``remote`` into ``desired``; unmanaged remote alerts are ignored.

    When several remote alerts carry the same key (a replace interrupted between create and
    remove), the one closest to the config is kept and the others are deleted.
    """
    by_key: dict[str, list[RemoteAlert]] = {}
    for alert in remote:
        if alert.key is not None:
            by_key.setdefault(alert.key, []).append(alert)
    changes: list[Change] = []
    wanted = set()
    for alert in desired:
        key = api.key_of(alert)
        wanted.add(key)
        spec = api.desired_spec(alert)
        candidates = by_key.get(key, [])
        if not candidates:
            detail = _summary(spec) + ("" if alert.enabled else "; created disabled")
            changes.append(Change(api.name, ChangeKind.CREATE, key, detail, alert))
            continue
        # Prefer an exact match, then a matching spec, then the first listed.
        ranked = sorted(
            candidates,
            key=lambda r: (dict(r.spec) != spec, r.enabled != alert.enabled),
        )
        current, extra = ranked[0], ranked[1:]
        for dup in extra:
            changes.append(
                Change(api.name, ChangeKind.DELETE, key, f"duplicate {dup.id}", alert, dup)
            )
        changed = {n for n, v in spec.items() if current.spec.get(n) != v}
        if not changed:
            if current.enabled != alert.enabled:
                kind = ChangeKind.ACTIVATE if alert.enabled else ChangeKind.DEACTIVATE
                changes.append(Change(api.name, kind, key, current.id, alert, current))
            continue
        detail = _describe_diff(spec, current.spec)
        if current.enabled != alert.enabled:
            detail += f"; enabled: {current.enabled} → {alert.enabled}"
        kind = ChangeKind.UPDATE if changed <= api.updatable else ChangeKind.REPLACE
        if kind is ChangeKind.REPLACE and not alert.enabled:
            detail += "; created disabled"
        changes.append(Change(api.name, kind, key, f"{current.id}: {detail}", alert, current))
    for key, alerts in by_key.items():
        if key in wanted:
            continue
        for alert in alerts:
            if prune:
                changes.append(Change(api.name, ChangeKind.DELETE, key, alert.id, None, alert))
            else:
                changes.append(
                    Change(
                        api.name,
                        ChangeKind.KEEP,
                        key,
                        f"{alert.id}: not in config; --prune removes it",
                        None,
                        alert,
                    )
                )
    return changes


def _summary(spec: Mapping[str, Any]) -> str:
    return ", ".join(f"{n}={_show(v)}" for n, v in spec.items() if v is not None)


def diff_endpoint(api: ProviderAPI, url: str, endpoints: Sequence[RemoteEndpoint]) -> list[Change]:
    """Create the endpoint for ``url``, or correct it when it lacks the alert event, is
    disabled or (where the provider allows it in place) sends another payload version.

    Other endpoints are left alone; a second one already sending alerts to ``url`` is shown
    (each alert would arrive twice), not removed: someone may have made it on purpose. An
    endpoint on a payload version other than the provider's ``endpoint_api_version`` that
    cannot be changed in place is shown as a warning and left alone: replacing it would give it
    a new signing secret the receiver does not have yet.
    """
    matches = [e for e in endpoints if e.url == url]
    want = api.endpoint_api_version
    if not matches:
        versioned = f"; api_version {want}" if want else ""
        return [
            Change(api.name, ChangeKind.CREATE_ENDPOINT, url, f"events: {api.event}{versioned}")
        ]
    sending = [e for e in matches if e.enabled and (api.event in e.events or "*" in e.events)]
    fixable = want is not None and api.endpoint_version_in_place
    if sending:
        changes = [
            Change(
                api.name,
                ChangeKind.EXTRA_ENDPOINT,
                url,
                f"{extra.id} also sends {api.event} here, so each alert arrives twice (the"
                f" receiver drops the copy); remove one of {sending[0].id}, {extra.id} by hand",
                endpoint=extra,
            )
            for extra in sending[1:]
        ]
        first = sending[0]
        if fixable and first.api_version != want:
            changes.insert(0, _fix_endpoint(api, url, first, [_version_fix(first, want)]))
        # The extra ones are to be removed by hand anyway: no version line for them then.
        return changes + ([] if fixable else _version_warnings(api, url, sending))
    endpoint = matches[0]
    problems = []
    if not endpoint.enabled:
        problems.append("disabled → enabled")
    if api.event not in endpoint.events and "*" not in endpoint.events:
        problems.append(f"add event {api.event}")
    if fixable and endpoint.api_version != want:
        problems.append(_version_fix(endpoint, want))
    changes = [_fix_endpoint(api, url, endpoint, problems)]
    return changes + ([] if fixable else _version_warnings(api, url, [endpoint]))


def _fix_endpoint(
    api: ProviderAPI, url: str, endpoint: RemoteEndpoint, problems: list[str]
) -> Change:
    return Change(
        api.name,
        ChangeKind.UPDATE_ENDPOINT,
        url,
        f"{endpoint.id}: {', '.join(problems)}",
        endpoint=endpoint,
    )


def _version_fix(endpoint: RemoteEndpoint, want: str | None) -> str:
    return f"api_version {endpoint.api_version or 'account default'} → {want}"


def _version_warnings(
    api: ProviderAPI, url: str, endpoints: Sequence[RemoteEndpoint]
) -> list[Change]:
    """A warning for each endpoint whose payload version is not the one the receiver reads."""
    want = api.endpoint_api_version
    if want is None:
        return []
    return [
        Change(
            api.name,
            ChangeKind.ENDPOINT_VERSION,
            url,
            f"{endpoint.id} is on api_version {endpoint.api_version or '(the account default)'},"
            f" alerthooks reads {want}; {api.name} cannot change it in place, so it is left"
            f" alone (to move: create an endpoint on {want}, give the receiver its secret,"
            f" then remove {endpoint.id})",
            endpoint=endpoint,
        )
        for endpoint in endpoints
        if endpoint.api_version != want
    ]


async def build_plan(
    config: Config, apis: Mapping[str, ProviderAPI], *, prune: bool = False
) -> Plan:
    """Read every configured provider (all pages, providers concurrently) and diff.

    Raises :class:`PlanError` when a provider limit would be exceeded, counting alerts that are
    not managed here.
    """
    jobs = [
        _plan_provider(apis[name], section, prune=prune) for name, section in config.tables.items()
    ]
    # Let every provider finish reading before reporting the first failure.
    outcomes = await asyncio.gather(*jobs, return_exceptions=True)
    plans = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
        plans.append(outcome)
    problems = [p for _, errors in plans for p in errors]
    if problems:
        raise PlanError("\n".join(problems))
    return Plan(tuple(plan for plan, _ in plans))


async def _plan_provider(
    api: ProviderAPI, section: ProviderTable, *, prune: bool
) -> tuple[ProviderPlan, list[str]]:
    if section.webhook_url:
        remote, endpoints = await asyncio.gather(api.list_alerts(), api.list_endpoints())
    else:
        remote, endpoints = await api.list_alerts(), []
    changes = diff_alerts(api, section.alerts, remote, prune=prune)
    if section.webhook_url:
        changes.extend(diff_endpoint(api, section.webhook_url, endpoints))
    removed = {c.remote.id for c in changes if c.remote is not None and c.kind in _REMOVING}
    wanted = {api.key_of(a) for a in section.alerts}
    # Alerts that stay besides the configured ones: unmanaged, and managed but kept unpruned.
    kept = [r for r in remote if r.id not in removed and (r.key is None or r.key not in wanted)]
    problems = api.check_limits(list(section.alerts), kept)
    changes = [
        dataclasses.replace(
            c, remove_first=True, detail=f"{c.detail} (old one removed first: provider limit)"
        )
        if c.kind is ChangeKind.REPLACE
        and c.remote is not None
        and api.replace_removes_first(c.desired, c.remote, list(section.alerts), kept)
        else c
        for c in changes
    ]
    plan = ProviderPlan(
        provider=api.name,
        mode=api.mode,
        account=api.account,
        changes=tuple(changes),
        unmanaged=sum(1 for r in remote if r.key is None),
    )
    return plan, problems


_REMOVING = {ChangeKind.DELETE, ChangeKind.REPLACE}


_STYLES = {
    ChangeKind.CREATE: "green",
    ChangeKind.UPDATE: "yellow",
    ChangeKind.REPLACE: "magenta",
    ChangeKind.ACTIVATE: "green",
    ChangeKind.DEACTIVATE: "yellow",
    ChangeKind.DELETE: "red",
    ChangeKind.KEEP: "dim",
    ChangeKind.CREATE_ENDPOINT: "green",
    ChangeKind.UPDATE_ENDPOINT: "yellow",
    ChangeKind.EXTRA_ENDPOINT: "dim",
    ChangeKind.ENDPOINT_VERSION: "yellow",
}


def render_plan(plan: Plan, console: Console) -> None:
    """Print the plan: one header line per provider (with its live/test mode), then a table of
    changes. Colour only when ``console`` is a terminal and ``NO_COLOR`` is unset."""
    for provider in plan.providers:
        writes = sum(1 for c in provider.changes if c.is_write)
        console.print(
            f"{provider.provider}: {provider.account}: "
            f"{writes} change{'s' if writes != 1 else ''}, "
            f"{provider.unmanaged} unmanaged alert{'s' if provider.unmanaged != 1 else ''} "
            "left alone",
            highlight=False,
        )
        if not provider.changes:
            continue
        table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
        table.add_column("action", no_wrap=True)
        table.add_column("key", no_wrap=True)
        table.add_column("detail", overflow="fold")
        for change in provider.changes:
            style = _STYLES[change.kind]
            table.add_row(f"[{style}]{change.kind.value}[/{style}]", change.key, change.detail)
        console.print(table)
    if not plan.has_changes:
        console.print("No changes.")
