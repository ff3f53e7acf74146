"""Handler registry: which functions an event goes to, and running them (the one place that
runs handlers, for inline and queued mode alike).

The table maps an event type to the handlers registered for it, in registration order::

    {"alert.triggered": [Handler(notify), Handler(page_oncall, filters={"provider": {"stripe"}})],
     "alert.cleared":   [...],
     "*":               [...]}
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio.to_thread

from alerthooks.events import ALERT_KINDS, AlertEvent
from alerthooks.observe import Observers, run_handler
from alerthooks.store import UNPARSED_HANDLER

logger = logging.getLogger(__name__)

HandlerFunc = Callable[[AlertEvent], Awaitable[None] | None]
F = TypeVar("F", bound=HandlerFunc)

EVENT_TYPES = ("alert.triggered", "alert.cleared", "*")
FILTER_FIELDS = (
    "provider",
    "alert_id",
    "meter_id",
    "customer_id",
    "subscription_id",
    "alert_type",
    "kind",
)


@dataclass(frozen=True)
class Handler:
    """A registered handler: its stable ``name`` keys its recorded outcome for each event."""

    name: str
    func: HandlerFunc
    event_type: str
    filters: dict[str, frozenset[str]] = field(default_factory=dict)
    is_async: bool = False

    def matches(self, event: AlertEvent) -> bool:
        """Whether every filter of this handler accepts ``event``."""
        if not self.filters:
            return True
        return all(getattr(event, attr) in accepted for attr, accepted in self.filters.items())

    async def run(self, event: AlertEvent) -> str | None:
        """Run the handler; return None on success or a short error description.

        Plain functions run in a worker thread so they cannot block the event loop.
        """
        try:
            if self.is_async:
                await self.func(event)  # type: ignore[misc]
            else:
                await anyio.to_thread.run_sync(self.func, event)
        except Exception as exc:
            logger.exception(
                "handler %s failed for %s event %s", self.name, event.provider, event.id
            )
            return _error_text(exc)
        return None


def _error_text(exc: Exception) -> str:
    """A short description of ``exc`` that any store can keep (no NUL, no lone surrogates)."""
    try:
        message = str(exc)
    except Exception:
        message = "<unprintable message>"
    text = f"{type(exc).__name__}: {message}"[:1000]
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _name_of(func: Callable[..., Any]) -> str:
    module = getattr(func, "__module__", None) or "?"
    qualname = getattr(func, "__qualname__", None) or repr(func)
    return f"{module}.{qualname}"


def _accepted(field_name: str, value: str | Iterable[str]) -> frozenset[str]:
    values = frozenset([value]) if isinstance(value, str) else frozenset(value)
    if not values or not all(isinstance(v, str) for v in values):
        raise TypeError(f"filter {field_name!r} takes a string or an iterable of strings")
    return values


class Dispatcher:
    """Routes :class:`AlertEvent` objects to the handlers registered for their type."""

    def __init__(self, *others: Dispatcher, providers: Collection[str] | None = None) -> None:
        #: The provider names a ``provider=`` filter may name; None accepts any name.
        self.providers: frozenset[str] | None = None if providers is None else frozenset(providers)
        self._table: dict[str, list[Handler]] = {t: [] for t in EVENT_TYPES}
        self._names: dict[str, HandlerFunc] = {}
        # Per event type: the candidate handlers (one per name) when none has a filter, so
        # matching is a lookup; None when filters must be checked event by event.
        self._unfiltered: dict[str, tuple[Handler, ...] | None] = {}
        for other in others:
            for handlers in other._table.values():
                for handler in handlers:
                    self._add(handler)

    def add(
        self,
        func: HandlerFunc,
        event_type: str,
        *,
        name: str | None = None,
        **filters: str | Iterable[str],
    ) -> Handler:
        """Register ``func`` for ``event_type`` (``"alert.triggered"``, ``"alert.cleared"`` or
        ``"*"``), optionally narrowed by filters on ``provider``, ``alert_id``, ``meter_id``,
        ``customer_id``, ``subscription_id``, ``alert_type`` and ``kind`` (a string or a set of
        accepted strings). A ``kind`` outside :data:`~alerthooks.events.ALERT_KINDS` is a
        ``ValueError``.

        ``name`` identifies the handler in the store; it defaults to ``module.qualname``.
        """
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event_type!r}; expected one of {EVENT_TYPES}")
        unknown = set(filters) - set(FILTER_FIELDS)
        if unknown:
            raise TypeError(f"unknown filter(s) {sorted(unknown)}; expected {FILTER_FIELDS}")
        if not callable(func):
            raise TypeError("a handler must be callable")
        if name == UNPARSED_HANDLER:
            raise ValueError(f"handler name {name!r} is reserved (it marks unparsed events)")
        accepted = {k: _accepted(k, v) for k, v in filters.items()}
        self._check_providers(accepted.get("provider", frozenset()))
        wrong = sorted(accepted.get("kind", frozenset()) - set(ALERT_KINDS))
        if wrong:
            raise ValueError(
                f"filter kind={wrong[0]!r} is not a kind; expected one of {', '.join(ALERT_KINDS)}"
            )
        handler = Handler(
            name=name or _name_of(func),
            func=func,
            event_type=event_type,
            filters=accepted,
            is_async=inspect.iscoroutinefunction(func)
            or inspect.iscoroutinefunction(getattr(func, "__call__", None)),  # noqa: B004
        )
        self._add(handler)
        return handler

    def _check_providers(self, names: frozenset[str]) -> None:
        if self.providers is None:
            return
        unknown = sorted(names - self.providers)
        if unknown:
            known = ", ".join(sorted(self.providers)) or "none"
            raise ValueError(
                f"filter provider={unknown[0]!r} names no configured provider; known: {known}"
            )

    def _add(self, handler: Handler) -> None:
        taken = self._names.get(handler.name)
        if taken is not None and taken is not handler.func:
            raise ValueError(
                f"handler name {handler.name!r} is taken by another function; pass name=..."
            )
        self._names[handler.name] = handler.func
        self._table[handler.event_type].append(handler)
        self._unfiltered.clear()

    def on(
        self, event_type: str, *, name: str | None = None, **filters: str | Iterable[str]
    ) -> Callable[[F], F]:
        """Decorator form of :meth:`add`; returns the function unchanged."""

        def decorator(func: F) -> F:
            self.add(func, event_type, name=name, **filters)
            return func

        return decorator

    @property
    def handlers(self) -> list[Handler]:
        """Every registered handler, in registration order within each type."""
        return [h for handlers in self._table.values() for h in handlers]

    def match(self, event: AlertEvent) -> list[Handler]:
        """The handlers ``event`` goes to, each function at most once."""
        try:
            unfiltered = self._unfiltered[event.type]
        except KeyError:
            unfiltered = self._unfiltered[event.type] = self._without_filters(event.type)
        if unfiltered is not None:
            return list(unfiltered)
        found: list[Handler] = []
        seen: set[str] = set()
        for handler in (*self._table[event.type], *self._table["*"]):
            if handler.name not in seen and handler.matches(event):
                seen.add(handler.name)
                found.append(handler)
        return found

    def _without_filters(self, event_type: str) -> tuple[Handler, ...] | None:
        candidates = (*self._table[event_type], *self._table["*"])
        if any(handler.filters for handler in candidates):
            return None
        first: dict[str, Handler] = {}
        for handler in candidates:
            first.setdefault(handler.name, handler)
        return tuple(first.values())

    def get(self, name: str) -> Handler | None:
        """The first handler registered under ``name``."""
        for handler in self.handlers:
            if handler.name == name:
                return handler
        return None

    async def run(
        self,
        event: AlertEvent,
        handlers: Sequence[Handler],
        *,
        observers: Observers | None = None,
        queued: bool = False,
    ) -> dict[str, str | None]:
        """Run ``handlers`` on ``event`` concurrently; map each name to None (success) or its
        error text. A failing handler never stops the others. ``observers`` see each run
        (``queued``: a worker runs it after the delivery was answered)."""
        if observers:
            if len(handlers) == 1:
                handler = handlers[0]
                return {handler.name: await run_handler(observers, handler, event, queued=queued)}
            errors = await asyncio.gather(
                *(run_handler(observers, h, event, queued=queued) for h in handlers)
            )
            return {h.name: error for h, error in zip(handlers, errors, strict=True)}
        if len(handlers) == 1:
            handler = handlers[0]
            return {handler.name: await handler.run(event)}
        errors = await asyncio.gather(*(h.run(event) for h in handlers))
        return {h.name: error for h, error in zip(handlers, errors, strict=True)}

    async def run_named(
        self,
        event: AlertEvent,
        names: Iterable[str],
        *,
        observers: Observers | None = None,
        queued: bool = False,
    ) -> dict[str, str | None]:
        """:meth:`run` for handlers given by name (as the store records them); a name no
        handler of this process has is reported as an error rather than skipped."""
        results: dict[str, str | None] = {}
        runnable: list[Handler] = []
        for name in names:
            handler = self.get(name)
            if handler is None:
                results[name] = "handler is not registered in this process"
            else:
                runnable.append(handler)
        if runnable:
            results.update(await self.run(event, runnable, observers=observers, queued=queued))
        return results
