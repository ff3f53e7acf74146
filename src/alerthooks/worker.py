"""Queued mode only: a worker claims due (event, handler) pairs from the store, runs them, and
records each outcome, retrying failures with exponential backoff and jitter until they are dead.
It is given an explicit :class:`~alerthooks.runtime.Runtime`; what inline mode shares with it
lives there.

The receiver wakes the worker when it records an event, so the common case has no polling delay;
a store that can tell (Postgres, through LISTEN/NOTIFY) wakes it when another process records
work or replays some; and the worker polls the store for retries coming due and for anything
else (every ``poll_interval`` seconds).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Collection, Sequence

from alerthooks.events import AlertEvent
from alerthooks.runtime import LeaseKeeper, Runtime, Unreadable, record_outcomes, stored_event
from alerthooks.store import Claim, Delivery, StoreError

logger = logging.getLogger(__name__)


def backoff(attempt: int, base: float, cap: float) -> float:
    """Seconds to wait after the ``attempt``-th failure: ``base·2^(attempt-1)``, capped at
    ``cap``, scaled by a random factor in [0.5, 1) so retries of many events spread out."""
    return float(min(cap, base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))


class Worker:
    """Runs the handlers of queued events recorded in ``runtime.store``.

    ``start`` runs it in the background until ``stop``; ``run_once`` claims and starts one batch,
    which is what :meth:`AlertHooks.drain` uses.
    """

    def __init__(self, runtime: Runtime, *, concurrency: int = 16, poll_interval: float = 1.0):
        self.runtime = runtime
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self._wake: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        # Tasks of _running whose handlers are still running: the slots in use. A task whose
        # handlers returned frees its slot while it records their outcomes, so the next claim
        # does not wait for that commit.
        self._handling = 0
        # Claimed ahead, not started: a slot that frees takes the next group at once instead of
        # waiting for a claim's round trip (their leases are renewed meanwhile).
        self._ready: collections.deque[tuple[list[Claim], LeaseKeeper]] = collections.deque()
        self._ready_pairs = 0
        # (provider, event_id, handler) of outcomes that ran here and are not recorded yet.
        self._recording: set[tuple[str, str, str]] = set()
        #: (event, handler) pairs whose outcome this worker has recorded: a progress count.
        self.recorded = 0
        self._jobs: list[tuple[str, float, Callable[[], Awaitable[object]]]] = []
        self._job_tasks: list[asyncio.Task[None]] = []

    def every(self, seconds: float, job: Callable[[], Awaitable[object]], *, name: str) -> None:
        """Run ``job`` every ``seconds`` while the worker runs (first at start), in one replica
        at a time where the store is shared: each run takes the store's lease ``name``
        (:meth:`~alerthooks.store.Store.try_lease`) and is skipped while another owner holds
        it. A failing run is logged and tried again at the next period."""
        if seconds <= 0:
            raise ValueError(f"{name}: the period must be positive, got {seconds!r}")
        self._jobs.append((name, seconds, job))

    @property
    def started(self) -> bool:
        """Whether the background loop is running."""
        return self._loop_task is not None and not self._loop_task.done()

    def wake(self) -> None:
        """Look for due work now instead of at the next poll."""
        if self._wake is not None:
            self._wake.set()

    async def start(self) -> None:
        """Run the worker loop in the background of the current event loop."""
        if self.started:
            return
        self._wake = asyncio.Event()
        self._loop_task = asyncio.create_task(self._loop(), name="alerthooks-worker")
        self.runtime.store.watch(self.wake)  # work other processes record (Postgres: LISTEN)
        self._job_tasks = [
            asyncio.create_task(self._periodic(*job), name=f"alerthooks-{job[0]}")
            for job in self._jobs
        ]
        logger.info("worker %s started", self.runtime.owner)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming, give running handlers ``grace`` seconds, then cancel them: each is
        recorded as an interrupted attempt, due again at once for the next worker. Stopping a
        worker that is not running does nothing (and logs nothing)."""
        task, self._loop_task = self._loop_task, None
        jobs, self._job_tasks = self._job_tasks, []
        for job in jobs:
            job.cancel()
        for job in jobs:
            with contextlib.suppress(asyncio.CancelledError):
                await job
        if task is not None:
            await self.runtime.store.unwatch()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._ready:
            await self._hand_back_ready()
        if self._running:
            _, pending = await asyncio.wait(self._running, timeout=grace)
            for leftover in pending:
                leftover.cancel()
            if pending:
                await asyncio.wait(pending)
        if task is not None:
            logger.info("worker %s stopped", self.runtime.owner)

    async def _periodic(
        self, name: str, seconds: float, job: Callable[[], Awaitable[object]]
    ) -> None:
        runtime = self.runtime
        while True:
            try:
                # A little shorter than the period, so this owner takes it again next time.
                if await runtime.store.try_lease(name, owner=runtime.owner, seconds=seconds * 0.9):
                    await job()
                else:
                    logger.debug("%s: another replica holds the lease; skipped", name)
            except StoreError as exc:
                logger.warning("%s: cannot reach the store: %s", name, exc)
            except Exception:
                logger.exception("%s failed; trying again in %.0f s", name, seconds)
            await asyncio.sleep(seconds)

    async def run_forever(self) -> None:
        """Run the worker in the foreground until cancelled (``alerthooks worker``)."""
        await self.start()
        try:
            assert self._loop_task is not None
            await asyncio.shield(self._loop_task)
        finally:
            await self.stop()

    async def drain(self, timeout: float) -> None:
        """Run due work until none is left; raise TimeoutError after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            claimed = await self.run_once()
            if not claimed and not self._running and not self._ready:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"queued work still due after {timeout} s")
            if self._running:
                await asyncio.wait(
                    set(self._running), timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )

    async def run_events(self, events: Collection[tuple[str, str]], timeout: float) -> int:
        """Run now the pending and failed handlers of ``events`` (``(provider, event_id)``
        pairs), and no other event's: what a replay runs. Return how many handler runs started;
        raise TimeoutError when they are not all recorded within ``timeout`` seconds.

        Each event's handlers are leased as a redelivery's are, so a worker elsewhere does not
        run them too; an event still ``unparsed`` is left alone."""
        runtime = self.runtime
        store = runtime.store
        started: list[asyncio.Task[None]] = []
        count = 0
        slots = asyncio.Semaphore(self.concurrency)

        async def run(claims: list[Claim]) -> None:
            async with slots:
                first = claims[0]
                keeper = LeaseKeeper(
                    runtime, first.provider, first.event_id, [c.handler for c in claims]
                )
                await self._run_event(claims, keeper, holds_slot=False)

        for provider, event_id in dict.fromkeys(events):
            stored = await store.get(provider, event_id)
            if stored is None or any(o.status == "unparsed" for o in stored.outcomes):
                continue
            again = Delivery(
                provider, event_id, stored.event_type, stored.body, stored.received_at, ()
            )
            begun = await store.begin(
                again, owner=runtime.owner, lease=runtime.lease_seconds, claim=True
            )
            attempts = {o.handler: o.attempts for o in stored.outcomes}
            claims = [
                Claim(provider, event_id, stored.body, name, attempts.get(name, 0))
                for name in begun.claimed
            ]
            if claims:
                count += len(claims)
                started.append(asyncio.create_task(run(claims)))
        if started:
            _, pending = await asyncio.wait(started, timeout=timeout)
            if pending:
                raise TimeoutError(f"replayed handlers still running after {timeout} s")
            for task in started:
                task.result()
        return count

    async def run_once(self) -> int:
        """Start claimed work in the free slots, and claim due pairs for them and about as many
        again, to start as slots free up; the number of pairs claimed."""
        self._start_ready()
        if self._recording_full():
            return 0  # outcomes wait for the store: claim more once some are recorded
        want = 2 * self.concurrency - self._handling - self._ready_pairs
        if want <= 0 or self._ready_pairs > self.concurrency // 2:
            return 0
        runtime = self.runtime
        claims = await runtime.store.claim(
            owner=runtime.owner,
            lease=runtime.lease_seconds,
            limit=want,
            max_attempts=runtime.max_attempts,
        )
        groups: dict[tuple[str, str], list[Claim]] = {}
        for claim in claims:
            if (claim.provider, claim.event_id, claim.handler) in self._recording:
                # Ran here and its outcome is being recorded (the lease outlived a long store
                # outage): the lease is this worker's again, and recording it releases it.
                continue
            groups.setdefault((claim.provider, claim.event_id), []).append(claim)
        for (provider, event_id), group in groups.items():
            # The leases are renewed from now until the outcomes are recorded.
            keeper = LeaseKeeper(runtime, provider, event_id, [c.handler for c in group])
            self._ready.append((group, keeper))
            self._ready_pairs += len(group)
        self._start_ready()
        return len(claims)

    def _recording_full(self) -> bool:
        # Runs whose outcomes are being recorded hold no slot, but at most twice the slots' worth
        # of them, so a store that claims yet cannot record does not pile up runs.
        return len(self._running) - self._handling >= 2 * self.concurrency

    def _start_ready(self) -> None:
        while self._ready and self._handling < self.concurrency:
            group, keeper = self._ready.popleft()
            self._ready_pairs -= len(group)
            task = asyncio.create_task(self._run_event(group, keeper))
            self._handling += 1
            self._running.add(task)
            task.add_done_callback(self._done)

    async def _hand_back_ready(self) -> None:
        """At stop: claimed pairs that never started are recorded as interrupted, due again at
        once, as the runs the stop cancels are."""
        ready, self._ready, self._ready_pairs = list(self._ready), collections.deque(), 0
        for group, keeper in ready:
            try:
                stopped: dict[str, str | None] = {
                    c.handler: "interrupted: the worker stopped" for c in group
                }
                await self._record(group, stopped, retry_now=True, tries=1)
            finally:
                keeper.stop()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self.wake()

    async def _loop(self) -> None:
        assert self._wake is not None
        try:  # work a crashed process of this host left: taken over now, not after its lease
            if gone := await self.runtime.store.expire_gone():
                logger.warning(
                    "worker %s: %d handler run(s) of processes of this host that died are due "
                    "again",
                    self.runtime.owner,
                    gone,
                )
        except Exception as exc:
            logger.warning("worker cannot check for leases of dead processes: %s", exc)
        while True:
            self._wake.clear()
            delay = self.poll_interval
            try:
                if await self.run_once():
                    continue
                if self._handling < self.concurrency and not (
                    self._ready or self._recording_full()
                ):
                    due = await self.runtime.store.next_due()
                    if due is not None:
                        delay = min(delay, max(due, 0.01))
            except StoreError as exc:
                logger.warning("worker cannot reach the store: %s", exc)
            except Exception:
                logger.exception("worker loop failed; retrying")
            # Not asyncio.wait_for: on Python < 3.12 it swallows a cancel that arrives as the
            # wake-up does, and stop() then waits for this loop forever.
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({woken}, timeout=delay)
            finally:
                woken.cancel()

    async def _run_event(
        self, claims: Sequence[Claim], keeper: LeaseKeeper, *, holds_slot: bool = True
    ) -> None:
        """Run one event's claimed handlers and record them; ``holds_slot``: the run took one
        of the worker's slots (a replay's runs take none), freed once the handlers return."""
        first = claims[0]
        event = self._event(first)
        names = [c.handler for c in claims]
        handling = True
        try:
            results: dict[str, str | None]
            if isinstance(event, str):
                results = {c.handler: event for c in claims}
            else:
                try:
                    results = await self.runtime.dispatcher.run_named(
                        event, names, observers=self.runtime.observers, queued=True
                    )
                except asyncio.CancelledError:
                    interrupted: dict[str, str | None] = {
                        c.handler: "interrupted: the worker stopped" for c in claims
                    }
                    await asyncio.shield(self._record(claims, interrupted, retry_now=True, tries=1))
                    raise
            handling = False
            if holds_slot:
                self._free_slot()
            await self._record(claims, results)
        finally:
            if handling and holds_slot:
                self._free_slot()
            keeper.stop()

    def _free_slot(self) -> None:
        self._handling -= 1
        self._start_ready()
        self.wake()

    async def _record(
        self,
        claims: Sequence[Claim],
        results: dict[str, str | None],
        *,
        retry_now: bool = False,
        tries: int | None = None,
    ) -> None:
        runtime = self.runtime
        first = claims[0]
        retry_in: dict[str, float] = {}
        dead: list[str] = []
        for claim in claims:
            if results[claim.handler] is None:
                continue
            attempt = claim.attempts + 1
            if attempt >= runtime.max_attempts:
                dead.append(claim.handler)
                logger.error(
                    "%s event %s: handler %s is dead after %d attempts",
                    claim.provider,
                    claim.event_id,
                    claim.handler,
                    attempt,
                )
            else:
                retry_in[claim.handler] = (
                    0.0
                    if retry_now
                    else backoff(attempt, runtime.retry_backoff, runtime.retry_backoff_max)
                )
        keys = [(c.provider, c.event_id, c.handler) for c in claims]
        self._recording.update(keys)
        try:
            recorded = await record_outcomes(
                runtime,
                first.provider,
                first.event_id,
                results,
                retry_in=retry_in,
                dead=dead,
                tries=tries,
            )
        except asyncio.CancelledError:
            logger.warning(
                "%s event %s: the worker stopped before the outcomes were recorded; they run "
                "again when the lease expires",
                first.provider,
                first.event_id,
            )
            raise
        finally:
            self._recording.difference_update(keys)
        if recorded:
            self.recorded += len(claims)
            logger.info(
                "%s event %s: %d handler(s) ran, %d failed",
                first.provider,
                first.event_id,
                len(results),
                sum(error is not None for error in results.values()),
            )

    def _event(self, claim: Claim) -> AlertEvent | str:
        event = stored_event(self.runtime.providers, claim.provider, claim.body, claim.event_id)
        return str(event) if isinstance(event, Unreadable) else event
