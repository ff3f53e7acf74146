"""``alerthooks catch-up``: read the alert events the providers' Events APIs hold and put the
ones never received through the pipeline; and the provider side of ``status --reconcile``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

import click

from alerthooks.catchup import CatchUpResult, parse_since
from alerthooks.cli import core
from alerthooks.cli.core import DEBUG_OPTION, STORE_OPTION, cli, fail, load_hooks
from alerthooks.events import AlertState
from alerthooks.providers import Provider
from alerthooks.store import StoreError

_DRAIN_TIMEOUT = 3600.0  # queued mode: how long the caught-up events' handlers may run in all


@cli.command("catch-up")
@click.argument("target", metavar="MODULE:ATTR")
@click.option(
    "--since",
    default="72h",
    show_default=True,
    metavar="WHEN",
    help="How far back to read: a duration (30m, 72h, 7d) or an ISO-8601 time.",
)
@click.option(
    "--provider",
    "names",
    multiple=True,
    metavar="NAME",
    help="Only this provider (repeatable). Default: every provider of the app.",
)
@STORE_OPTION
@DEBUG_OPTION
def catch_up(target: str, since: str, names: tuple[str, ...], store_url: str | None) -> None:
    """Read each provider's alert events since --since from its Events API and put each one
    through the pipeline of the AlertHooks at MODULE:ATTR, as a delivery: stored, deduplicated,
    normalized, and its handlers run in this process (queued work is drained before exiting).

    An event already received runs nothing again, so running this twice is harmless. A provider
    without API credentials is skipped. Exit code 1 when a provider's API or the store failed.
    """
    try:
        moment = parse_since(since)
    except ValueError as exc:
        fail(str(exc), cause=exc)
    hooks = load_hooks(target, store_url)
    unknown = [n for n in names if n not in hooks.providers]
    if unknown:
        fail(f"--provider: {target} has no provider {unknown[0]!r} ({', '.join(hooks.providers)})")
    hooks.run_worker = False  # this process drains the queue itself, then exits

    async def run() -> list[CatchUpResult]:
        await hooks.startup()
        try:
            results = await hooks.catch_up(since=moment, providers=names or None)
            if hooks.mode == "queued":
                await hooks.drain(timeout=_DRAIN_TIMEOUT)
            return results
        finally:
            await hooks.shutdown()

    try:
        results = asyncio.run(run())
    except StoreError as exc:
        fail(f"store unavailable: {exc}", cause=exc)
    except TimeoutError as exc:
        fail(f"handlers still running after {_DRAIN_TIMEOUT:.0f} s; stopped", cause=exc)
    for result in results:
        click.echo(result.line())
    failed = [r.provider for r in results if not r.ok]
    if failed:
        fail(f"catch-up incomplete: {', '.join(failed)} failed")


DRIFT_HEADERS = ("drift", "provider", "alert", "subject", "local", "remote")
"""The columns of a ``drift`` row of ``alerthooks status --reconcile``."""


def report_drifts(states: Sequence[AlertState], providers: Iterable[Provider]) -> int:
    """Ask the providers that can say about ``states``, print one ``drift`` row per subject
    whose status differs (a table on a terminal; notes about providers not asked go to
    stderr), and return the exit code: 0 when none differ, 2 when some do. A provider API that
    keeps failing is an error (exit 1)."""
    from alerthooks.catchup import reconcile

    notes: list[str] = []
    try:
        drifts = asyncio.run(reconcile(states, providers, notes=notes))
    except Exception as exc:
        fail(f"reconcile: {exc}", cause=exc)
    for note in notes:
        click.echo(note, err=True)
    rows = [
        ("drift", d.provider, d.alert_id, d.subject, d.local or "-", d.remote or "-")
        for d in drifts
    ]
    if core.is_terminal():
        from rich.table import Table

        table = Table(*DRIFT_HEADERS[1:], title=f"{len(rows)} drift(s) from the providers")
        for row in rows:
            table.add_row(*row[1:])
        core.console().print(table)
    else:
        for row in rows:
            click.echo("\t".join(cell.replace("\t", " ").replace("\n", " ") for cell in row))
    return 2 if drifts else 0
