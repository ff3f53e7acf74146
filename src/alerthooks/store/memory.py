"""A store in process memory, for tests and development. Nothing survives a restart."""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from alerthooks.events import AlertState
from alerthooks.store import (
    PROCESS_DIED,
    PROCESS_GONE,
    REJECTIONS_DAYS,
    REJECTIONS_KEPT,
    UNPARSED_HANDLER,
    Attempt,
    Begun,
    Claim,
    Delivery,
    Outcome,
    Rejection,
    StateChange,
    Status,
    Store,
    StoredEvent,
    Unfolded,
    log_dead_after_crash,
    owner_gone,
)

# One alert state per subject: (provider, alert_id, customer_id, subscription_id).
_Subject = tuple[str, str, str | None, str | None]


@dataclass(slots=True)
class _Row:
    status: Status = "pending"
    attempts: int = 0
    last_error: str | None = None
    owner: str | None = None
    lease_until: float = 0.0
    due_at: float = 0.0
    history: list[Attempt] = field(default_factory=list)


class MemoryStore(Store):
    """Events and outcomes in dictionaries; every operation is atomic within one event loop."""

    url = "memory://"

    def __init__(self) -> None:
        self._events: dict[tuple[str, str], Delivery] = {}
        self._outcomes: dict[tuple[str, str], dict[str, _Row]] = {}
        # Each subject's state: the change that set it and its event's id.
        self._states: dict[_Subject, tuple[StateChange, str]] = {}
        # Each event's cursor (the order it was stored in).
        self._cursors: dict[tuple[str, str], int] = {}
        self._next_cursor = itertools.count(1)
        self._rejections: deque[Rejection] = deque(maxlen=REJECTIONS_KEPT)

    async def begin(
        self, delivery: Delivery, *, owner: str, lease: float, claim: bool = True
    ) -> Begun:
        """See :meth:`Store.begin`."""
        key = (delivery.provider, delivery.event_id)
        now = time.time()
        rows = self._outcomes.get(key)
        new = rows is None
        if delivery.unparsed is not None:
            if rows is None:
                self._events[key] = delivery
                self._cursors[key] = next(self._next_cursor)
                self._outcomes[key] = {
                    UNPARSED_HANDLER: _Row("unparsed", last_error=delivery.unparsed)
                }
            return Begun(new, (), ())
        if rows is None:
            self._events[key] = delivery
            self._cursors[key] = next(self._next_cursor)
            if delivery.state is not None:
                self._set_state(delivery.provider, delivery.event_id, delivery.state)
            if claim:  # the common case: every handler of a new event is leased to the caller
                until = now + lease
                rows = self._outcomes[key] = {
                    name: _Row("running", 0, None, owner, until, now) for name in delivery.handlers
                }
                return Begun(True, tuple(rows), ())
            rows = self._outcomes[key] = {}
        elif (marker := rows.get(UNPARSED_HANDLER)) is not None and marker.status == "unparsed":
            del rows[UNPARSED_HANDLER]  # the event reads now: its handlers take over
        for name in delivery.handlers:
            if name not in rows:
                rows[name] = _Row(due_at=now)
        if not claim:
            return Begun(new, (), ())
        claimed: list[str] = []
        busy: list[str] = []
        for name, row in rows.items():
            if row.status in ("done", "dead"):
                continue
            if row.status == "running":
                if row.lease_until > now and not owner_gone(row.owner):
                    busy.append(name)
                    continue
                _died(row, PROCESS_DIED if row.lease_until <= now else PROCESS_GONE, now)
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
        retry_in: Mapping[str, float] | None = None,
        dead: Collection[str] = (),
    ) -> None:
        """See :meth:`Store.finish`."""
        rows = self._outcomes[(provider, event_id)]
        now = time.time()
        finished_at = datetime.fromtimestamp(now, timezone.utc)
        for name, error in results.items():
            row = rows[name]
            if error is None:
                if row.status == "done":
                    continue
                row.status, row.last_error = "done", None
                row.attempts += 1
            elif row.status == "running" and row.owner == owner:
                row.status = "dead" if name in dead else "failed"
                row.last_error = error
                row.attempts += 1
                row.due_at = now + (retry_in or {}).get(name, 0.0)
            else:
                continue
            row.history.append(Attempt(len(row.history) + 1, error, finished_at))
            row.owner, row.lease_until = None, 0.0

    async def extend(
        self, provider: str, event_id: str, handlers: Collection[str], *, owner: str, lease: float
    ) -> None:
        """See :meth:`Store.extend`."""
        rows = self._outcomes.get((provider, event_id), {})
        until = time.time() + lease
        for name in handlers:
            row = rows.get(name)
            if row is not None and row.status == "running" and row.owner == owner:
                row.lease_until = until

    async def claim(
        self, *, owner: str, lease: float, limit: int, max_attempts: int | None = None
    ) -> Sequence[Claim]:
        """See :meth:`Store.claim`."""
        now = time.time()
        due: list[tuple[float, tuple[str, str], str, _Row]] = []
        for key, rows in self._outcomes.items():
            for name, row in rows.items():
                at = _claimable_at(row)
                if at is not None and at <= now:
                    due.append((at, key, name, row))
        due.sort(key=lambda item: item[0])
        claims: list[Claim] = []
        for _, key, name, row in due[:limit]:
            if row.status == "running":
                _died(row, PROCESS_DIED, now)
                if max_attempts is not None and row.attempts >= max_attempts:
                    row.status, row.owner, row.lease_until = "dead", None, 0.0
                    log_dead_after_crash(key[0], key[1], name, row.attempts)
                    continue
            row.status, row.owner, row.lease_until = "running", owner, now + lease
            claims.append(Claim(key[0], key[1], self._events[key].body, name, row.attempts))
        return claims

    async def expire_gone(self) -> int:
        """See :meth:`Store.expire_gone`."""
        count = 0
        now = time.time()
        for rows in self._outcomes.values():
            for row in rows.values():
                if row.status == "running" and row.lease_until > now and owner_gone(row.owner):
                    row.lease_until = 0.0
                    count += 1
        return count

    async def replay(
        self, event_ids: Collection[str] = (), *, dead: bool = False, failed: bool = False
    ) -> int:
        """See :meth:`Store.replay`."""
        wanted = set(event_ids)
        statuses = {"dead"} if dead else set()
        if failed:
            statuses.add("failed")
        count = 0
        now = time.time()
        for (_, event_id), rows in self._outcomes.items():
            for row in rows.values():
                hit = (
                    row.status in statuses
                    if statuses
                    else (event_id in wanted and row.status in ("failed", "dead"))
                )
                if hit:
                    row.status, row.attempts, row.due_at = "pending", 0, now
                    count += 1
        return count

    async def resolve_unparsed(
        self, provider: str, event_id: str, handlers: Collection[str]
    ) -> bool:
        """See :meth:`Store.resolve_unparsed`."""
        rows = self._outcomes.get((provider, event_id))
        marker = None if rows is None else rows.get(UNPARSED_HANDLER)
        if rows is None or marker is None or marker.status != "unparsed":
            return False
        del rows[UNPARSED_HANDLER]
        now = time.time()
        for name in handlers:
            rows.setdefault(name, _Row(due_at=now))
        return True

    async def prune(self, *, before: datetime, limit: int = 10_000) -> int:
        """See :meth:`Store.prune`."""
        gone = [
            key
            for key, delivery in self._events.items()
            if delivery.received_at < before
            and all(row.status == "done" for row in self._outcomes[key].values())
        ]
        for key in gone[:limit]:
            del self._events[key], self._outcomes[key], self._cursors[key]
        return min(len(gone), limit)

    async def next_due(self) -> float | None:
        """See :meth:`Store.next_due`."""
        times = [
            at
            for rows in self._outcomes.values()
            for row in rows.values()
            if (at := _claimable_at(row)) is not None
        ]
        return max(0.0, min(times) - time.time()) if times else None

    async def get(self, provider: str, event_id: str) -> StoredEvent | None:
        """See :meth:`Store.get`."""
        delivery = self._events.get((provider, event_id))
        return None if delivery is None else self._stored(delivery)

    async def events(
        self,
        *,
        status: Status | None = None,
        limit: int = 50,
        provider: str | None = None,
        search: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: int | None = None,
    ) -> Sequence[StoredEvent]:
        """See :meth:`Store.events`."""
        found: list[StoredEvent] = []
        needle = search.encode() if search else None
        for key, delivery in reversed(self._events.items()):
            if (
                (before is not None and self._cursors[key] >= before)
                or (provider is not None and delivery.provider != provider)
                or (since is not None and delivery.received_at < since)
                or (until is not None and delivery.received_at >= until)
                or (
                    needle is not None
                    and delivery.event_id != search
                    and needle not in delivery.body
                )
            ):
                continue
            stored = self._stored(delivery)
            if status is None or any(o.status == status for o in stored.outcomes):
                found.append(stored)
                if len(found) >= limit:
                    break
        return found

    async def record_rejections(self, rejections: Sequence[Rejection]) -> None:
        """See :meth:`Store.record_rejections`."""
        self._rejections.extend(rejections)
        oldest = datetime.now(timezone.utc) - timedelta(days=REJECTIONS_DAYS)
        while self._rejections and self._rejections[0].received_at < oldest:
            self._rejections.popleft()

    async def rejections(
        self, *, limit: int = 50, provider: str | None = None
    ) -> Sequence[Rejection]:
        """See :meth:`Store.rejections`."""
        found: list[Rejection] = []
        for rejection in reversed(self._rejections):
            if provider is None or rejection.provider == provider:
                found.append(rejection)
                if len(found) >= limit:
                    break
        return found

    async def prune_rejections(self, *, before: datetime) -> int:
        """See :meth:`Store.prune_rejections`."""
        kept = [r for r in self._rejections if r.received_at >= before]
        gone = len(self._rejections) - len(kept)
        self._rejections = deque(kept, maxlen=REJECTIONS_KEPT)
        return gone

    async def states(
        self, *, in_alarm: bool | None = None, provider: str | None = None
    ) -> Sequence[AlertState]:
        """See :meth:`Store.states`."""
        found = [
            AlertState(
                provider=subject[0],
                alert_id=change.alert_id,
                alert_name=change.alert_name,
                customer_id=change.customer_id,
                subscription_id=change.subscription_id,
                state=change.state,
                since=change.since,
                event_id=event_id,
            )
            for subject, (change, event_id) in sorted(
                self._states.items(), key=lambda item: tuple(p or "" for p in item[0])
            )
            if (provider is None or subject[0] == provider)
            and (in_alarm is None or (change.state == "in_alarm") == in_alarm)
        ]
        return found

    async def unfolded(self, *, after: int = 0, limit: int = 500) -> Sequence[Unfolded] | None:
        """See :meth:`Store.unfolded`: a memory store keeps state from its first event."""
        return None

    async def fold(
        self, changes: Sequence[tuple[str, str, StateChange]], *, done: bool = False
    ) -> None:
        """See :meth:`Store.fold`."""
        for provider, event_id, change in changes:
            self._set_state(provider, event_id, change)

    def _set_state(self, provider: str, event_id: str, change: StateChange) -> None:
        subject = (provider, change.alert_id, change.customer_id, change.subscription_id)
        held = self._states.get(subject)
        if held is None or (change.since, event_id) > (held[0].since, held[1]):
            self._states[subject] = (change, event_id)

    def _stored(self, d: Delivery) -> StoredEvent:
        rows = self._outcomes[(d.provider, d.event_id)]
        outcomes = tuple(
            Outcome(
                name,
                row.status,
                row.attempts,
                row.last_error,
                datetime.fromtimestamp(row.due_at, timezone.utc)
                if row.status == "failed"
                else None,
                tuple(row.history),
            )
            for name, row in rows.items()
        )
        return StoredEvent(
            d.provider,
            d.event_id,
            d.event_type,
            d.body,
            d.received_at,
            outcomes,
            self._cursors[(d.provider, d.event_id)],
        )


def _died(row: _Row, error: str, now: float) -> None:
    """Count the run whose process died as a failed attempt."""
    row.attempts += 1
    row.last_error = error
    row.history.append(
        Attempt(len(row.history) + 1, error, datetime.fromtimestamp(now, timezone.utc))
    )


def _claimable_at(row: _Row) -> float | None:
    if row.status in ("pending", "failed"):
        return row.due_at
    if row.status == "running":
        return row.lease_until
    return None
