"""A store in process memory, for tests and development. Nothing survives a restart."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from alerthooks.store import Begun, Delivery, Outcome, Status, Store, StoredEvent


@dataclass
class _Row:
    status: Status = "pending"
    attempts: int = 0
    last_error: str | None = None
    owner: str | None = None
    lease_until: float = 0.0


class MemoryStore(Store):
    """Events and outcomes in dictionaries; every operation is atomic within one event loop."""

    url = "memory://"

    def __init__(self) -> None:
        self._events: dict[tuple[str, str], Delivery] = {}
        self._outcomes: dict[tuple[str, str], dict[str, _Row]] = {}

    async def begin(
        self, delivery: Delivery, *, owner: str, lease: float, claim: bool = True
    ) -> Begun:
        """See :meth:`Store.begin`."""
        key = (delivery.provider, delivery.event_id)
        new = key not in self._events
        if new:
            self._events[key] = delivery
            rows = self._outcomes[key] = {}
        else:
            rows = self._outcomes[key]
        for name in delivery.handlers:
            if name not in rows:
                rows[name] = _Row()
        if not claim:
            return Begun(new, (), ())
        now = time.monotonic()
        claimed: list[str] = []
        busy: list[str] = []
        for name, row in rows.items():
            if row.status in ("done", "dead"):
                continue
            if row.status == "running" and row.lease_until > now:
                busy.append(name)
                continue
            row.status, row.owner, row.lease_until = "running", owner, now + lease
            claimed.append(name)
        return Begun(new, tuple(claimed), tuple(busy))

    async def finish(
        self,
        provider: str,
        event_id: str,
        results: Mapping[str, str | None],
        *,
        owner: str,
    ) -> None:
        """See :meth:`Store.finish`."""
        rows = self._outcomes[(provider, event_id)]
        for name, error in results.items():
            row = rows[name]
            if error is None:
                row.status, row.last_error = "done", None
            else:
                row.status, row.last_error = "failed", error
            row.attempts += 1
            row.owner, row.lease_until = None, 0.0

    async def get(self, provider: str, event_id: str) -> StoredEvent | None:
        """See :meth:`Store.get`."""
        delivery = self._events.get((provider, event_id))
        return None if delivery is None else self._stored(delivery)

    async def events(
        self, *, status: Status | None = None, limit: int = 50
    ) -> Sequence[StoredEvent]:
        """See :meth:`Store.events`."""
        found: list[StoredEvent] = []
        for delivery in reversed(self._events.values()):
            stored = self._stored(delivery)
            if status is None or any(o.status == status for o in stored.outcomes):
                found.append(stored)
                if len(found) >= limit:
                    break
        return found

    def _stored(self, d: Delivery) -> StoredEvent:
        rows = self._outcomes[(d.provider, d.event_id)]
        outcomes = tuple(
            Outcome(name, row.status, row.attempts, row.last_error) for name, row in rows.items()
        )
        return StoredEvent(d.provider, d.event_id, d.event_type, d.body, d.received_at, outcomes)
