"""The durable inbox from the shell: ``serve``, ``worker``, ``events``, ``replay``, ``prune``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import typing
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import click

from alerthooks.cli import core, serving
from alerthooks.cli.core import (
    APP_OPTION,
    DEBUG_OPTION,
    STORE_OPTION,
    cli,
    fail,
    load_hooks,
    load_target,
    log_to_stderr,
    open_cli_store,
    run_store,
    use_store,
)
from alerthooks.hooks import AlertHooks
from alerthooks.providers import Provider
from alerthooks.store import Attempt, Outcome, Status, Store, StoredEvent, redact_url


@cli.command()
@click.argument("target", metavar="MODULE:ATTR")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to bind.")
@click.option(
    "--max-header-bytes",
    default=serving.DEFAULT_MAX_HEADER_BYTES,
    show_default=True,
    type=click.IntRange(min=1024),
    metavar="BYTES",
    help="Refuse a request whose header block (request line to blank line) is larger: "
    "answered 431, connection closed.",
)
@click.option(
    "--header-timeout",
    default=serving.DEFAULT_HEADER_TIMEOUT,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Close a connection whose request headers are not complete this long after it "
    "opened (or after its previous response).",
)
@click.option(
    "--limit-concurrency",
    default=None,
    show_default=f"{serving.DEFAULT_LIMIT_CONCURRENCY}, from the fd limit {serving.fd_limit()}",
    type=click.IntRange(min=1),
    metavar="N",
    help="Open connections (and requests in flight) allowed: beyond it a new connection closes "
    "the one waiting longest for its request headers (or itself, when none is waiting) and "
    "requests are answered 503. serve raises the soft fd limit (RLIMIT_NOFILE) to the hard "
    "limit and derives the default from it.",
)
@click.option(
    "--timeout-keep-alive",
    default=serving.DEFAULT_TIMEOUT_KEEP_ALIVE,
    show_default=True,
    type=click.IntRange(min=1),
    metavar="SECONDS",
    help="Close an idle keep-alive connection after this long.",
)
@click.option(
    "--no-health",
    is_flag=True,
    help=f"Do not serve GET {serving.HEALTH_PREFIX}/live and {serving.HEALTH_PREFIX}/ready.",
)
@STORE_OPTION
@DEBUG_OPTION
def serve(
    target: str,
    host: str,
    port: int,
    max_header_bytes: int,
    header_timeout: float,
    limit_concurrency: int | None,
    timeout_keep_alive: int,
    no_health: bool,
    store_url: str | None,
) -> None:
    """Serve an AlertHooks (at the root: one route per provider, /stripe, /chargebee, …) or
    any ASGI app with uvicorn, with its health checks at /_alerthooks/live and /ready.

    The worker runs in the app's lifespan: an AlertHooks at the root starts it itself, a host
    app needs lifespan=hooks.lifespan. Request headers are bounded in size and time and
    connections in number (see the options); bodies by the AlertHooks (max_body_bytes,
    body_timeout).
    """
    app = load_target(target)
    if not callable(app):
        fail(f"{target} is a {type(app).__name__}, not an ASGI app")
    hooks: AlertHooks | None = app if isinstance(app, AlertHooks) else None
    if hooks is not None:
        use_store(hooks, store_url)
    elif store_url:
        hooks = core.mounted_hooks(app, target)
        use_store(hooks, store_url)
    lifespan: Literal["on", "auto"] = "on" if isinstance(app, AlertHooks) else "auto"
    served: Any = app
    health = ""
    if not no_health:
        if hooks is None:
            from alerthooks.testing.client import find_hooks

            with contextlib.suppress(LookupError):
                hooks = find_hooks(app)[0]
        if hooks is not None:
            served = serving.WithHealth(app, hooks.health_app())
            health = f"; health at {serving.HEALTH_PREFIX}/live and /ready"
    log_to_stderr()
    fds = serving.fd_limit(raise_soft=True)
    if limit_concurrency is None:
        limit_concurrency = serving.limit_for(fds)
    elif limit_concurrency > serving.limit_for(fds):
        click.echo(
            f"warning: --limit-concurrency {limit_concurrency} is more than the fd limit {fds}"
            f" allows ({serving.limit_for(fds)}): a flood can run the server out of file"
            " descriptors",
            err=True,
        )
    click.echo(
        f"alerthooks serving {target} on http://{host}:{port}{health}"
        f" (limit-concurrency {limit_concurrency}, fd limit {fds})"
    )
    serving.run(
        served,
        host=host,
        port=port,
        lifespan=lifespan,
        log_level="info",
        **serving.server_settings(
            max_header_bytes=max_header_bytes,
            header_timeout=header_timeout,
            limit_concurrency=limit_concurrency,
            timeout_keep_alive=timeout_keep_alive,
        ),
    )


@cli.command()
@click.argument("target", metavar="MODULE:ATTR")
@STORE_OPTION
@DEBUG_OPTION
def worker(target: str, store_url: str | None) -> None:
    """Run the queued-mode worker of an AlertHooks alone (split web and worker processes)."""
    hooks = load_hooks(target, store_url)

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

    log_to_stderr()
    click.echo(f"alerthooks worker for {target} on {redact_url(hooks.store.url)}")
    with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
        asyncio.run(run())


def _when(moment: datetime | None) -> str:
    """A stored time in UTC, with its zone: ``2026-12-01 15:04:05Z``."""
    return f"{moment.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}Z" if moment else ""


def _builtin_normalizers() -> dict[str, Provider]:
    """One instance of each built-in provider, for reading stored bodies (no credentials)."""
    from alerthooks.providers import BUILTIN

    found: dict[str, Provider] = {}
    for cls in BUILTIN:
        with contextlib.suppress(Exception):
            found[cls.name] = cls()
    return found


def _shown_type(event: StoredEvent, providers: Mapping[str, Provider]) -> tuple[str, str]:
    """The normalized type (``alert.triggered``…) and kind (``usage``…) when the stored body
    normalizes with its provider, else the provider's own type and ``-``."""
    provider = providers.get(event.provider)
    if provider is not None:
        try:
            payload = json.loads(event.body)
            if isinstance(payload, dict):
                alert = provider.normalize(payload)
                return str(alert.type), alert.kind
        except Exception:  # anything unreadable shows the raw type
            pass
    return event.event_type or "", "-"


_STATUSES = typing.get_args(Status)
_ALL = 1_000_000  # a limit for Store.events meaning "every one"


@cli.command()
@click.option(
    "--status",
    type=click.Choice(_STATUSES),
    default=None,
    help="Only events with a handler in this state (unparsed: alerts that could not be read).",
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--history",
    is_flag=True,
    help="One row per attempt of each handler (that attempt's outcome, when it finished, its "
    "error) instead of one per handler.",
)
@APP_OPTION
@STORE_OPTION
def events(
    status: str | None, limit: int, history: bool, target: str | None, store_url: str | None
) -> None:
    """List stored events, newest first, with each handler's outcome.

    Times are UTC (``2026-12-01 15:04:05Z``). The type is the normalized one (alert.triggered,
    alert.cleared) and the kind the alert's (usage, spend, credit_balance, other) when the
    stored body reads as an alert with its provider (the built-in ones, or --app's), else the
    provider's own event type and kind -. The attempts column counts every run of the handler,
    replays included; with an --app in inline mode, a failed handler's next attempt reads "on
    redelivery or replay" (nothing retries it before). An alert that could not be read shows
    as handler <unparsed>, status unparsed, with the reason as its error.
    """
    inline = False
    if target is not None:
        hooks = load_hooks(target, store_url)
        store = core.existing(hooks.store)
        providers: Mapping[str, Provider] = {**_builtin_normalizers(), **hooks.providers}
        inline = hooks.mode == "inline"
    else:
        store = open_cli_store(store_url)
        providers = _builtin_normalizers()
    wanted = typing.cast("Status | None", status)
    found = run_store(store, lambda s: s.events(status=wanted, limit=limit))
    if history:
        headers, rows = _attempt_rows(found, providers)
    else:
        headers, rows = _outcome_rows(found, providers, inline=inline)
    core.print_rows(headers, rows, title=f"{len(found)} event(s)")


_Rows = tuple[tuple[str, ...], list[tuple[str, ...]]]


_ON_REDELIVERY = "on redelivery or replay"  # inline mode: nothing retries a failed handler


def _outcome_rows(
    found: Sequence[StoredEvent], providers: Mapping[str, Provider], *, inline: bool = False
) -> _Rows:
    """One row per (event, handler): its status, attempts in all, next attempt (``inline``:
    an app in inline mode, where only a redelivery or a replay runs a failed handler again),
    last error."""
    rows: list[tuple[str, ...]] = []
    for event in found:
        received, (shown, kind) = _when(event.received_at), _shown_type(event, providers)
        for o in event.outcomes or (None,):
            rows.append(
                (
                    received,
                    event.provider,
                    event.event_id,
                    shown,
                    kind,
                    o.handler if o else "-",
                    o.status if o else "-",
                    str(max(o.attempts, len(o.history))) if o else "",
                    (_ON_REDELIVERY if inline and o.status == "failed" else _when(o.due_at))
                    if o
                    else "",
                    (o.last_error or "") if o else "",
                )
            )
    headers = (
        "received",
        "provider",
        "event",
        "type",
        "kind",
        "handler",
        "status",
        "attempts",
        "next attempt",
        "error",
    )
    return headers, rows


def _attempt_rows(found: Sequence[StoredEvent], providers: Mapping[str, Provider]) -> _Rows:
    """One row per finished attempt of each (event, handler), oldest first; a handler not run
    yet (or an unparsed event) has one row without an attempt, its error the stored one."""
    rows: list[tuple[str, ...]] = []
    for event in found:
        received, (shown, kind) = _when(event.received_at), _shown_type(event, providers)
        head = (received, event.provider, event.event_id, shown, kind)
        if not event.outcomes:
            rows.append((*head, "-", "-", "", "", ""))
        for o in event.outcomes:
            if not o.history:
                rows.append((*head, o.handler, o.status, "", "", o.last_error or ""))
            for attempt in o.history:
                rows.append(
                    (
                        *head,
                        o.handler,
                        _attempt_status(o, attempt),
                        str(attempt.number),
                        _when(attempt.finished_at),
                        attempt.error or "",
                    )
                )
    headers = ("received", "provider", "event", "type", "kind", "handler", "status", "attempt")
    return (*headers, "finished", "error"), rows


def _attempt_status(outcome: Outcome, attempt: Attempt) -> str:
    """What one attempt came to: ``done``, ``failed``, or ``dead`` for the last one of a
    handler that is dead."""
    if attempt.error is None:
        return "done"
    last = attempt is outcome.history[-1]
    return "dead" if last and outcome.status == "dead" else "failed"


_REPLAY_TIMEOUT = 3600.0  # replay --app: how long its handlers may run in all

_Pair = tuple[str, str, str]  # (provider, event id, handler)


@dataclass
class _Replayed:
    """What one ``alerthooks replay`` did."""

    reset: int = 0
    """Failed or dead handlers made pending again."""
    pairs: set[_Pair] = field(default_factory=set)
    """The pairs it runs (with --app): those reset, and the handlers of unparsed events that
    read now."""
    unparsed: int = 0
    """Unparsed events found (--unparsed)."""
    read: int = 0
    """Of those, how many read now and went to their handlers."""
    still: list[tuple[StoredEvent, str]] = field(default_factory=list)
    """Those still unparsed, with the reason."""
    done: int = 0
    """Of ``pairs``, how many are done after running."""
    failed_again: int = 0
    """Of ``pairs``, how many are failed or dead after running."""


@cli.command()
@click.argument("event_ids", nargs=-1, metavar="[EVENT_ID]...")
@click.option("--dead", is_flag=True, help="Replay every dead handler instead of given events.")
@click.option(
    "--failed",
    is_flag=True,
    help="Replay every failed handler (not dead yet) instead of given events.",
)
@click.option(
    "--unparsed",
    is_flag=True,
    help="Read every unparsed event again (with --app's providers, after an upgrade) and run "
    "the handlers of those that read now; needs --app.",
)
@click.option(
    "--app",
    "target",
    metavar="MODULE:ATTR",
    default=None,
    help="Run the handlers now in this process with this AlertHooks (uses its store) instead "
    "of leaving them to a running worker.",
)
@STORE_OPTION
@DEBUG_OPTION
def replay(
    event_ids: tuple[str, ...],
    dead: bool,
    failed: bool,
    unparsed: bool,
    target: str | None,
    store_url: str | None,
) -> None:
    """Run the failed or dead handlers of EVENT_IDs (or with --dead, --failed, every dead or
    failed one) again; with --unparsed, read unparsed events again and run their handlers.

    With --app, exits 1 when a replayed handler failed again (after printing the counts).
    """
    if bool(event_ids) == (dead or failed or unparsed):
        raise click.UsageError("give EVENT_ID... or --dead, --failed, --unparsed (not both)")
    hooks: AlertHooks | None = None
    if target is not None:
        hooks = load_hooks(target, store_url)
        store = hooks.store
    elif unparsed:
        raise click.UsageError(
            "--unparsed needs --app MODULE:ATTR: its providers read the events again and its "
            "handlers run them"
        )
    else:
        store = open_cli_store(store_url)

    async def run(s: Store) -> _Replayed:
        done = _Replayed()
        if event_ids:
            stored = await _stored_by_id(s, event_ids)
            unknown = [e for e in event_ids if e not in stored]
            if unknown:
                fail(f"unknown event {', '.join(unknown)}: the store has no event with that id")
        if event_ids or dead or failed:
            if hooks is not None:
                done.pairs = await _replayable(s, event_ids, dead=dead, failed=failed)
            done.reset = await s.replay(event_ids, dead=dead, failed=failed)
        if unparsed:
            assert hooks is not None
            await _read_again(s, hooks, done)
        if hooks is None or not (done.reset or done.pairs):
            return done
        await _run_now(hooks, {(p, e) for p, e, _ in done.pairs}, len(done.pairs))
        for provider, event_id in {(p, e) for p, e, _ in done.pairs}:
            stored_now = await s.get(provider, event_id)
            for o in stored_now.outcomes if stored_now else ():
                if (provider, event_id, o.handler) in done.pairs:
                    done.done += o.status == "done"
                    done.failed_again += o.status in ("failed", "dead")
        return done

    result = run_store(store, run)
    _report(result, event_ids, dead=dead, failed=failed, unparsed=unparsed, now=hooks is not None)


async def _stored_by_id(s: Store, event_ids: Collection[str]) -> dict[str, list[StoredEvent]]:
    """The stored events of each id, whatever their provider (ids missing are absent)."""
    found: dict[str, list[StoredEvent]] = {}
    for event_id in event_ids:
        for event in await s.events(search=event_id, limit=_ALL):
            if event.event_id == event_id:
                found.setdefault(event_id, []).append(event)
    return found


async def _replayable(
    s: Store, event_ids: Collection[str], *, dead: bool, failed: bool
) -> set[_Pair]:
    """The pairs ``Store.replay`` is about to reset, to run them and see how they did."""
    wanted: list[Status] = []
    if dead:
        wanted.append("dead")
    if failed:
        wanted.append("failed")
    pairs: set[_Pair] = set()
    if wanted:
        for status in wanted:
            for event in await s.events(status=status, limit=_ALL):
                pairs.update(
                    (event.provider, event.event_id, o.handler)
                    for o in event.outcomes
                    if o.status == status
                )
        return pairs
    for events in (await _stored_by_id(s, event_ids)).values():
        for event in events:
            pairs.update(
                (event.provider, event.event_id, o.handler)
                for o in event.outcomes
                if o.status in ("failed", "dead")
            )
    return pairs


async def _read_again(s: Store, hooks: AlertHooks, done: _Replayed) -> None:
    """Read every unparsed event again with ``hooks``' providers; hand those that read now to
    their handlers (``done.pairs``), and keep the others in ``done.still``."""
    for event in await s.events(status="unparsed", limit=_ALL):
        done.unparsed += 1
        read = await hooks.read_again(event.provider, event.event_id)
        if isinstance(read, str):
            done.still.append((event, read))
            continue
        done.read += 1
        # A thin event's handlers are pending under the id of the event it stood for.
        pending_id = getattr(read, "event_id", event.event_id)
        done.pairs.update((event.provider, pending_id, name) for name in read)


async def _run_now(hooks: AlertHooks, events: Collection[tuple[str, str]], count: int) -> None:
    """Run the handlers of ``events`` now, and no other event's, with a progress bar on a
    terminal."""
    with core.progress(core.console(), "replaying", count) as advance:
        before, shown = hooks.worker.recorded, 0
        running = asyncio.ensure_future(hooks.worker.run_events(events, _REPLAY_TIMEOUT))
        while not running.done():
            await asyncio.wait({running}, timeout=0.1)
            now = min(hooks.worker.recorded - before, count)
            advance(now - shown)
            shown = now
        try:
            await running
        except TimeoutError as exc:
            fail(
                f"replayed handlers still running after {_REPLAY_TIMEOUT:.0f} s; stopped",
                cause=exc,
            )


def _report(
    done: _Replayed,
    event_ids: Collection[str],
    *,
    dead: bool,
    failed: bool,
    unparsed: bool,
    now: bool,
) -> None:
    """Print what the replay did; exit 1 when there was nothing to replay or a replayed
    handler failed again."""
    if not done.reset and not done.unparsed:
        if event_ids:
            message = "failed or dead handlers of " + ", ".join(event_ids)
        else:
            kinds = " or ".join(k for k, on in (("failed", failed), ("dead", dead)) if on)
            message = " and no ".join(
                ([f"{kinds} handlers"] if kinds else []) + (["unparsed events"] if unparsed else [])
            )
        fail(f"nothing to replay: no {message}")
    if not now:
        click.echo(f"{done.reset} handler(s) queued again; a running worker runs them")
        return
    for event, reason in done.still:
        click.echo(f"still unparsed: {event.provider} {event.event_id}: {reason}")
    if unparsed:
        click.echo(
            f"{done.read} of {done.unparsed} unparsed event(s) read now and went to their "
            f"handlers; {len(done.still)} still unparsed"
        )
    again = " again" if done.reset else ""  # unparsed events' handlers run for the first time
    if done.reset or done.pairs:
        ran = len(done.pairs)
        left = ran - done.done - done.failed_again
        line = f"{ran} handler(s) ran{again}: {done.done} done, {done.failed_again} failed{again}"
        click.echo(line + (f", {left} left to a running worker" if left else ""))
    if done.failed_again:
        fail(
            f"{done.failed_again} replayed handler(s) failed{again}"
            " (alerthooks events --history shows their attempts)"
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
@STORE_OPTION
def prune(days: int, store_url: str | None) -> None:
    """Delete old, fully handled events; failed, dead and pending ones are kept.

    A provider's redelivery of a pruned event runs its handlers again, so keep more than the
    providers' retry window (Stripe retries for 3 days).
    """
    store = open_cli_store(store_url)
    before = datetime.now(timezone.utc) - timedelta(days=days)

    async def run(s: Store) -> tuple[int, int]:
        total = 0
        while (gone := await s.prune(before=before)) > 0:
            total += gone
        return total, await s.prune_rejections(before=before)

    total, rejected = run_store(store, run)
    click.echo(
        f"pruned {total} event(s) and {rejected} rejected deliveries received before "
        f"{before:%Y-%m-%d %H:%M} UTC"
    )


@cli.command()
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--provider", default=None, metavar="NAME", help="Only this provider's.")
@STORE_OPTION
def rejections(limit: int, provider: str | None, store_url: str | None) -> None:
    """List rejected deliveries, newest first: when, provider, HTTP status, reason, source.

    Kept by the receiver (rate-limited under a flood: "dropped" counts those not kept before a
    row), at most the newest 10,000 and 30 days; never a body, a signature or a credential.
    The event id is what the refused body claims (unverified).
    """
    store = open_cli_store(store_url)
    found = run_store(store, lambda s: s.rejections(limit=limit, provider=provider))
    rows = [
        (
            _when(r.received_at),
            r.provider,
            str(r.status),
            r.reason,
            r.source or "",
            str(r.body_bytes),
            r.event_id or "",
            str(r.dropped) if r.dropped else "",
        )
        for r in found
    ]
    headers = ("time", "provider", "status", "reason", "source", "bytes", "event", "dropped")
    core.print_rows(headers, rows, title=f"{len(found)} rejected deliveries")
