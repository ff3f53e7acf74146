"""The delivery pipeline without ASGI: verify → parse → normalize → record → dispatch → answer.

:meth:`Receiver.receive` takes one delivery's bytes and lower-case headers and returns the HTTP
answer, every decision included (a provider without credentials is 503 here, not in the ASGI
layer); :mod:`alerthooks.asgi` only reads bytes, routes them here and sends the answer back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any, NamedTuple

from alerthooks.dispatch import Handler
from alerthooks.events import AlertEvent
from alerthooks.observe import current_delivery
from alerthooks.providers import NotAnAlert, Provider, Rejected, Unavailable
from alerthooks.providers.base import normalized
from alerthooks.rejections import RejectionRecorder
from alerthooks.runtime import LeaseKeeper, Runtime, Unreadable, record_outcomes, stored_event
from alerthooks.state import state_change
from alerthooks.store import Begun, Delivery, StoreError

logger = logging.getLogger(__name__)


class Answer(tuple[int, bytes]):
    """An HTTP answer: ``(status, JSON body)``, unpacked as a pair, plus :attr:`headers` to send
    with it (such as ``WWW-Authenticate`` on a 401)."""

    headers: Mapping[str, str]

    def __new__(cls, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> Answer:
        self = super().__new__(cls, (status, body))
        self.headers = headers or {}
        return self

    @property
    def status(self) -> int:
        """The HTTP status code."""
        return self[0]

    @property
    def body(self) -> bytes:
        """The JSON body."""
        return self[1]


def answer(code: int, headers: Mapping[str, str] | None = None, /, **fields: str) -> Answer:
    """The answer ``code`` with ``fields`` as its JSON body."""
    return Answer(code, json.dumps(fields, separators=(",", ":")).encode(), headers)


ACCEPTED = answer(200, status="accepted")
DUPLICATE = answer(200, status="duplicate")
IGNORED = answer(200, status="ignored")
UNPARSED = answer(200, status="unparsed")
HANDLER_FAILED = answer(500, error="a handler failed; retry later")
BUSY = answer(503, error="event is being handled elsewhere; retry later")
STORE_DOWN = answer(503, error="store unavailable; retry later")
NOT_CONFIGURED = answer(503, error="provider not configured")
SOURCE_NOT_ALLOWED = answer(403, error="source not allowed")
API_DOWN = answer(503, error="provider API unavailable; retry later")
INVALID_JSON = answer(400, error="invalid JSON")
NOT_UTF8 = answer(400, error="body is not UTF-8")
NOT_AN_OBJECT = answer(400, error="payload is not a JSON object")


_REASONS: dict[bytes, str] = {}  # an answer's body -> its "error", for rejection rows

# The source of the delivery being received, for a rejection decided after parsing (confirm).
_SOURCE: ContextVar[object] = ContextVar("alerthooks_source", default=None)


class _lazy:
    """A client address computed only when a rejection row is written."""

    __slots__ = ("_get",)

    def __init__(self, get: Callable[[], object]) -> None:
        self._get = get

    def __str__(self) -> str:
        try:
            found = self._get()
        except Exception:  # a malformed forwarded chain: no address
            return ""
        return "" if found is None else str(found)


class ReadAgain(tuple[str, ...]):
    """The names :meth:`Receiver.read_again` returns, and :attr:`event_id`, the id under which
    their handlers are pending: the stored event's own, or the id of the event a thin delivery
    stood for, recorded under it."""

    event_id: str

    def __new__(cls, names: tuple[str, ...], *, event_id: str) -> ReadAgain:
        self = super().__new__(cls, names)
        self.event_id = event_id
        return self


class Ingested(NamedTuple):
    """What :meth:`Receiver.ingest` did with an event read from a provider's API: whether it
    was ``new`` to the store, and the answer a delivery of it would have had."""

    new: bool
    answer: Answer


def rejection(exc: Rejected) -> Answer:
    """The answer a :class:`Rejected` stands for: its status, reason and headers."""
    return answer(exc.status, exc.headers, error=exc.reason)


class RejectionLog:
    """WARNING lines for rejections an operator must see (bad signature or credentials, a
    provider without credentials, a source not allowed), rate-limited so a flood does not flood
    the log: the first of each (provider, reason) is logged, then at most one per ``interval``
    seconds, saying how many were suppressed in between."""

    _MAX_KEYS = 1024  # reasons come from providers' code; this bounds a provider that varies them

    def __init__(
        self, interval: float = 60.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.clock = clock
        # (provider, reason) -> (when last logged, how many suppressed since)
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def warn(self, provider: str, reason: str, message: str, *args: object) -> None:
        """Log ``message % args`` at WARNING unless one of the same provider and reason was
        logged less than ``interval`` seconds ago (then count it)."""
        key = (provider, reason)
        now = self.clock()
        last = self._last.get(key)
        if last is not None:
            when, suppressed = last
            if now - when < self.interval:
                self._last[key] = (when, suppressed + 1)
                return
            if suppressed:
                message += " (%d more like it in the last %d s)"
                args = (*args, suppressed, round(now - when))
        elif len(self._last) >= self._MAX_KEYS:
            self._last.clear()
        self._last[key] = (now, 0)
        logger.warning(message, *args)


def _nothing() -> None:
    pass


class Receiver:
    """Verifies, records and dispatches deliveries for the providers of ``runtime``.

    ``queued`` selects queued mode (answer once recorded; whoever runs queued work is told by
    ``wake``) over inline mode (run the handlers, then answer). The store opens on first use,
    and ``first_use`` (when given) is awaited then too: the facade starts a queued worker
    there, so an app mounted without its lifespan never accepts into a queue nobody works.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        queued: bool,
        wake: Callable[[], None] = _nothing,
        first_use: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.runtime = runtime
        self.queued = queued
        self.wake = wake
        self.first_use = first_use
        self.rejections = RejectionLog()
        self.recorder = RejectionRecorder(lambda: runtime.store)
        """Records rejected deliveries in the store (rate-limited); see :meth:`reject`."""
        # Events being delivered now, each with the futures of concurrent duplicates waiting
        # for its answer.
        self._inflight: dict[tuple[str, str], list[asyncio.Future[Answer]]] = {}
        # Inline events whose handlers ran here and whose outcomes are still being recorded
        # (the store failed at finish): redeliveries are answered 503 until they are.
        self._recording: dict[tuple[str, str], asyncio.Task[bool]] = {}
        self._opened = False
        self._open_lock: asyncio.Lock | None = None
        # Whether a delivery has come since the store was last opened (see _first_use).
        self._used = False

    # -- opening --------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the store (once) and warn about each provider that has no credentials."""
        if self._opened:
            return
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if not self._opened:
                await self.runtime.store.open()
                self._opened = True
                for provider in self.runtime.providers.values():
                    if not provider.configured:
                        self.warn_unconfigured(provider)

    async def close(self, grace: float = 5.0) -> None:
        """Close the store; the next delivery opens it again. Outcomes still being recorded
        get ``grace`` seconds first."""
        await self.recorder.flush()
        recording = set(self._recording.values())
        if recording:
            _, pending = await asyncio.wait(recording, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
                logger.warning(
                    "outcomes of %d inline event(s) not recorded before shutdown; their handlers "
                    "run again when their leases expire",
                    len(pending),
                )
        self._opened = self._used = False
        await self.runtime.store.close()

    async def _first_use(self) -> None:
        await self.open()
        self._used = True
        if self.first_use is not None:
            await self.first_use()

    def warn_unconfigured(self, provider: Provider) -> None:
        """Log (rate-limited) that ``provider`` refuses deliveries for want of credentials."""
        hint = f" (set {provider.env_hint})" if provider.env_hint else ""
        self.rejections.warn(
            provider.name,
            "not configured",
            "%s webhooks are refused: no credentials configured%s",
            provider.name,
            hint,
        )

    def refuse_source(self, provider: Provider, address: object) -> Answer:
        """The answer to a delivery from ``address`` (None when unknown), a source
        ``provider``'s allowlist does not hold (403), logged (rate-limited). The ASGI layer,
        which knows the source, asks for it before reading the body."""
        self.rejections.warn(
            provider.name,
            "source not allowed",
            "%s delivery refused: source %s is not in the allowlist",
            provider.name,
            address if address is not None else "unknown",
        )
        return self.reject(provider, SOURCE_NOT_ALLOWED, source=address)

    def refusal(self, provider: Provider, *, source: object = None) -> Answer | None:
        """The answer refusing every delivery to ``provider`` whatever its body (no credentials
        configured: 503, logged and recorded with ``source``), or None. :meth:`receive` starts
        with it; the ASGI layer asks before reading a body it would not need."""
        if provider.configured:
            return None
        self.warn_unconfigured(provider)
        return self.reject(provider, NOT_CONFIGURED, source=source)

    # -- delivery -------------------------------------------------------------------------------

    def reject(
        self,
        provider: Provider,
        result: Answer,
        *,
        source: object = None,
        body: bytes | None = None,
        body_bytes: int | None = None,
    ) -> Answer:
        """Record (rate-limited) that a delivery was refused with ``result``, and return it.
        ``source`` is the client's address, or a function giving it (called only when the row
        is written); ``body`` is read for the event id it claims, never kept."""
        reason = _REASONS.get(result.body)
        if reason is None:
            try:
                reason = str(json.loads(result.body).get("error") or "")
            except (ValueError, AttributeError):
                reason = ""
            if len(_REASONS) < 256:  # answers are a handful of fixed bodies
                _REASONS[result.body] = reason
        if callable(source):
            source = _lazy(source)
        self.recorder.note(
            provider, result.status, reason, source=source, body=body, body_bytes=body_bytes
        )
        return result

    async def receive(
        self,
        provider: Provider,
        body: bytes,
        headers: Mapping[str, str],
        *,
        source: object = None,
    ) -> Answer:
        """Verify, record and dispatch one delivery; return the answer. ``headers`` has
        lower-case names; ``source`` (the client's address, or a function giving it) is
        recorded with a rejection."""
        if not provider.configured:
            self.warn_unconfigured(provider)
            return self.reject(provider, NOT_CONFIGURED, source=source)
        try:
            provider.verify(body, headers)
        except Rejected as exc:
            self.rejections.warn(
                provider.name,
                exc.reason,
                "%s delivery rejected (%d): %s",
                provider.name,
                exc.status,
                exc.reason,
            )
            return self.reject(provider, rejection(exc), source=source, body=body)
        try:
            # UTF-8 only (RFC 8259), as every provider sends: json.loads would guess UTF-16
            # or UTF-32 from bytes. A leading byte order mark is ignored, as the RFC allows.
            text = body.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError:
            logger.info("%s delivery rejected: body is not UTF-8", provider.name)
            return self.reject(provider, NOT_UTF8, source=source, body_bytes=len(body))
        try:
            payload = json.loads(text)
        except (ValueError, RecursionError):
            logger.info("%s delivery rejected: invalid JSON", provider.name)
            return self.reject(provider, INVALID_JSON, source=source, body_bytes=len(body))
        if not isinstance(payload, dict):
            logger.info("%s delivery rejected: payload is not a JSON object", provider.name)
            return self.reject(provider, NOT_AN_OBJECT, source=source, body_bytes=len(body))
        if provider.confirms:  # a refusal by its API (an unknown id) is recorded too
            _SOURCE.set(source)
        event_id = provider.event_id(payload) or provider.delivery_id(headers)
        if self.runtime.observers and (seen := current_delivery()) is not None:
            seen.event(event_id, provider.event_type(payload))
        if event_id is None:
            logger.warning("%s event acknowledged without an id; not stored", provider.name)
            return IGNORED
        return await self._once(provider, event_id, payload, body)

    async def _once(
        self,
        provider: Provider,
        event_id: str,
        payload: dict[str, Any],
        body: bytes,
        *,
        resolve: bool = True,
    ) -> Answer:
        """Deliver one event; concurrent duplicates of it wait for its answer instead.
        ``resolve=False`` for an event already read from the provider's API."""
        key = (provider.name, event_id)
        waiting = self._inflight.get(key)
        if waiting is not None:
            future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
            waiting.append(future)
            return await future
        self._inflight[key] = waiting = []
        result = STORE_DOWN
        try:
            result = await self._deliver(provider, event_id, payload, body, resolve=resolve)
        finally:
            del self._inflight[key]
            for future in waiting:
                if not future.done():
                    future.set_result(result)
        return result

    async def _deliver(
        self,
        provider: Provider,
        event_id: str,
        payload: dict[str, Any],
        body: bytes,
        *,
        resolve: bool = True,
    ) -> Answer:
        if (provider.name, event_id) in self._recording:
            logger.info(
                "%s event %s: its handlers ran; answering 503 until their outcomes are recorded",
                provider.name,
                event_id,
            )
            return STORE_DOWN
        if provider.confirms and resolve:
            confirmed = await self._confirm(provider, event_id, payload)
            if isinstance(confirmed, Answer):
                return confirmed
            payload, body = confirmed, json.dumps(confirmed, separators=(",", ":")).encode()
        if resolve and provider.refers(payload):
            try:
                resolved = await provider.resolve(payload)
            except NotAnAlert as exc:
                return (await self._process(provider, event_id, payload, body, exc.reason))[1]
            except Exception as exc:  # a provider's bug keeps the delivery, nothing worse
                reason = f"resolve raised {type(exc).__name__}: {exc}"
                return (await self._process(provider, event_id, payload, body, reason))[1]
            if resolved is not payload:
                # The event read from the API is what is stored, under its own id: a thin and
                # a whole delivery of the same event run its handlers once.
                resolved_id = provider.event_id(resolved)
                if resolved_id is None:
                    reason = "the event read from the API has no usable id"
                    return (await self._process(provider, event_id, payload, body, reason))[1]
                body = json.dumps(resolved, separators=(",", ":")).encode()
                if resolved_id == event_id:
                    return (await self._process(provider, event_id, resolved, body))[1]
                return await self._once(provider, resolved_id, resolved, body, resolve=False)
        return (await self._process(provider, event_id, payload, body))[1]

    async def _process(
        self,
        provider: Provider,
        event_id: str,
        payload: dict[str, Any],
        body: bytes,
        unreadable: str | None = None,
    ) -> tuple[Begun | None, Answer]:
        """Normalize, record and dispatch an authentic event: what the store said (None when
        it could not be reached) and the answer. ``unreadable`` is why an alert could not be
        read before normalizing (it is kept unparsed with that reason)."""
        event_type = provider.event_type(payload)
        event: AlertEvent | str | None
        if unreadable is not None and provider.is_alert_type(event_type):
            event = unreadable
        else:
            event = self._normalize(provider, event_id, event_type, payload)
        read = isinstance(event, AlertEvent)
        handlers = self.runtime.dispatcher.match(event) if isinstance(event, AlertEvent) else []
        delivery = Delivery(
            provider.name,
            event_id,
            event_type,
            body,
            datetime.now(timezone.utc),
            tuple([h.name for h in handlers]),
            state=state_change(event) if isinstance(event, AlertEvent) else None,
            unparsed=event if isinstance(event, str) else None,  # unparsed: the reason
        )
        # Inline mode claims the handlers to run now; nothing runs for an event that did not
        # read (ignored, unparsed), so a redelivery of one leases none stored for it earlier.
        begun = await self._record(delivery, claim=read and not self.queued)
        if begun is None:
            return None, STORE_DOWN
        if not begun.new and delivery.state is not None:
            await self._restate(delivery)
        if not isinstance(event, AlertEvent):
            return begun, IGNORED if event is None else self._unparsed(delivery, event, begun)
        if self.queued:
            return begun, self._queued(delivery, event, begun)
        return begun, await self._inline(delivery, event, handlers, begun)

    async def ingest(self, provider: Provider, payload: dict[str, Any]) -> Ingested:
        """Put one event read from ``provider``'s own API (over TLS, with our key) through the
        pipeline as a delivery goes: recorded, deduplicated by (provider, event id),
        normalized, dispatched. Not verified: there is no signature to check, and not
        confirmed again. Raises :class:`~alerthooks.store.StoreError` when the store cannot be
        reached."""
        event_id = provider.event_id(payload)
        if event_id is None:
            logger.warning("%s event read from the API has no usable id; not stored", provider.name)
            return Ingested(False, IGNORED)
        body = json.dumps(payload, separators=(",", ":")).encode()
        key = (provider.name, event_id)
        if key in self._inflight or key in self._recording:
            # Being delivered right now, or its handlers ran here and their outcomes are being
            # recorded: it is received, and running it again is what must not happen.
            return Ingested(False, DUPLICATE)
        waiting: list[asyncio.Future[Answer]] = []
        self._inflight[key] = waiting
        result = STORE_DOWN
        begun: Begun | None = None
        try:
            begun, result = await self._process(provider, event_id, payload, body)
        finally:
            del self._inflight[key]
            for future in waiting:
                if not future.done():
                    future.set_result(result)
        if begun is None:
            raise StoreError(f"{provider.name} event {event_id} not recorded: store unavailable")
        return Ingested(begun.new, result)

    async def read_again(self, provider_name: str, event_id: str) -> tuple[str, ...] | str:
        """Normalize a stored ``unparsed`` event again (after an upgrade taught a provider its
        shape). When it reads now, the handlers it matches become pending in its place (a
        worker or :meth:`AlertHooks.drain` runs them) and its alert state is recorded; return
        their names. A delivery that stands for another event (a Stripe thin event) is read
        from the provider's API, and that event is recorded under its own id with the handlers
        pending (a :class:`ReadAgain` whose ``event_id`` says so). Otherwise return why it
        still cannot be read, and leave it unparsed."""
        store = self.runtime.store
        stored = await store.get(provider_name, event_id)
        if stored is None:
            return "not stored"
        body, read_id = stored.body, event_id
        provider = self.runtime.providers.get(provider_name)
        if provider is not None:
            whole = await self._resolve_stored(provider, body)
            if isinstance(whole, str):
                return whole
            if whole is not None:
                read_id = provider.event_id(whole) or event_id
                body = json.dumps(whole, separators=(",", ":")).encode()
        event = stored_event(self.runtime.providers, provider_name, body, read_id)
        if isinstance(event, Unreadable):
            return event.reason
        names = tuple(h.name for h in self.runtime.dispatcher.match(event))
        if read_id != event_id and provider is not None:
            return await self._record_resolved(provider, event_id, event, body, names)
        if not await store.resolve_unparsed(provider_name, event_id, names):
            return ()
        await store.fold([(provider_name, event_id, state_change(event))])
        return names

    @staticmethod
    async def _resolve_stored(provider: Provider, body: bytes) -> dict[str, Any] | str | None:
        """The event a stored body stands for, read with :meth:`Provider.resolve` when it is
        another one (a thin event); None when the body is that event itself (or not JSON:
        :func:`stored_event` says so), the reason when it cannot be read."""
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            return None
        if not isinstance(payload, dict) or not provider.refers(payload):
            return None
        try:
            whole = await provider.resolve(payload)
        except NotAnAlert as exc:
            return exc.reason
        except Exception as exc:  # a provider's bug leaves the event unparsed, nothing worse
            return f"resolve raised {type(exc).__name__}: {exc}"
        return None if whole is payload else whole

    async def _record_resolved(
        self,
        provider: Provider,
        event_id: str,
        event: AlertEvent,
        body: bytes,
        names: tuple[str, ...],
    ) -> ReadAgain:
        """A stored delivery that stood for another event (a thin event) read now: record the
        event read under its own id, its handlers pending, as a delivery of it would have been,
        and leave the stored one resolved with none. An event received whole already runs
        nothing again."""
        delivery = Delivery(
            provider.name,
            event.id,
            provider.event_type(event.raw),
            body,
            datetime.now(timezone.utc),
            names,
            state=state_change(event),
        )
        begun = await self.runtime.store.begin(
            delivery, owner=self.runtime.owner, lease=self.runtime.lease_seconds, claim=False
        )
        await self.runtime.store.resolve_unparsed(provider.name, event_id, ())
        self.wake()
        return ReadAgain(names if begun.new else (), event_id=event.id)

    async def _restate(self, delivery: Delivery) -> None:
        """Record a redelivery's alert state too: ``begin`` records it only for a new event,
        and the stored one may have set none (it was unparsed before this release read it).
        The store keeps the state of the event that occurred last, so this changes nothing for
        a plain duplicate."""
        assert delivery.state is not None
        try:
            await self.runtime.store.fold([(delivery.provider, delivery.event_id, delivery.state)])
        except Exception as exc:
            logger.warning(
                "%s event %s: alert state not recorded: %s",
                delivery.provider,
                delivery.event_id,
                exc if isinstance(exc, StoreError) else type(exc).__name__,
            )

    async def _confirm(
        self, provider: Provider, event_id: str, payload: dict[str, Any]
    ) -> dict[str, Any] | Answer:
        """The payload as the provider's API holds it, or the answer when it cannot say."""
        try:
            return await provider.confirm(event_id, payload)
        except Rejected as exc:
            self.rejections.warn(
                provider.name,
                exc.reason,
                "%s event %s rejected (%d): %s",
                provider.name,
                event_id,
                exc.status,
                exc.reason,
            )
            return self.reject(
                provider,
                rejection(exc),
                source=_SOURCE.get(),
                body=json.dumps(payload).encode(),
            )
        except Unavailable as exc:
            logger.error(
                "%s event %s not confirmed, answering 503: %s", provider.name, event_id, exc
            )
            return API_DOWN

    @staticmethod
    def _normalize(
        provider: Provider, event_id: str, event_type: str | None, payload: dict[str, Any]
    ) -> AlertEvent | str | None:
        """The event; else the reason it cannot be read when its type is an alert type
        (unparsed), or None (ignored)."""
        try:
            return normalized(provider, event_id, payload)
        except NotAnAlert as exc:
            if provider.is_alert_type(event_type):
                return exc.reason
            logger.info("%s event %s is not an alert: %s", provider.name, event_id, exc.reason)
            return None

    @staticmethod
    def _unparsed(delivery: Delivery, reason: str, begun: Begun) -> Answer:
        """Answer an alert that could not be read: 200, since a retry would fail the same way;
        it is stored ``unparsed`` for ``alerthooks replay --unparsed``."""
        if begun.new:
            logger.warning(
                "%s event %s (%s) kept as unparsed, not dispatched: %s",
                delivery.provider,
                delivery.event_id,
                delivery.event_type,
                reason,
            )
        else:
            logger.info(
                "%s event %s is a duplicate (unparsed)", delivery.provider, delivery.event_id
            )
        return UNPARSED

    async def _record(self, delivery: Delivery, *, claim: bool) -> Begun | None:
        """Record the delivery (claiming its handlers when ``claim``); None when the store
        cannot be reached."""
        runtime = self.runtime
        try:
            if not self._used:
                await self._first_use()
            return await runtime.store.begin(
                delivery,
                owner=runtime.owner,
                lease=runtime.lease_seconds,
                claim=claim,
            )
        except Exception as exc:
            logger.error(
                "%s event %s not recorded, answering 503: %s",
                delivery.provider,
                delivery.event_id,
                exc if isinstance(exc, StoreError) else type(exc).__name__,
            )
            return None

    def _queued(self, delivery: Delivery, event: AlertEvent, begun: Begun) -> Answer:
        self.wake()  # a redelivery may add handlers registered since
        if not begun.new:
            logger.info("%s event %s is a duplicate", delivery.provider, delivery.event_id)
            return DUPLICATE
        logger.info("%s event %s queued (%s)", delivery.provider, delivery.event_id, event.type)
        return ACCEPTED

    async def _inline(
        self, delivery: Delivery, event: AlertEvent, handlers: list[Handler], begun: Begun
    ) -> Answer:
        provider, event_id = delivery.provider, delivery.event_id
        if begun.claimed:
            failed = await self._run_claimed(delivery, event, handlers, begun.claimed)
            if failed is not None:
                return failed
        if begun.busy:
            logger.info("%s event %s is being handled elsewhere", provider, event_id)
            return BUSY
        if not begun.new and not begun.claimed:
            logger.info("%s event %s is a duplicate", provider, event_id)
            return DUPLICATE
        if logger.isEnabledFor(logging.INFO):
            logger.info("%s event %s accepted (%s)", provider, event_id, event.type)
        return ACCEPTED

    def _record_later(
        self, provider: str, event_id: str, results: dict[str, str | None], keeper: LeaseKeeper
    ) -> None:
        key = (provider, event_id)

        async def record() -> bool:
            try:
                return await record_outcomes(self.runtime, provider, event_id, results)
            finally:
                keeper.stop()
                del self._recording[key]

        self._recording[key] = asyncio.get_running_loop().create_task(
            record(), name=f"alerthooks-record-{provider}-{event_id}"
        )

    async def _run_claimed(
        self,
        delivery: Delivery,
        event: AlertEvent,
        handlers: list[Handler],
        claimed: tuple[str, ...],
    ) -> Answer | None:
        """Run the handlers this process claimed and record their outcomes; the answer when
        that fails, None when all ran."""
        runtime = self.runtime
        provider, event_id = delivery.provider, delivery.event_id
        if claimed == delivery.handlers:
            to_run = handlers
        else:  # a redelivery: only those not done yet
            by_name = {h.name: h for h in handlers}
            to_run = [by_name[name] for name in claimed if name in by_name]
        keeper = LeaseKeeper(runtime, provider, event_id, claimed)
        try:
            results = await runtime.dispatcher.run(event, to_run, observers=runtime.observers)
        except BaseException:
            keeper.stop()
            raise
        try:
            await runtime.store.finish(provider, event_id, results, owner=runtime.owner)
        except Exception as exc:
            # The handlers ran: keep their outcomes and record them once the store answers,
            # keeping the leases meanwhile, rather than leaving them to run again.
            logger.warning(
                "%s event %s: outcomes not recorded (%s); answering 503 and recording them "
                "in the background",
                provider,
                event_id,
                exc if isinstance(exc, StoreError) else type(exc).__name__,
            )
            self._record_later(provider, event_id, results, keeper)
            return STORE_DOWN
        except asyncio.CancelledError:  # the request went away mid-write: finish it anyway
            self._record_later(provider, event_id, results, keeper)
            raise
        keeper.stop()
        failed = [name for name, error in results.items() if error is not None]
        if failed:
            logger.warning(
                "%s event %s: %d handler(s) failed: %s",
                provider,
                event_id,
                len(failed),
                ", ".join(failed),
            )
            return HANDLER_FAILED
        return None
