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

from alerthooks.manager.api import Adoption, Mode, ProviderAPI, RemoteAlert, RemoteEndpoint
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
    ADOPT = "adopt"  # write the ownership marker on an existing (unmanaged) alert
    ADOPT_REPLACE = "adopt (replace)"  # create the marked alert, then remove the existing one
    ADOPT_MERGE = "adopt (merge)"  # the key has its alert already: remove the lookalike copy


_ADOPTING = frozenset({ChangeKind.ADOPT, ChangeKind.ADOPT_REPLACE, ChangeKind.ADOPT_MERGE})
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
    #: Unmanaged lookalikes of the entry that this change removes once its alert exists
    #: (``--adopt``: further copies of an alert being taken over).
    copies: tuple[RemoteAlert, ...] = ()
    #: For a create or replace refused without ``--adopt``: the unmanaged alert it would
    #: duplicate.
    lookalike: RemoteAlert | None = None

    @property
    def is_write(self) -> bool:
        """Whether applying this change calls the provider."""
        return self.kind not in _NOT_WRITES


@dataclass(frozen=True)
class UnmanagedAlert:
    """An alert the provider reports without an ownership marker: ``fields`` are its
    identifying fields (as the provider defines them), ``lookalike_of`` the key of the
    configured entry it matches, if any."""

    id: str
    fields: Mapping[str, Any]
    enabled: bool = True
    lookalike_of: str | None = None


@dataclass(frozen=True)
class ProviderPlan:
    """The changes for one provider, with the mode (live or test) of its credentials.
    ``unmanaged`` counts the alerts without a marker, ``unmanaged_alerts`` lists them, and
    ``refused`` has one line per entry whose create would duplicate a lookalike (without
    ``--adopt`` or ``--allow-duplicates``; the plan cannot be applied then)."""

    provider: str
    mode: Mode
    account: str
    changes: tuple[Change, ...]
    unmanaged: int = 0
    unmanaged_alerts: tuple[UnmanagedAlert, ...] = ()
    refused: tuple[str, ...] = ()
    #: How the provider takes existing alerts over (see :data:`~alerthooks.manager.api.AdoptMode`);
    #: None when its API does not say.
    adopt_mode: str | None = None


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
        """Whether applying would call any provider to write (a pending adopt included)."""
        return any(c.is_write for c in self.changes)

    @property
    def refusals(self) -> list[str]:
        """Why the plan cannot be applied: each create that would duplicate an existing alert
        (see :attr:`ProviderPlan.refused`)."""
        return [line for p in self.providers for line in p.refused]


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


def find_lookalikes(
    api: ProviderAPI, desired: Sequence[Any], remote: Sequence[RemoteAlert]
) -> dict[str, list[RemoteAlert]]:
    """Each configured key's unmanaged lookalikes (same identifying fields, as the provider
    defines them), oldest listed first; an unmanaged alert counts for the first entry it
    matches only. Empty for a provider without :class:`~alerthooks.manager.api.Adoption` and
    for one that owns alerts by identity (an alert there is already its entry's)."""
    if not isinstance(api, Adoption) or api.adopt_mode == "identity":
        return {}
    by_identity: dict[tuple[Any, ...], list[RemoteAlert]] = {}
    for r in remote:
        if r.key is None:
            for identity in api.remote_identities(r):
                by_identity.setdefault(identity, []).append(r)
    found: dict[str, list[RemoteAlert]] = {}
    taken: set[str] = set()
    for alert in desired:
        matches = [r for r in by_identity.get(api.identity(alert), ()) if r.id not in taken]
        if matches:
            found[api.key_of(alert)] = matches
            taken.update(r.id for r in matches)
    return found


def diff_alerts(
    api: ProviderAPI,
    desired: Sequence[Any],
    remote: Sequence[RemoteAlert],
    *,
    prune: bool = False,
    adopt: bool = False,
    lookalikes: Mapping[str, list[RemoteAlert]] | None = None,
) -> list[Change]:
    """The changes that turn ``remote`` into ``desired``; unmanaged remote alerts are never
    changed, except lookalikes taken over with ``adopt``.

    When several remote alerts carry the same key (a replace interrupted between create and
    remove), the one closest to the config is kept and the others are deleted. A create or
    replace whose entry has an unmanaged lookalike carries it as :attr:`Change.lookalike`
    (refused by :func:`build_plan` unless ``allow_duplicates``); with ``adopt`` the lookalike is
    taken over instead: :attr:`ChangeKind.ADOPT` (marker written in place),
    :attr:`ChangeKind.ADOPT_REPLACE` (create the marked alert, then remove it) or, when the key
    already has its alert, :attr:`ChangeKind.ADOPT_MERGE` (remove the copy). ``lookalikes``
    is :func:`find_lookalikes`' answer when the caller has it already.
    """
    by_key: dict[str, list[RemoteAlert]] = {}
    for alert in remote:
        if alert.key is not None:
            by_key.setdefault(alert.key, []).append(alert)
    if lookalikes is None:
        lookalikes = find_lookalikes(api, desired, remote)
    changes: list[Change] = []
    wanted = set()
    for alert in desired:
        key = api.key_of(alert)
        wanted.add(key)
        spec = api.desired_spec(alert)
        candidates = by_key.get(key, [])
        looks = lookalikes.get(key, [])
        if not candidates:
            if looks and adopt:
                changes.extend(_adopt(api, key, alert, looks))
                continue
            detail = _summary(spec) + ("" if alert.enabled else "; created disabled")
            changes.append(_create(api, ChangeKind.CREATE, key, detail, alert, None, looks))
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
        kind = ChangeKind.UPDATE if changed <= api.updatable else ChangeKind.REPLACE
        if changed and kind is ChangeKind.REPLACE:
            detail = _describe_diff(spec, current.spec)
            if current.enabled != alert.enabled:
                detail += f"; enabled: {current.enabled} → {alert.enabled}"
            if not alert.enabled:
                detail += "; created disabled"
            detail = f"{current.id}: {detail}"
            if looks and adopt:
                # The replacement is made, then the old alert and the copies are removed.
                copies = ", ".join(r.id for r in looks)
                detail += f"; {api.removed} lookalike {copies} after"
                changes.append(
                    Change(api.name, kind, key, detail, alert, current, copies=tuple(looks))
                )
            else:
                changes.append(_create(api, kind, key, detail, alert, current, looks))
            continue
        if adopt:
            changes.extend(
                Change(
                    api.name,
                    ChangeKind.ADOPT_MERGE,
                    key,
                    f"{key} is {current.id} already; the copy {copy.id} is {api.removed}",
                    alert,
                    copy,
                )
                for copy in looks
            )
        if not changed:
            if current.enabled != alert.enabled:
                kind = ChangeKind.ACTIVATE if alert.enabled else ChangeKind.DEACTIVATE
                changes.append(Change(api.name, kind, key, current.id, alert, current))
            continue
        detail = _describe_diff(spec, current.spec)
        if current.enabled != alert.enabled:
            detail += f"; enabled: {current.enabled} → {alert.enabled}"
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


def _create(
    api: ProviderAPI,
    kind: ChangeKind,
    key: str,
    detail: str,
    alert: Any,
    current: RemoteAlert | None,
    looks: list[RemoteAlert],
) -> Change:
    """A create or replace; one that would duplicate an unmanaged lookalike says so."""
    if looks:
        detail += f"; duplicates unmanaged {', '.join(r.id for r in looks)}"
    lookalike = looks[0] if looks else None
    return Change(api.name, kind, key, detail, alert, current, lookalike=lookalike)


def _adopt(api: ProviderAPI, key: str, alert: Any, looks: list[RemoteAlert]) -> list[Change]:
    """Take the first lookalike over, the provider's way; further copies are removed."""
    first, copies = looks[0], tuple(looks[1:])
    spec = api.desired_spec(alert)
    differs = _describe_diff(spec, first.spec)
    if isinstance(api, Adoption) and api.adopt_mode == "in_place":
        detail = "marker written in place" + (f"; then {differs}" if differs else "")
        changes = [Change(api.name, ChangeKind.ADOPT, key, detail, alert, first)]
        return changes + [
            Change(
                api.name,
                ChangeKind.ADOPT_MERGE,
                key,
                f"{key} becomes {first.id}; the copy {copy.id} is {api.removed}",
                alert,
                copy,
            )
            for copy in copies
        ]
    old = ", ".join(r.id for r in looks)
    detail = f"a new alert with the marker first, then {old} {api.removed}"
    if differs:
        detail += f" ({differs})"
    if not alert.enabled:
        detail += "; created disabled"
    return [Change(api.name, ChangeKind.ADOPT_REPLACE, key, detail, alert, first, copies=copies)]


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
    config: Config,
    apis: Mapping[str, ProviderAPI],
    *,
    prune: bool = False,
    adopt: bool = False,
    allow_duplicates: bool = False,
) -> Plan:
    """Read every configured provider (all pages, providers concurrently) and diff.

    ``adopt`` takes each unmanaged lookalike of an entry under management instead of creating
    the entry; ``allow_duplicates`` creates it anyway. With neither, such a create is listed in
    :attr:`Plan.refusals` (the plan is still returned, to be shown). Raises :class:`PlanError`
    when a provider limit would be exceeded, counting alerts that are not managed here.
    """
    jobs = [
        _plan_provider(
            apis[name], section, prune=prune, adopt=adopt, allow_duplicates=allow_duplicates
        )
        for name, section in config.tables.items()
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
    api: ProviderAPI, section: ProviderTable, *, prune: bool, adopt: bool, allow_duplicates: bool
) -> tuple[ProviderPlan, list[str]]:
    if section.webhook_url:
        remote, endpoints = await asyncio.gather(api.list_alerts(), api.list_endpoints())
    else:
        remote, endpoints = await api.list_alerts(), []
    lookalikes = find_lookalikes(api, section.alerts, remote)
    changes = diff_alerts(
        api, section.alerts, remote, prune=prune, adopt=adopt, lookalikes=lookalikes
    )
    if section.webhook_url:
        changes.extend(diff_endpoint(api, section.webhook_url, endpoints))
    removed = {c.remote.id for c in changes if c.remote is not None and c.kind in _REMOVING}
    removed.update(copy.id for c in changes for copy in c.copies)
    wanted = {api.key_of(a) for a in section.alerts}
    # Alerts that stay besides the configured ones: unmanaged, and managed but kept unpruned.
    kept = [r for r in remote if r.id not in removed and (r.key is None or r.key not in wanted)]
    problems = api.check_limits(list(section.alerts), kept)
    changes = [
        dataclasses.replace(
            c, remove_first=True, detail=f"{c.detail} (old one removed first: provider limit)"
        )
        if c.kind in (ChangeKind.REPLACE, ChangeKind.ADOPT_REPLACE)
        and c.remote is not None
        and api.replace_removes_first(c.desired, c.remote, list(section.alerts), kept)
        else c
        for c in changes
    ]
    refused = [] if allow_duplicates else [c for c in changes if c.lookalike is not None]
    plan = ProviderPlan(
        provider=api.name,
        mode=api.mode,
        account=api.account,
        changes=tuple(changes),
        unmanaged=sum(1 for r in remote if r.key is None),
        unmanaged_alerts=_unmanaged(api, remote, lookalikes),
        refused=tuple(
            f"{api.name}: {c.key}: would duplicate existing alert {c.lookalike.id} (lookalike "
            f"of {c.key}); pass --adopt to take it over, or --allow-duplicates to create "
            "another"
            for c in refused
            if c.lookalike is not None
        ),
        adopt_mode=api.adopt_mode if isinstance(api, Adoption) else None,
    )
    return plan, problems


def _unmanaged(
    api: ProviderAPI, remote: Sequence[RemoteAlert], lookalikes: Mapping[str, list[RemoteAlert]]
) -> tuple[UnmanagedAlert, ...]:
    """The unmanaged alerts with their identifying fields and the entry each looks like."""
    fields = api.identity_fields if isinstance(api, Adoption) else ()
    lookalike_of = {r.id: key for key, looks in lookalikes.items() for r in looks}
    return tuple(
        UnmanagedAlert(
            id=r.id,
            fields={name: r.spec.get(name) for name in fields},
            enabled=r.enabled,
            lookalike_of=lookalike_of.get(r.id),
        )
        for r in remote
        if r.key is None
    )


_REMOVING = {
    ChangeKind.DELETE,
    ChangeKind.REPLACE,
    ChangeKind.ADOPT_REPLACE,
    ChangeKind.ADOPT_MERGE,
}


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
    ChangeKind.ADOPT: "cyan",
    ChangeKind.ADOPT_REPLACE: "cyan",
    ChangeKind.ADOPT_MERGE: "cyan",
}


def render_plan(plan: Plan, console: Console) -> None:
    """Print the plan: one header line per provider (with its live/test mode), then a table of
    changes. Colour only when ``console`` is a terminal and ``NO_COLOR`` is unset."""
    for provider in plan.providers:
        writes = sum(1 for c in provider.changes if c.is_write)
        adopted = {c.remote.id for c in provider.changes if c.kind in _ADOPTING and c.remote}
        adopted.update(r.id for c in provider.changes for r in c.copies)
        alone = provider.unmanaged - len(adopted)
        console.print(
            f"{provider.provider}: {provider.account}: "
            f"{writes} change{'s' if writes != 1 else ''}, "
            f"{alone} unmanaged alert{'s' if alone != 1 else ''} left alone",
            highlight=False,
        )
        for unmanaged in provider.unmanaged_alerts:
            console.print(f"  {_describe_unmanaged(unmanaged, adopted)}", highlight=False)
        if provider.unmanaged_alerts and provider.adopt_mode == "identity":
            console.print(
                f"  ({provider.provider} owns alerts by type and scope: an entry naming an "
                "alert's type and scope takes it over; nothing to adopt)",
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
            key = change.key
            if change.kind in _ADOPTING and change.remote is not None:
                key = f"{key} ← {change.remote.id}"
            table.add_row(f"[{style}]{change.kind.value}[/{style}]", key, change.detail)
        console.print(table)
    if not plan.has_changes:
        console.print("No changes.")


def _describe_unmanaged(alert: UnmanagedAlert, adopted: set[str]) -> str:
    """``unmanaged alrt_1: meter='m', customer='c', gte=1000 (inactive) — lookalike of KEY``."""
    line = f"unmanaged {alert.id}"
    shown = _summary(alert.fields)
    if shown:
        line += f": {shown}"
    if not alert.enabled:
        line += " (disabled)"
    if alert.lookalike_of is not None:
        line += f" — lookalike of {alert.lookalike_of}"
        if alert.id in adopted:
            line += ", adopted by this plan"
    return line
