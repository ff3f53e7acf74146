"""The ``alerthooks`` command line. Errors are one line on stderr and a non-zero exit code."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

import click
from rich.console import Console

from alerthooks import __version__
from alerthooks.hooks import AlertHooks
from alerthooks.manager import (
    AlertManager,
    ApplyResult,
    Config,
    ConfigError,
    Credentials,
    Plan,
    PlanError,
    ProviderError,
    load_config,
    render_plan,
)
from alerthooks.store import Store, StoreError, redact_url

T = TypeVar("T")


# click >= 8.2 raises this for a group run without a command; older click prints help itself.
_NoArgsIsHelp: type[click.UsageError] = getattr(
    click.exceptions, "NoArgsIsHelpError", type("_Never", (click.UsageError,), {})
)


class _Group(click.Group):
    """A click group whose usage errors are one line too: the message and where help is."""

    def main(  # type: ignore[override]
        self,
        args: list[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except _NoArgsIsHelp as exc:  # bare `alerthooks`: the help, as click shows it
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"error: {exc.format_message()}{where}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)  # ctx.exit(n) returns n here


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="alerthooks")
def cli() -> None:
    """Usage-alert webhooks from Stripe and Chargebee: receive, store, dispatch, and sync."""


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="alerthooks")


def _console(**options: Any) -> Console:
    """A rich Console on stdout: styled on a terminal, and plain (no escape codes at all) when
    stdout is not a terminal or NO_COLOR is set; rich alone keeps bold and dim under NO_COLOR."""
    if os.environ.get("NO_COLOR"):
        options.setdefault("color_system", None)
    return Console(**options)


# -- durable inbox: serve, worker, events, replay ---------------------------------------------

_STORE_OPTION = click.option(
    "--store",
    "store_url",
    metavar="URL",
    default=None,
    help="Store URL (memory://, sqlite:///PATH, postgresql://…); default: env "
    "ALERTHOOKS_STORE, else sqlite:///alerthooks.db.",
)


def _use_store(store_url: str | None) -> None:
    """Make ``--store`` the default of every AlertHooks the target module builds."""
    if store_url:
        from alerthooks.store import STORE_ENV

        os.environ[STORE_ENV] = store_url


def _log_to_stderr() -> None:
    """Show alerthooks' own log lines (events accepted, handlers failing, the store down) beside
    uvicorn's, unless the app configured logging itself."""
    import logging

    package = logging.getLogger("alerthooks")
    if not package.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        package.addHandler(handler)
        package.setLevel(logging.INFO)


def _load_target(target: str) -> Any:
    """Import ``MODULE:ATTR`` from the working directory, as uvicorn does."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise click.UsageError(
            f"expected MODULE:ATTR (for example examples.app:app), got {target!r}"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise click.ClickException(f"cannot import {module_name!r}: no such module") from None
        raise click.ClickException(f"cannot import {module_name!r}: {exc}") from None
    except Exception as exc:
        raise click.ClickException(f"cannot import {module_name!r}: {exc}") from None
    try:
        found: Any = module
        for part in attr.split("."):
            found = getattr(found, part)
    except AttributeError:
        raise click.ClickException(f"module {module_name!r} has no attribute {attr!r}") from None
    return found


def _load_hooks(target: str) -> AlertHooks:
    found = _load_target(target)
    if not isinstance(found, AlertHooks):
        raise click.ClickException(f"{target} is a {type(found).__name__}, not an AlertHooks")
    return found


def _open_cli_store(store_url: str | None) -> Store:
    from alerthooks.store import open_store
    from alerthooks.store.sqlite import SQLiteStore

    try:
        store = open_store(store_url)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if isinstance(store, SQLiteStore) and not Path(store.path).exists():
        raise click.ClickException(
            f"no store at {store.path} (pass --store URL or set ALERTHOOKS_STORE)"
        )
    return store


def _run_store(store: Store, operation: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        try:
            return await operation(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except StoreError as exc:
        raise click.ClickException(f"store unavailable: {exc}") from None


@cli.command()
@click.argument("target", metavar="MODULE:ATTR")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to bind.")
@_STORE_OPTION
def serve(target: str, host: str, port: int, store_url: str | None) -> None:
    """Serve an AlertHooks (at the root: /stripe, /chargebee) or any ASGI app with uvicorn.

    The worker runs in the app's lifespan: an AlertHooks at the root starts it itself, a host
    app needs lifespan=hooks.lifespan.
    """
    import uvicorn

    _use_store(store_url)
    app = _load_target(target)
    if not callable(app):
        raise click.ClickException(f"{target} is a {type(app).__name__}, not an ASGI app")
    lifespan: Literal["on", "auto"] = "on" if isinstance(app, AlertHooks) else "auto"
    _log_to_stderr()
    click.echo(f"alerthooks serving {target} on http://{host}:{port}")
    uvicorn.run(app, host=host, port=port, lifespan=lifespan, log_level="info")


@cli.command()
@click.argument("target", metavar="MODULE:ATTR")
@_STORE_OPTION
def worker(target: str, store_url: str | None) -> None:
    """Run the queued-mode worker of an AlertHooks alone (split web and worker processes)."""
    _use_store(store_url)
    hooks = _load_hooks(target)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        await hooks.startup()
        try:
            await hooks.worker.run_forever()
        finally:
            await hooks.shutdown()

    _log_to_stderr()
    click.echo(f"alerthooks worker for {target} on {redact_url(hooks.store.url)}")
    with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
        asyncio.run(run())


def _is_terminal() -> bool:
    return sys.stdout.isatty()


@cli.command()
@click.option(
    "--status",
    type=click.Choice(["pending", "running", "failed", "dead", "done"]),
    default=None,
    help="Only events with a handler in this state.",
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@_STORE_OPTION
def events(status: str | None, limit: int, store_url: str | None) -> None:
    """List stored events, newest first, with each handler's outcome."""
    store = _open_cli_store(store_url)
    found = _run_store(store, lambda s: s.events(status=status, limit=limit))  # type: ignore[arg-type]
    rows: list[tuple[str, ...]] = []

    def when(moment: datetime | None) -> str:
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if moment else ""

    for event in found:
        received = when(event.received_at)
        for o in event.outcomes or (None,):
            rows.append(
                (
                    received,
                    event.provider,
                    event.event_id,
                    event.event_type or "",
                    o.handler if o else "-",
                    o.status if o else "-",
                    str(o.attempts) if o else "",
                    when(o.due_at) if o else "",
                    (o.last_error or "") if o else "",
                )
            )
    headers = (
        "received",
        "provider",
        "event",
        "type",
        "handler",
        "status",
        "attempts",
        "next attempt",
        "error",
    )
    if _is_terminal():
        from rich.table import Table

        table = Table(*headers, title=f"{len(found)} event(s)")
        for row in rows:
            table.add_row(*row)
        _console().print(table)
    else:
        click.echo("\t".join(headers))
        for row in rows:
            click.echo("\t".join(cell.replace("\t", " ").replace("\n", " ") for cell in row))


_REPLAY_TIMEOUT = 3600.0  # replay --app: how long its handlers may run in all


@cli.command()
@click.argument("event_ids", nargs=-1, metavar="[EVENT_ID]...")
@click.option("--dead", is_flag=True, help="Replay every dead handler instead of given events.")
@click.option(
    "--app",
    "target",
    metavar="MODULE:ATTR",
    default=None,
    help="Run the handlers now in this process with this AlertHooks (uses its store) instead "
    "of leaving them to a running worker.",
)
@_STORE_OPTION
def replay(
    event_ids: tuple[str, ...], dead: bool, target: str | None, store_url: str | None
) -> None:
    """Run the failed or dead handlers of EVENT_IDs (or with --dead, every dead one) again."""
    if bool(event_ids) == dead:
        raise click.UsageError("give EVENT_ID... or --dead (one of them)")
    hooks: AlertHooks | None = None
    if target is not None:
        _use_store(store_url)
        hooks = _load_hooks(target)
        store = hooks.store
    else:
        store = _open_cli_store(store_url)

    async def run(s: Store) -> tuple[int, int]:
        count = await s.replay(event_ids, dead=dead)
        if hooks is None or not count:
            return count, 0
        with _progress(_console(), "replaying", count) as advance:
            before, shown = hooks.worker.recorded, 0
            drain = asyncio.ensure_future(hooks.drain(timeout=_REPLAY_TIMEOUT))
            while not drain.done():
                await asyncio.wait({drain}, timeout=0.1)
                now = min(hooks.worker.recorded - before, count)
                advance(now - shown)
                shown = now
            try:
                await drain
            except TimeoutError:
                raise click.ClickException(
                    f"replayed handlers still running after {_REPLAY_TIMEOUT:.0f} s; stopped"
                ) from None
        still = await s.events(status="failed", limit=10_000)
        still_dead = await s.events(status="dead", limit=10_000)
        return count, len(still) + len(still_dead)

    count, failing = _run_store(store, run)
    what = "dead handlers" if dead else "failed or dead handlers of " + ", ".join(event_ids)
    if not count:
        raise click.ClickException(f"nothing to replay: no {what}")
    if hooks is None:
        click.echo(f"{count} handler(s) queued again; a running worker runs them")
    else:
        click.echo(
            f"{count} handler(s) ran again; {failing} stored event(s) have failed or dead handlers"
        )


@cli.command()
@click.option(
    "--older-than",
    "days",
    default=30,
    show_default=True,
    type=click.IntRange(min=1),
    metavar="DAYS",
    help="Delete events received more than DAYS ago whose handlers are all done.",
)
@_STORE_OPTION
def prune(days: int, store_url: str | None) -> None:
    """Delete old, fully handled events; failed, dead and pending ones are kept.

    A provider's redelivery of a pruned event runs its handlers again, so keep more than the
    providers' retry window (Stripe retries for 3 days).
    """
    store = _open_cli_store(store_url)
    before = datetime.now(timezone.utc) - timedelta(days=days)

    async def run(s: Store) -> int:
        total = 0
        while (gone := await s.prune(before=before)) > 0:
            total += gone
        return total

    total = _run_store(store, run)
    click.echo(f"pruned {total} event(s) received before {before:%Y-%m-%d %H:%M} UTC")


# -- alert manager: `alerthooks plan` / `alerthooks apply` -----------------------------------


def _fail_lines(message: str) -> NoReturn:
    for line in message.splitlines() or [message]:
        click.echo(f"error: {line}", err=True)
    sys.exit(1)


@contextlib.contextmanager
def _progress(console: Console, what: str, total: int) -> Iterator[Callable[..., None]]:
    """A progress bar on a terminal, cleared when done; nothing when output is not a terminal.
    Yields the function to call as steps finish (with how many; one by default)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task(what, total=total)
        yield lambda steps=1: progress.advance(task, steps)


def _plan_console() -> Console:
    # rich drops colour by itself when stdout is not a terminal or NO_COLOR is set.
    return _console(width=None if sys.stdout.isatty() else 160, highlight=False)


def _can_prompt() -> bool:
    return sys.stdin.isatty()


def _load_alerts(config_path: str) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        _fail_lines(str(exc))


_CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    default="alerts.toml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The alerts file.",
)


@cli.command("plan")
@_CONFIG_OPTION
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when there is nothing to change, 2 when there are changes (1 on error).",
)
def plan_command(config_path: str, detailed_exitcode: bool) -> None:
    """Show what `apply` would change in Stripe and Chargebee; writes nothing."""
    config = _load_alerts(config_path)
    try:
        manager = AlertManager(config, Credentials.from_env())
    except ConfigError as exc:
        _fail_lines(str(exc))

    async def run() -> Plan:
        async with manager:
            return await manager.plan()

    try:
        plan = asyncio.run(run())
    except (PlanError, ProviderError) as exc:
        _fail_lines(str(exc))
    render_plan(plan, _plan_console())
    if detailed_exitcode and plan.has_changes:
        sys.exit(2)


@cli.command("apply")
@_CONFIG_OPTION
@click.option("--yes", is_flag=True, help="Apply without asking (required without a terminal).")
@click.option("--prune", is_flag=True, help="Remove managed alerts whose key left the config.")
@click.option("--live", is_flag=True, help="Allow applying with live-mode credentials.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Requests in flight at once, per provider.",
)
def apply_command(config_path: str, yes: bool, prune: bool, live: bool, concurrency: int) -> None:
    """Make Stripe and Chargebee match the config; asks first unless --yes."""
    config = _load_alerts(config_path)
    try:
        manager = AlertManager(config, Credentials.from_env(), concurrency=concurrency)
    except ConfigError as exc:
        _fail_lines(str(exc))
    live_providers = manager.live_providers()
    if live_providers and not live:
        _fail_lines(
            f"{', '.join(live_providers)}: live-mode credentials; pass --live to apply to live mode"
        )
    if not yes and not _can_prompt():
        _fail_lines("refusing to apply without confirmation: stdin is not a terminal; pass --yes")
    console = _plan_console()

    async def run() -> ApplyResult | None:
        async with manager:
            plan = await manager.plan(prune=prune)
            render_plan(plan, console)
            if not plan.has_changes:
                return None
            if not yes and not click.confirm("Apply these changes?", default=False):
                _fail_lines("apply cancelled")
            with _progress(console, "applying", sum(1 for c in plan.changes if c.is_write)) as done:
                return await manager.apply(plan, on_outcome=lambda outcome: done())

    try:
        result = asyncio.run(run())
    except (PlanError, ProviderError) as exc:
        _fail_lines(str(exc))
    if result is None:
        return
    for outcome in result.outcomes:
        change = outcome.change
        status = "failed" if outcome.error else "done"
        click.echo(
            f"{status}: {change.provider} {change.kind.value} {change.key}: {outcome.message}"
        )
    for new in result.secrets:
        click.echo(
            f"{new.provider} webhook endpoint {new.url} created; signing secret (shown only "
            f"once): {new.secret}\nPut it in STRIPE_WEBHOOK_SECRET where the receiver runs."
        )
    if result.failed:
        for outcome in result.failed:
            click.echo(f"error: {outcome.error}", err=True)
        click.echo(
            f"error: {len(result.failed)} of {len(result.outcomes)} changes failed; "
            "run apply again to finish",
            err=True,
        )
        sys.exit(1)
    count = len(result.outcomes)
    click.echo(f"Applied {count} change{'s' if count != 1 else ''}.")


# -- test kit: `alerthooks send` ---------------------------------------------------------------

_PROVIDER_LABELS = {"stripe": "Stripe", "chargebee": "Chargebee"}
_DEFAULT_SAMPLES = {"stripe": "stripe_alert_triggered", "chargebee": "chargebee_alert_in_alarm"}


def _send_fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _send_body(provider: str, file: str | None, sample: str | None) -> tuple[bytes, str]:
    """The bytes to send and a label saying where they came from."""
    from alerthooks.testing.builders import build_sample, sample_names

    if file is not None and sample is not None:
        _send_fail("give a FILE or --sample, not both")
    if file is not None:
        try:
            body = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
        except OSError as exc:
            _send_fail(f"cannot read {file}: {exc.strerror or exc}")
        return body, "stdin" if file == "-" else file
    choices = sample_names(provider)
    name = sample or _DEFAULT_SAMPLES[provider]
    if name not in choices and f"{provider}_{name}" in choices:
        name = f"{provider}_{name}"
    if name not in choices:
        other = next((p for p in _PROVIDER_LABELS if name in sample_names(p)), None)
        what = f"a {_PROVIDER_LABELS[other]} sample" if other else "not a sample"
        _send_fail(f"--sample {name!r} is {what}; choose one of {', '.join(choices)}")
    return json.dumps(build_sample(name)).encode(), f"sample {name}"


def _send_headers(
    provider: str, body: bytes, secret: str | None, auth: str | None
) -> dict[str, str]:
    from alerthooks.providers.chargebee import PASSWORD_ENV as CHARGEBEE_PASSWORD_ENV
    from alerthooks.providers.chargebee import USERNAME_ENV as CHARGEBEE_USERNAME_ENV
    from alerthooks.providers.stripe import SECRET_ENV as STRIPE_SECRET_ENV
    from alerthooks.testing.signing import chargebee_auth_headers, stripe_signature_header

    headers = {"content-type": "application/json", "user-agent": f"alerthooks-send/{__version__}"}
    if provider == "stripe":
        if auth is not None:
            _send_fail("--auth is for chargebee; Stripe deliveries are signed with --secret")
        if secret is None:
            secret = next(
                (s.strip() for s in os.environ.get(STRIPE_SECRET_ENV, "").split(",") if s.strip()),
                None,
            )
        if not secret:
            _send_fail(f"no Stripe signing secret: pass --secret or set {STRIPE_SECRET_ENV}")
        headers["stripe-signature"] = stripe_signature_header(body, secret)
        return headers
    if secret is not None:
        _send_fail("--secret is for stripe; Chargebee deliveries use --auth USER:PASS")
    if auth is not None:
        user, colon, password = auth.partition(":")
        if not colon:
            _send_fail("--auth takes USER:PASS")
    else:
        user = os.environ.get(CHARGEBEE_USERNAME_ENV, "")
        password = os.environ.get(CHARGEBEE_PASSWORD_ENV, "")
        if not (user or password):
            _send_fail(
                "no Chargebee credentials: pass --auth USER:PASS or set "
                f"{CHARGEBEE_USERNAME_ENV} and {CHARGEBEE_PASSWORD_ENV}"
            )
    headers.update(chargebee_auth_headers(user, password))
    return headers


def _event_id(body: bytes) -> str | None:
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    event_id = payload.get("id") if isinstance(payload, dict) else None
    return event_id if isinstance(event_id, str) else None


@cli.command("send")
@click.argument("provider", type=click.Choice(["stripe", "chargebee"]))
@click.argument("file", required=False, metavar="[FILE]")
@click.option(
    "--sample",
    metavar="NAME",
    help="A built-in sample (listed above), sent with a fresh event id; default: the "
    "provider's alert.",
)
@click.option(
    "--url",
    required=True,
    metavar="URL",
    help="The endpoint, e.g. http://127.0.0.1:8000/webhooks/stripe.",
)
@click.option(
    "--secret", metavar="WHSEC", help="Stripe signing secret; default: env STRIPE_WEBHOOK_SECRET."
)
@click.option(
    "--auth",
    metavar="USER:PASS",
    help="Chargebee Basic credentials; default: env CHARGEBEE_WEBHOOK_USERNAME and _PASSWORD.",
)
@click.option(
    "--timeout",
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    type=click.FloatRange(min=0, min_open=True),
    help="How long to wait for the answer.",
)
def send_command(
    provider: str,
    file: str | None,
    sample: str | None,
    url: str,
    secret: str | None,
    auth: str | None,
    timeout: float,
) -> None:
    """Sign a sample (or FILE, `-` for stdin) as PROVIDER would and POST it to --url; print
    the answer. Exits 1 when the answer is not 2xx or nothing answers.

    Samples: stripe_alert_triggered, stripe_alert_triggered_expanded_meter,
    stripe_customer_created, chargebee_alert_in_alarm, chargebee_alert_within_limit,
    chargebee_subscription_created (the provider prefix may be left off).
    """
    import httpx

    body, source = _send_body(provider, file, sample)
    headers = _send_headers(provider, body, secret, auth)
    event_id = _event_id(body)
    out = _console(highlight=False, soft_wrap=True)
    out.print(f"POST {url} ({source}" + (f", event {event_id})" if event_id else ")"), markup=False)
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=timeout)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        _send_fail(f"invalid --url {url!r}: {exc}")
    except httpx.TimeoutException:
        _send_fail(f"no answer from {url} within {timeout:g}s")
    except httpx.HTTPError as exc:
        _send_fail(f"cannot reach {url}: {exc or type(exc).__name__}")
    ok = response.is_success
    out.print(
        f"{response.status_code} {response.reason_phrase}".rstrip(),
        style="green" if ok else "red",
        markup=False,
    )
    if response.content:
        out.print(response.text, markup=False, highlight=True)
    if not ok:
        _send_fail(f"{url} answered {response.status_code} {response.reason_phrase}".rstrip())
