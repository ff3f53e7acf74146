"""The group-commit engine alone (the Postgres store's batching): items submitted together go
in one batch, each caller gets its own result or error, two items of one key never share a
batch, and a caller that gave up is left out."""

from __future__ import annotations

import asyncio

import pytest

from alerthooks.store._group_commit import GroupCommit


async def test_items_submitted_together_share_a_batch_and_get_their_own_results() -> None:
    batches: list[list[int]] = []

    async def run(items: list[int]) -> list[object]:
        batches.append(items)
        await asyncio.sleep(0)
        return [ValueError(f"bad {i}") if i == 3 else i * 10 for i in items]

    engine: GroupCommit[int] = GroupCommit(run)
    results = await asyncio.gather(*(engine.submit(i) for i in range(6)), return_exceptions=True)
    assert batches == [[0, 1, 2, 3, 4, 5]]
    assert results[:3] == [0, 10, 20] and results[4:] == [40, 50]
    assert isinstance(results[3], ValueError) and str(results[3]) == "bad 3"


async def test_items_arriving_during_a_round_trip_go_together_in_the_next() -> None:
    batches: list[list[int]] = []
    left, gate = asyncio.Event(), asyncio.Event()

    async def run(items: list[int]) -> list[object]:
        batches.append(items)
        left.set()
        await gate.wait()
        return list(items)

    engine: GroupCommit[int] = GroupCommit(run, depth=1)
    first = asyncio.ensure_future(engine.submit(0))
    await left.wait()  # the first batch left and waits for its answer
    later = [asyncio.ensure_future(engine.submit(i)) for i in (1, 2, 3)]
    gate.set()
    assert await asyncio.gather(first, *later) == [0, 1, 2, 3]
    assert batches == [[0], [1, 2, 3]]


async def test_a_batch_that_fails_as_a_whole_fails_every_caller() -> None:
    async def run(items: list[int]) -> list[object]:
        raise OSError("connection lost")

    engine: GroupCommit[int] = GroupCommit(run)
    results = await asyncio.gather(engine.submit(1), engine.submit(2), return_exceptions=True)
    assert [type(r) for r in results] == [OSError, OSError]


async def test_one_key_never_twice_in_a_batch() -> None:
    batches: list[list[str]] = []

    async def run(items: list[str]) -> list[object]:
        batches.append(items)
        return list(items)

    engine: GroupCommit[str] = GroupCommit(run, key=lambda item: item[0])
    await asyncio.gather(*(engine.submit(s) for s in ("a1", "b1", "a2", "a3", "c1")))
    assert batches == [["a1", "b1", "c1"], ["a2"], ["a3"]]


async def test_a_caller_cancelled_before_its_batch_left_is_left_out() -> None:
    batches: list[list[int]] = []

    async def run(items: list[int]) -> list[object]:
        batches.append(items)
        return list(items)

    engine: GroupCommit[int] = GroupCommit(run)
    gone = asyncio.ensure_future(engine.submit(1))
    kept = asyncio.ensure_future(engine.submit(2))
    await asyncio.sleep(0)  # both submitted: their batch leaves at the end of the next turn
    gone.cancel()
    assert await kept == 2
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert batches == [[2]]
