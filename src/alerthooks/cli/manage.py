"""The alert manager from the shell: ``plan``, ``apply`` and ``import``."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import click
from rich.console import Console

from alerthooks.cli import core
from alerthooks.cli.core import cli, fail
from alerthooks.manager import (
    AlertManager,
    ApplyResult,
    Config,
    ConfigError,
    Credentials,
    NewEndpointSecret,
    Plan,
    PlanError,
    ProviderError,
    close_apis,
    load_config,
    render_plan,
)
from alerthooks.manager.imports import (
    Imported,
    config_keys,
    make_import_apis,
    read_unmanaged,
    render_entries,
)


def _plan_console() -> Console:
    # rich drops colour by itself when stdout is not a terminal or NO_COLOR is set.
    return core.console(width=None if sys.stdout.isatty() else 160, highlight=False)


def _load_alerts(config_path: str) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        fail(str(exc), cause=exc)


def _manager(config: Config, concurrency: int = 8) -> AlertManager:
    try:
        return AlertManager(config, Credentials.from_env(), concurrency=concurrency)
    except ConfigError as exc:
        fail(str(exc), cause=exc)


def _secret_env(secret: NewEndpointSecret) -> str | None:
    """Where the receiver reads the new endpoint's signing secret from: the secret's own
    ``env`` when the manager gives one, else its provider's ``env_hint``."""
    from alerthooks.providers import BUILTIN

    env: str | None = getattr(secret, "env", None)
    return env or next((cls.env_hint for cls in BUILTIN if cls.name == secret.provider), None)


_CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    default="alerts.toml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The alerts file.",
)
_PRUNE_HELP = "Remove managed alerts whose key left the config."
_ADOPT_OPTION = click.option(
    "--adopt",
    is_flag=True,
    help="Take existing unmanaged alerts that look like an entry under management instead "
    "of creating the entry again.",
)
_DUPLICATES_OPTION = click.option(
    "--allow-duplicates",
    is_flag=True,
    help="Create entries even where an unmanaged lookalike exists (two alerts then fire).",
)


def _refuse_duplicates(plan: Plan) -> None:
    """Stop (exit 1, one ``error:`` line each) when a create would duplicate a lookalike."""
    if plan.refusals:
        fail("\n".join(plan.refusals))


@cli.command("plan")
@_CONFIG_OPTION
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when there is nothing to change, 2 when there are changes (1 on error).",
)
@click.option("--prune", is_flag=True, help=f"Show the plan of apply --prune: {_PRUNE_HELP}")
@_ADOPT_OPTION
@_DUPLICATES_OPTION
def plan_command(
    config_path: str, detailed_exitcode: bool, prune: bool, adopt: bool, allow_duplicates: bool
) -> None:
    """Show what `apply` would change at the providers; writes nothing."""
    manager = _manager(_load_alerts(config_path))

    async def run() -> Plan:
        async with manager:
            return await manager.plan(prune=prune, adopt=adopt, allow_duplicates=allow_duplicates)

    try:
        plan = asyncio.run(run())
    except (PlanError, ProviderError) as exc:
        fail(str(exc), cause=exc)
    render_plan(plan, _plan_console())
    _refuse_duplicates(plan)
    if detailed_exitcode and plan.has_changes:
        sys.exit(2)


@cli.command("apply")
@_CONFIG_OPTION
@click.option("--yes", is_flag=True, help="Apply without asking (required without a terminal).")
@click.option("--prune", is_flag=True, help=_PRUNE_HELP)
@click.option("--live", is_flag=True, help="Allow applying with live-mode credentials.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Requests in flight at once, per provider.",
)
@_ADOPT_OPTION
@_DUPLICATES_OPTION
def apply_command(
    config_path: str,
    yes: bool,
    prune: bool,
    live: bool,
    concurrency: int,
    adopt: bool,
    allow_duplicates: bool,
) -> None:
    """Make the providers match the config; asks first unless --yes."""
    manager = _manager(_load_alerts(config_path), concurrency=concurrency)
    live_providers = manager.live_providers()
    if live_providers and not live:
        fail(
            f"{', '.join(live_providers)}: live-mode credentials; pass --live to apply to live mode"
        )
    if not yes and not core.can_prompt():
        fail("refusing to apply without confirmation: stdin is not a terminal; pass --yes")
    out = _plan_console()

    async def run() -> ApplyResult | None:
        async with manager:
            plan = await manager.plan(prune=prune, adopt=adopt, allow_duplicates=allow_duplicates)
            render_plan(plan, out)
            _refuse_duplicates(plan)
            if not plan.has_changes:
                return None
            if not yes and not click.confirm("Apply these changes?", default=False):
                fail("apply cancelled")
            writes = sum(1 for c in plan.changes if c.is_write)
            with core.progress(out, "applying", writes) as done:
                return await manager.apply(plan, on_outcome=lambda outcome: done())

    try:
        result = asyncio.run(run())
    except (PlanError, ProviderError) as exc:
        fail(str(exc), cause=exc)
    if result is None:
        return
    for outcome in result.outcomes:
        change = outcome.change
        status = "failed" if outcome.error else "done"
        click.echo(
            f"{status}: {change.provider} {change.kind.value} {change.key}: {outcome.message}"
        )
    for new in result.secrets:
        env = _secret_env(new)
        where = f"Put it in {env}" if env else f"Give it to the {new.provider} provider"
        click.echo(
            f"{new.provider} webhook endpoint {new.url} created; signing secret (shown only "
            f"once): {new.secret}\n{where} where the receiver runs."
        )
    if result.failed:
        errors = [f"{outcome.error}" for outcome in result.failed]
        failed = f"{len(result.failed)} of {len(result.outcomes)} changes failed"
        fail("\n".join([*errors, f"{failed}; run apply again to finish"]))
    count = len(result.outcomes)
    click.echo(f"Applied {count} change{'s' if count != 1 else ''}.")


@cli.command("import")
@click.option(
    "--config",
    "config_path",
    default="alerts.toml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The alerts file the entries are for (its keys are not reused; read if it exists).",
)
@click.option(
    "--provider",
    "providers",
    multiple=True,
    help="Read this provider only (repeatable); default: every provider whose credentials are set.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False),
    help="Write the entries to this new file instead of printing them (never overwritten).",
)
def import_command(config_path: str, providers: tuple[str, ...], output: str | None) -> None:
    """Print the alerts.toml entries that declare the alerts nobody manages yet."""
    config = _load_alerts(config_path) if Path(config_path).exists() else Config()
    if output is not None and Path(output).exists():
        fail(f"{output}: exists; refusing to overwrite it (choose another --output)")
    try:
        apis = make_import_apis(config, Credentials.from_env(), providers)
    except (ConfigError, KeyError) as exc:
        fail(str(exc).strip("'\""), cause=exc)

    async def run() -> Imported:
        try:
            return await read_unmanaged(apis, config_keys(config), config)
        finally:
            await close_apis(apis)

    try:
        imported = asyncio.run(run())
    except ProviderError as exc:
        fail(str(exc), cause=exc)
    text = render_entries(imported)
    for name, account in imported.accounts.items():
        count = sum(1 for a in imported.declared if a.provider == name)
        click.echo(
            f"{name}: {account}: {count} unmanaged alert{'s' if count != 1 else ''} declared",
            err=True,
        )
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        with open(output, "x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError as exc:
        fail(f"{output}: exists; refusing to overwrite it (choose another --output)", cause=exc)
    except OSError as exc:
        fail(f"{output}: {os.strerror(exc.errno or 0) or exc}", cause=exc)
    click.echo(f"Wrote {len(imported.declared)} entries to {output}.", err=True)
