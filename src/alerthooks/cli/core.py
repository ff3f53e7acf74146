"""What every ``alerthooks`` command shares: the error policy, the console, and loading an app
or a store.

The error policy: a user error is one line ``error: …`` on stderr (a usage error adds where the
help is) and exit code 1, or 2 for a usage error; a command raises :class:`Failure` (or calls
:func:`fail`) and the group prints it. ``--debug`` (serve, worker, replay) prints the traceback
of the exception behind the error first.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import sys
import sysconfig
import traceback
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console

from alerthooks import __version__
from alerthooks.hooks import AlertHooks
from alerthooks.store import Store, StoreError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class Failure(click.ClickException):
    """A user error: printed as ``error: …`` (one line per line of the message), exit code 1."""


def fail(message: str, *, cause: BaseException | None = None) -> NoReturn:
    """Stop the command with ``message`` as its error; ``cause`` is what ``--debug`` shows."""
    raise Failure(message) from cause


class _Debug:
    """Whether this run was given ``--debug`` (reset by each :class:`_Group` run)."""

    on = False


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    _Debug.on = _Debug.on or value
    return value


DEBUG_OPTION = click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_set_debug,
    help="On an error, print its traceback too.",
)


# click >= 8.2 raises this for a group run without a command; older click prints help itself.
_NoArgsIsHelp: type[click.UsageError] = getattr(
    click.exceptions, "NoArgsIsHelpError", type("_Never", (click.UsageError,), {})
)


class _Group(click.Group):
    """A click group that applies the error policy to every command."""

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
        _Debug.on = False
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except _NoArgsIsHelp as exc:  # bare `alerthooks`: the help, as click shows it
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"error: {_one_line(exc.format_message())}{where}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            if _Debug.on and exc.__cause__ is not None:
                traceback.print_exception(
                    type(exc.__cause__), exc.__cause__, exc.__cause__.__traceback__
                )
            for line in exc.format_message().splitlines() or [""]:
                click.echo(f"error: {line}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)  # ctx.exit(n) returns n here


def _one_line(message: str) -> str:
    return " ".join(message.split("\n"))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="alerthooks")
def cli() -> None:
    """Usage-alert webhooks from billing providers: receive, store, dispatch, and sync."""


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="alerthooks")


# -- output -----------------------------------------------------------------------------------


def console(**options: Any) -> Console:
    """A rich Console on stdout: styled on a terminal, and plain (no escape codes at all) when
    stdout is not a terminal or NO_COLOR is set; rich alone keeps bold and dim under NO_COLOR."""
    if os.environ.get("NO_COLOR"):
        options.setdefault("color_system", None)
    return Console(**options)


def is_terminal() -> bool:
    """Whether stdout is a terminal (tables instead of tab-separated rows)."""
    return sys.stdout.isatty()


def print_rows(headers: Sequence[str], rows: Iterable[Sequence[str]], *, title: str) -> None:
    """A rich table on a terminal, else a header line and tab-separated rows (tabs and line
    breaks inside a cell become spaces)."""
    if is_terminal():
        from rich.table import Table

        table = Table(*headers, title=title)
        for row in rows:
            table.add_row(*row)
        console().print(table)
    else:
        click.echo("\t".join(headers))
        for row in rows:
            click.echo("\t".join(cell.replace("\t", " ").replace("\n", " ") for cell in row))


def can_prompt() -> bool:
    """Whether stdin is a terminal to ask on."""
    return sys.stdin.isatty()


@contextlib.contextmanager
def progress(out: Console, what: str, total: int) -> Iterator[Callable[..., None]]:
    """A progress bar on a terminal, cleared when done; nothing when output is not a terminal.
    Yields the function to call as steps finish (with how many; one by default)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        console=out,
        transient=True,
        disable=not out.is_terminal,
    ) as bar:
        task = bar.add_task(what, total=total)
        yield lambda steps=1: bar.advance(task, steps)


def log_to_stderr() -> None:
    """Show alerthooks' own log lines (events accepted, handlers failing, the store down) beside
    uvicorn's, unless the app configured logging itself."""
    package = logging.getLogger("alerthooks")
    if not package.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        package.addHandler(handler)
        package.setLevel(logging.INFO)


# -- loading an app ---------------------------------------------------------------------------

APP_OPTION = click.option(
    "--app",
    "target",
    metavar="MODULE:ATTR",
    default=None,
    help="An AlertHooks to use (its providers and its store), or an app that mounts one.",
)


def load_target(target: str) -> Any:
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
            fail(f"cannot import {module_name!r}: no such module", cause=exc)
        fail(f"cannot import {module_name!r}: {describe(exc)}", cause=exc)
    except Exception as exc:
        fail(f"cannot import {module_name!r}: {describe(exc)}", cause=exc)
    try:
        found: Any = module
        for part in attr.split("."):
            found = getattr(found, part)
    except AttributeError as exc:
        fail(f"module {module_name!r} has no attribute {attr!r}", cause=exc)
    return found


def load_hooks(target: str, store_url: str | None = None) -> AlertHooks:
    """The AlertHooks at ``MODULE:ATTR``, or the one the app there mounts (a Starlette or
    FastAPI app, through its mounts and middleware), its store replaced by ``store_url`` when
    given."""
    found = load_target(target)
    if not isinstance(found, AlertHooks):
        found = mounted_hooks(found, target)
    use_store(found, store_url)
    return found


def mounted_hooks(app: Any, target: str) -> AlertHooks:
    """The one AlertHooks that ``app`` (loaded from ``target``) mounts; an error naming them
    when it mounts several, or saying so when it mounts none."""
    from alerthooks.testing.client import _mounted

    found: dict[int, tuple[AlertHooks, str]] = {}
    for hooks, prefix in _mounted(app, "", depth=0):
        found.setdefault(id(hooks), (hooks, prefix or "/"))
    if len(found) == 1:
        return next(iter(found.values()))[0]
    kind = type(app).__name__
    if not found:
        fail(f"{target} is a {kind}: neither an AlertHooks nor an app that mounts one")
    where = ", ".join(prefix for _, prefix in found.values())
    fail(
        f"{target} is a {kind} that mounts {len(found)} AlertHooks (at {where}); "
        "point at one of them (MODULE:ATTR of the AlertHooks)"
    )


def use_store(hooks: AlertHooks, store_url: str | None) -> None:
    """Replace ``hooks``' store by ``--store URL`` (when given)."""
    if store_url:
        try:
            hooks.replace_store(store_url)
        except (ValueError, ImportError) as exc:
            fail(f"--store: {exc}", cause=exc)


def describe(exc: BaseException) -> str:
    """``exc`` in one line, with the file and line of the user's code that raised it: the
    innermost frame outside alerthooks, the standard library and installed packages."""
    message = _one_line(str(exc)) or "(no message)"
    text = f"{type(exc).__name__}: {message}"
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return f"{text} ({_short(exc.filename)}, line {exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if _is_user_file(f.filename)]
    if not (mine or frames):
        return text
    frame = (mine or frames)[-1]
    return f"{text} ({_short(frame.filename)}, line {frame.lineno})"


_NOT_USER = tuple(
    str(Path(p).resolve())
    for p in {
        sysconfig.get_paths()["stdlib"],
        sysconfig.get_paths()["purelib"],
        sysconfig.get_paths()["platlib"],
        str(Path(__file__).resolve().parents[1]),  # alerthooks itself
    }
)


def _is_user_file(filename: str) -> bool:
    if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return False
    return not str(Path(filename).resolve()).startswith(_NOT_USER)


def _short(filename: str) -> str:
    path = Path(filename).resolve()
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


# -- stores -----------------------------------------------------------------------------------

STORE_OPTION = click.option(
    "--store",
    "store_url",
    metavar="URL",
    default=None,
    help="Store URL (memory://, sqlite:///PATH, postgresql://…); replaces a loaded app's store. "
    "Default: the app's store, or without an app env ALERTHOOKS_STORE, else "
    "sqlite:///alerthooks.db.",
)


def open_cli_store(store_url: str | None) -> Store:
    """The store at ``--store URL`` (default env, else ./alerthooks.db); a SQLite file must
    exist already, so a typo is not a new empty store."""
    from alerthooks.store import open_store

    try:
        store = open_store(store_url)
    except (ValueError, ImportError) as exc:  # ImportError: the store's extra is missing
        fail(str(exc), cause=exc)
    return existing(store)


def existing(store: Store) -> Store:
    """``store``, unless it is a SQLite file that does not exist yet (a command that reads
    must not create an empty store at a mistyped path)."""
    from alerthooks.store.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore) and not Path(store.path).exists():
        fail(f"no store at {store.path} (pass --store URL or set ALERTHOOKS_STORE)")
    return store


def run_store(store: Store, operation: Callable[[Store], Awaitable[T]]) -> T:
    """Run ``operation`` on ``store`` and close it; an unreachable store is one error line."""

    async def run() -> T:
        try:
            return await operation(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except StoreError as exc:
        fail(f"store unavailable: {exc}", cause=exc)
