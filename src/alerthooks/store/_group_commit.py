"""Client-side group commit for an async store: the writes of deliveries in flight, one batch per
round trip and commit.

Callers :meth:`GroupCommit.submit` an item and wait for its result. Items submitted in one turn
of the event loop, and all those submitted while earlier batches are in flight, go out together:
``run`` gets the batch and returns one result per item (a value, or the exception that item is to
raise). At most ``depth`` batches are in flight at once, so under load a batch gathers everything
that arrived during the previous round trip, and alone an item waits for no one (its batch leaves
at the end of the loop turn it was submitted in).

The engine knows nothing of SQL; the Postgres store builds one statement per batch (see
``store/postgres.py``). It is the asyncio counterpart of the SQLite store's writer thread
(``_sqlite_writer.py``): no thread, since the driver is asynchronous already.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class GroupCommit(Generic[T]):
    """Batches items submitted concurrently and hands each caller its own result.

    ``run(batch)`` returns one result per item, in order; an exception instance is raised to that
    item's caller. If ``run`` itself raises, every item of the batch gets that error. Items with
    the same ``key`` (optional) go in separate batches, in the order submitted (e.g. two writes
    of one row). At most ``size`` items per batch.
    """

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[Sequence[object]]],
        *,
        depth: int = 2,
        size: int = 256,
        key: Callable[[T], Hashable] | None = None,
    ) -> None:
        self._run = run
        self.depth = depth
        self.size = size
        self._key = key
        self._queue: list[tuple[T, asyncio.Future[object]]] = []
        self._inflight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0
        """Batches run so far (for benchmarks and tests)."""
        self.items = 0
        """Items run so far."""

    async def submit(self, item: T) -> object:
        """Run ``item`` in the next batch; return its result (or raise its error)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[object] = loop.create_future()
        self._queue.append((item, future))
        if not self._scheduled and self._inflight < self.depth:
            self._scheduled = True
            loop.call_soon(self._kick)
        return await future

    def _kick(self) -> None:
        self._scheduled = False
        while self._queue and self._inflight < self.depth:
            batch = self._take()
            self._inflight += 1
            task = asyncio.get_running_loop().create_task(self._flush(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[tuple[T, asyncio.Future[object]]]:
        taken: list[tuple[T, asyncio.Future[object]]] = []
        left: list[tuple[T, asyncio.Future[object]]] = []
        keys: set[Hashable] = set()
        for entry in self._queue:
            if entry[1].done():  # its caller was cancelled before the batch left
                continue
            if len(taken) >= self.size:
                left.append(entry)
                continue
            if self._key is not None:
                key = self._key(entry[0])
                if key in keys:
                    left.append(entry)
                    continue
                keys.add(key)
            taken.append(entry)
        self._queue = left
        return taken

    async def _flush(self, batch: list[tuple[T, asyncio.Future[object]]]) -> None:
        try:
            if batch:
                try:
                    results: Sequence[object] = await self._run([item for item, _ in batch])
                except Exception as exc:
                    results = [exc] * len(batch)
                self.batches += 1
                self.items += len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        except BaseException:  # cancelled (the loop is closing): nobody may hang
            for _, future in batch:
                future.cancel()
            raise
        finally:
            self._inflight -= 1
            if self._queue and not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._kick)

    async def drain(self) -> None:
        """Wait until every batch in flight has finished."""
        while self._tasks or self._queue:
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            else:
                await asyncio.sleep(0)
