"""Rejected deliveries, recorded for the operator (``alerthooks rejections``, the console's
Rejected view): what was refused, when, from where and why, and never what could carry a
credential (the body, a signature, a header's value).

The receiver notes each rejection in a :class:`RejectionRecorder`; a token bucket bounds how many
reach the store (``rate`` per second, ``burst`` at once), counting the others into the next row
written, so a flood of bad signatures can neither fill the disk nor take the store from verified
deliveries. Writes happen in the background, in batches, never in the request's path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from alerthooks.store import Rejection

if TYPE_CHECKING:
    from alerthooks.providers import Provider
    from alerthooks.store import Store

logger = logging.getLogger(__name__)

DEFAULT_RATE = 10.0
"""Rejections recorded per second at most, on average (per process)."""
DEFAULT_BURST = 100
"""Rejections recorded at once at most, before the rate applies."""
_MAX_TEXT = 200  # an id or a type read from an unverified body is cut to this
_MAX_PARSED_BYTES = 64 * 1024  # bodies larger than this are not parsed for an id
_MAX_PENDING = 1000  # rows waiting for the store at most


class RejectionRecorder:
    """Records rejected deliveries into the store that ``store`` returns, rate-limited."""

    def __init__(
        self,
        store: Callable[[], Store],
        *,
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._tokens = float(burst)
        self._last = clock()
        #: Rejections noted and not recorded since the last recorded one (the rate limit).
        self.dropped = 0
        #: Rejections recorded since this recorder was made (a count for tests and benchmarks).
        self.recorded = 0
        self._pending: list[Rejection] = []
        self._writer: asyncio.Task[None] | None = None

    def note(
        self,
        provider: Provider | str,
        status: int,
        reason: str,
        *,
        source: object = None,
        body: bytes | None = None,
        body_bytes: int | None = None,
    ) -> None:
        """Record one rejection (unless the rate limit is reached: then count it). ``body``
        is read for its event id and type only, after the decision; it is never kept."""
        now = self.clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1.0:
            self.dropped += 1
            return
        if len(self._pending) >= _MAX_PENDING:  # the store is not keeping up: count, not queue
            self.dropped += 1
            return
        self._tokens -= 1.0
        name = provider if isinstance(provider, str) else provider.name
        event_id, event_type = (
            (None, None)
            if body is None or isinstance(provider, str)
            else _claimed_ids(provider, body)
        )
        dropped, self.dropped = self.dropped, 0
        self._pending.append(
            Rejection(
                received_at=datetime.now(timezone.utc),
                provider=name,
                status=status,
                reason=reason[:_MAX_TEXT],
                source=None if source is None else str(source)[:_MAX_TEXT] or None,
                body_bytes=len(body)
                if body_bytes is None and body is not None
                else body_bytes or 0,
                event_id=event_id,
                event_type=event_type,
                dropped=dropped,
            )
        )
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # noted outside a loop: written with the next one
            return
        writer = self._writer
        if writer is None or writer.done() or writer.get_loop() is not loop:
            self._writer = loop.create_task(self._write(), name="alerthooks-rejections")

    async def _write(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._store().record_rejections(batch)
            except Exception as exc:  # a store down loses these rows, nothing else
                logger.warning("%d rejected deliveries not recorded: %s", len(batch), exc)
            else:
                self.recorded += len(batch)

    async def flush(self) -> None:
        """Write what was noted and wait for it (tests, shutdown)."""
        writer = self._writer
        if (
            writer is not None
            and not writer.done()
            and writer.get_loop() is asyncio.get_running_loop()
        ):
            await writer
        if self._pending:
            await self._write()


def _claimed_ids(provider: Provider, body: bytes) -> tuple[str | None, str | None]:
    """The event id and type the (unverified) body claims, when it parses; cut short."""
    if len(body) > _MAX_PARSED_BYTES:
        return None, None
    try:
        payload = json.loads(body)
        if not isinstance(payload, dict):
            return None, None
        event_id, event_type = provider.event_id(payload), provider.event_type(payload)
    except Exception:  # anything unreadable: no id
        return None, None
    return (
        None if event_id is None else str(event_id)[:_MAX_TEXT],
        None if event_type is None else str(event_type)[:_MAX_TEXT],
    )
