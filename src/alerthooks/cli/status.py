"""``alerthooks status``: where each alert stands for each subject, from the store."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

import click

from alerthooks import state
from alerthooks.cli import core
from alerthooks.cli.core import APP_OPTION, STORE_OPTION, cli, fail, load_hooks, open_cli_store
from alerthooks.cli.inbox import _builtin_normalizers, _when
from alerthooks.events import AlertKind, AlertState
from alerthooks.providers import Provider
from alerthooks.store import Store

HEADERS = ("provider", "alert", "kind", "subject", "state", "since", "event")
"""The columns of ``alerthooks status``."""


def state_row(found: AlertState, kind: str = "other") -> tuple[str, ...]:
    """One state as the cells of :data:`HEADERS`, ``kind`` being its alert's; the subject is
    ``-`` for an alert as a whole."""
    return (
        found.provider,
        found.alert_id,
        kind,
        state.subject_of(found) or "-",
        found.state,
        _when(found.since),
        found.event_id,
    )


@cli.command()
@click.option("--in-alarm", "in_alarm", is_flag=True, help="Only subjects in alarm now.")
@click.option("--provider", "provider", metavar="NAME", default=None, help="Only this provider.")
@click.option(
    "--reconcile",
    is_flag=True,
    help="Also ask each provider that can say, and print each subject whose status there "
    "differs as a drift row; exit code 2 when one does, 1 on error.",
)
@APP_OPTION
@STORE_OPTION
def status(
    in_alarm: bool,
    provider: str | None,
    reconcile: bool,
    target: str | None,
    store_url: str | None,
) -> None:
    """Show where each alert stands for each subject (customer or subscription): the alert's
    kind (usage, spend, credit_balance or other), the state set by the event that occurred
    last, ``in_alarm`` or ``within_limit``, and since when.

    Times are UTC (``2026-12-01 15:04:05Z``); the subject is ``-`` for an alert as a whole.
    Events stored by an alerthooks from before alert state are folded in first, read with the
    built-in providers (and --app's).

    With --reconcile, each provider that can say (Chargebee, Metronome) is asked for the status
    of the subjects in the store, and each subject whose status differs is printed as a row
    ``drift provider alert subject local remote`` (``-`` where one side has none). Exit code 0
    when none differ, 2 when some do, 1 on error, like ``plan --detailed-exitcode``.
    """
    store, providers = _store_and_providers(target, store_url)
    # Reconciling compares every state, not only those shown: a subject within the limit here
    # and in alarm there is a drift even under --in-alarm.
    wanted = True if in_alarm and not reconcile else None

    async def read(s: Store) -> tuple[Sequence[AlertState], dict[tuple[str, str], AlertKind]]:
        found = await state.alert_states(s, providers, in_alarm=wanted, provider=provider)
        return found, await state.alert_kinds(s, providers, found)

    found, kinds = core.run_store(store, read)
    if provider is not None and not found and provider not in providers:  # a typo, likely
        known = ", ".join(sorted(providers))
        fail(f"--provider: no provider named {provider!r} (known: {known})")
    shown = [s for s in found if s.state == "in_alarm"] if in_alarm else found
    rows = (state_row(s, kinds.get((s.provider, s.alert_id), "other")) for s in shown)
    core.print_rows(HEADERS, rows, title=f"{len(shown)} alert state(s)")
    if reconcile:
        from alerthooks.cli.catchup import report_drifts

        sys.exit(report_drifts(found, providers.values()))


def _store_and_providers(
    target: str | None, store_url: str | None
) -> tuple[Store, Mapping[str, Provider]]:
    """The store to read and the providers that read its bodies: --app's and the built-in
    ones."""
    if target is None:
        return open_cli_store(store_url), _builtin_normalizers()
    hooks = load_hooks(target, store_url)
    return core.existing(hooks.store), {**_builtin_normalizers(), **hooks.providers}
