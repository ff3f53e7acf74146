"""What the receiver reports while it works, for metrics and traces.

The receiver holds one :class:`Observers`, empty unless asked (``hooks.metrics_app()``,
``hooks.trace()``, ``hooks.observe(observer)``). Empty, it is falsy, and the receiver skips
observing altogether: a truth test per delivery and per handler run. The call sites::

    # the ASGI layer, once the path named a provider:
    if observers:
        with observers.delivery(provider.name) as seen:
            answer = await answer_the_request(...)
            seen.answered(status, body)

    # the pipeline, once it parsed the event id:
    if observers and (seen := current_delivery()) is not None:
        seen.event(event_id, event_type)

    # inline handler runs (queued=True in the worker):
    error = await run_handler(observers, handler, event, queued=False)

An :class:`Observer` sees each answered delivery and each handler run once, after the fact
(:meth:`Observer.delivery`, :meth:`Observer.handler_run`), and may wrap both in a context
(:meth:`Observer.delivery_scope`, :meth:`Observer.handler_scope`): a tracer opens its spans
there, so a handler's span is the delivery's child and the handler's own spans nest below it.
An observer that raises is logged and never fails a delivery.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

logger = logging.getLogger(__name__)

ObserverT = TypeVar("ObserverT", bound="Observer")
_CURRENT: ContextVar[Seen | None] = ContextVar("alerthooks_delivery", default=None)


@dataclass
class Seen:
    """One delivery as the receiver saw it; filled in as the pipeline learns more."""

    provider: str
    event_id: str | None = None
    event_type: str | None = None
    status: int = 500
    """The HTTP status answered (500 until :meth:`answered`, as when the pipeline raised)."""
    outcome: str = "failed"
    """What the answer said: ``accepted``, ``duplicate``, ``ignored``, ``unparsed``, or for an
    error answer ``rejected`` (4xx), ``failed`` (500: a handler failed, or the pipeline raised)
    or ``unavailable`` (503 and other 5xx: the store, the provider's API or another replica;
    the provider delivers again)."""
    seconds: float = 0.0

    def event(self, event_id: str | None, event_type: str | None) -> None:
        """The delivery's event id and type, once parsed."""
        self.event_id = event_id
        self.event_type = event_type

    def answered(self, status: int, body: bytes = b"") -> None:
        """The answer: its status code and JSON body."""
        self.status = status
        self.outcome = _outcome(status, body)


_OUTCOMES: dict[tuple[int, bytes], str] = {}


def _outcome(status: int, body: bytes) -> str:
    found = _OUTCOMES.get((status, body))
    if found is not None:
        return found
    if status == 500:
        outcome = "failed"
    elif status > 500:
        outcome = "unavailable"
    elif status >= 400:
        outcome = "rejected"
    else:
        try:
            said = json.loads(body).get("status")
        except (ValueError, AttributeError):
            said = None
        outcome = said if isinstance(said, str) and said.isidentifier() else "accepted"
    if len(_OUTCOMES) < 64:  # the receiver's answers are a handful of fixed bodies
        _OUTCOMES[(status, body)] = outcome
    return outcome


@dataclass
class Run:
    """One handler run for one event."""

    handler: str
    provider: str
    event_id: str
    queued: bool
    """Whether a worker runs it after the delivery was answered (queued mode, replays)."""
    outcome: str = "failed"
    """``done`` or ``failed``."""
    error: str | None = None
    seconds: float = 0.0


class Observer:
    """Sees deliveries and handler runs. Subclass it and override what you need; each method's
    default does nothing."""

    def delivery(
        self,
        provider: str,
        event_id: str | None,
        event_type: str | None,
        status: int,
        seconds: float,
    ) -> None:
        """A delivery was answered ``status`` after ``seconds``. ``event_id`` and
        ``event_type`` are None when it was rejected before they were read."""

    def handler_run(self, handler: str, outcome: str, seconds: float) -> None:
        """Handler ``handler`` ran for ``seconds``: ``outcome`` is ``done`` or ``failed``."""

    def delivery_scope(self, seen: Seen) -> contextlib.AbstractContextManager[object]:
        """A context entered before the delivery is read and left once it is answered, with
        ``seen`` filled in by then."""
        return contextlib.nullcontext()

    def handler_scope(self, run: Run) -> contextlib.AbstractContextManager[object]:
        """A context around one handler run (inside the delivery's scope when inline), left
        with ``run`` filled in."""
        return contextlib.nullcontext()


class Observers:
    """The observers of one receiver: falsy when there are none, so the receiver can skip them.

    ``delivery`` and ``handler_run`` are the contexts the receiver wraps its work in. Only the
    methods an observer overrides are called.
    """

    def __init__(self, *observers: Observer) -> None:
        self._all: list[Observer] = []
        # Per Observer method, the observers that override it (the others would do nothing).
        self._deliveries: list[Observer] = []
        self._runs: list[Observer] = []
        self._delivery_scopes: list[Observer] = []
        self._handler_scopes: list[Observer] = []
        for observer in observers:
            self.add(observer)

    def __bool__(self) -> bool:
        return bool(self._all)

    def __iter__(self) -> Iterator[Observer]:
        return iter(self._all)

    def __repr__(self) -> str:
        return f"Observers({', '.join(repr(o) for o in self._all)})"

    def add(self, observer: ObserverT) -> ObserverT:
        """Add ``observer`` (once; adding it again does nothing) and return it."""
        if not isinstance(observer, Observer):
            raise TypeError(f"{observer!r} is not an alerthooks.observe.Observer")
        if observer in self._all:
            return observer
        self._all.append(observer)
        kind = type(observer)
        for method, overriding in (
            ("delivery", self._deliveries),
            ("handler_run", self._runs),
            ("delivery_scope", self._delivery_scopes),
            ("handler_scope", self._handler_scopes),
        ):
            if getattr(kind, method) is not getattr(Observer, method):
                overriding.append(observer)
        return observer

    def find(self, kind: type[ObserverT]) -> ObserverT | None:
        """The first observer that is a ``kind``, or None."""
        for observer in self._all:
            if isinstance(observer, kind):
                return observer
        return None

    def delivery(self, provider: str) -> contextlib.AbstractContextManager[Seen]:
        """Observe one delivery to ``provider``; the receiver fills in the :class:`Seen`."""
        return _DeliveryScope(self, Seen(provider))

    def handler_run(
        self, handler: str, *, provider: str, event_id: str, queued: bool
    ) -> contextlib.AbstractContextManager[Run]:
        """Observe one handler run; the caller sets ``outcome`` (and ``error``) on the
        :class:`Run`."""
        return _RunScope(self, Run(handler, provider, event_id, queued))


def _open_scopes(
    observers: list[Observer], open_one: Callable[[Observer], Any]
) -> list[tuple[Observer, Any]]:
    opened = []
    for observer in observers:
        try:
            scope = open_one(observer)
            scope.__enter__()
        except Exception:
            logger.exception("observer %r failed to open its scope", observer)
        else:
            opened.append((observer, scope))
    return opened


def _close_scopes(opened: list[tuple[Observer, Any]], exc_info: tuple[Any, Any, Any]) -> None:
    for observer, scope in reversed(opened):
        try:
            scope.__exit__(*exc_info)  # what it returns is ignored: observers never swallow
        except Exception:
            logger.exception("observer %r failed to close its scope", observer)


class _DeliveryScope:
    __slots__ = ("_observers", "_opened", "_start", "_token", "seen")

    def __init__(self, observers: Observers, seen: Seen) -> None:
        self._observers = observers
        self.seen = seen

    def __enter__(self) -> Seen:
        seen = self.seen
        self._token = _CURRENT.set(seen)
        self._opened = _open_scopes(
            self._observers._delivery_scopes, lambda o: o.delivery_scope(seen)
        )
        self._start = time.perf_counter()
        return seen

    def __exit__(self, *exc_info: Any) -> None:
        seen = self.seen
        seen.seconds = time.perf_counter() - self._start
        _CURRENT.reset(self._token)
        for observer in self._observers._deliveries:
            try:
                observer.delivery(
                    seen.provider, seen.event_id, seen.event_type, seen.status, seen.seconds
                )
            except Exception:
                logger.exception("observer %r failed on a delivery", observer)
        if self._opened:
            _close_scopes(self._opened, exc_info)


class _RunScope:
    __slots__ = ("_observers", "_opened", "_start", "run")

    def __init__(self, observers: Observers, run: Run) -> None:
        self._observers = observers
        self.run = run

    def __enter__(self) -> Run:
        run = self.run
        self._opened = _open_scopes(self._observers._handler_scopes, lambda o: o.handler_scope(run))
        self._start = time.perf_counter()
        return run

    def __exit__(self, *exc_info: Any) -> None:
        run = self.run
        run.seconds = time.perf_counter() - self._start
        for observer in self._observers._runs:
            try:
                observer.handler_run(run.handler, run.outcome, run.seconds)
            except Exception:
                logger.exception("observer %r failed on a handler run", observer)
        if self._opened:
            _close_scopes(self._opened, exc_info)


def current_delivery() -> Seen | None:
    """The delivery being observed in this context (inside :meth:`Observers.delivery`), so the
    pipeline can note its event id and type where it learns them; None outside one."""
    return _CURRENT.get()


class Runnable(Protocol):
    """What :func:`run_handler` runs: a registered handler."""

    @property
    def name(self) -> str:
        """The handler's name, as the store records it."""

    def run(self, event: Any) -> Awaitable[str | None]:
        """Run for ``event``; None on success, else the error text."""


async def run_handler(
    observers: Observers, handler: Runnable, event: Any, *, queued: bool
) -> str | None:
    """``await handler.run(event)`` inside :meth:`Observers.handler_run`: what the receiver
    and the worker call instead of ``handler.run`` when ``observers`` is not empty."""
    if not observers:
        return await handler.run(event)
    with observers.handler_run(
        handler.name, provider=event.provider, event_id=event.id, queued=queued
    ) as run:
        error = await handler.run(event)
        run.outcome, run.error = ("done", None) if error is None else ("failed", error)
    return error
