"""The SQLite store's writer process: the hot writes (``begin`` and ``finish``) run in a child
process, so their SQL, their commits and their fsyncs use another core and never hold this
interpreter's GIL.

The child (``python -m alerthooks.store._sqlite_process FD URL``) opens an ordinary
:class:`~alerthooks.store.sqlite.SQLiteStore` on the same file, with its group-commit thread,
and serves calls of its methods sent over a socket pair: one frame per call, ``(id, method,
args, kwargs)`` pickled behind a 4-byte length, answered by ``(id, ok, value)``. Frames queued
in one turn of the event loop go out in one write, each way, and the answers of one turn wake
the caller's loop once. The child answers a call only after the store's method returned, that
is after its commit and fsync, so an answer the receiver acknowledges on is on disk.

When the child dies (``kill -9``, a crash), every call in flight fails with a
:class:`~alerthooks.store.StoreError` (the receiver answers 503 and the provider retries) and
the next call starts a new child. When the parent dies the child sees the socket close and exits
after finishing what it had started.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import pickle
import socket
import struct
import subprocess
import sys
from typing import Any

from alerthooks.store import StoreError

logger = logging.getLogger(__name__)

_LENGTH = struct.Struct("!I")


def _frame(message: object) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    (size,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    return pickle.loads(await reader.readexactly(size))


class _Outbox:
    """Frames to write, sent together at the end of the current turn of the event loop."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self._frames: list[bytes] = []

    def put(self, message: object) -> None:
        if not self._frames:
            asyncio.get_running_loop().call_soon(self._flush)
        self._frames.append(_frame(message))

    def _flush(self) -> None:
        frames, self._frames = self._frames, []
        if not self.writer.is_closing():
            self.writer.write(b"".join(frames))


class ProcessWriter:
    """The parent's side: calls methods of the store in the child process, starting it when
    needed (and again after it died), on the event loop of the first call."""

    def __init__(self, url: str, *, label: str) -> None:
        self.url = url
        self.label = label
        self.process: subprocess.Popen[bytes] | None = None
        """The child, while one runs (tests kill it)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: _Outbox | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._reading: asyncio.Task[None] | None = None
        self._starting: asyncio.Lock | None = None

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``await store.method(*args, **kwargs)`` in the child; raise what it raised."""
        loop = asyncio.get_running_loop()
        if self._outbox is None or self._loop is not loop:
            await self._start(loop)
        assert self._outbox is not None
        self._next_id += 1
        future: asyncio.Future[Any] = loop.create_future()
        self._pending[self._next_id] = future
        self._outbox.put((self._next_id, method, args, kwargs))
        return await future

    async def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._starting is None or self._loop is not loop:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._outbox is not None and self._loop is loop:
                return
            await self.close()
            ours, theirs = socket.socketpair()
            try:
                self.process = await loop.run_in_executor(
                    None,
                    functools.partial(
                        subprocess.Popen,
                        [sys.executable, "-m", __name__, str(theirs.fileno()), self.url],
                        pass_fds=(theirs.fileno(),),
                        stdin=subprocess.DEVNULL,
                    ),
                )
            except OSError as exc:
                ours.close()
                raise StoreError(f"sqlite store {self.label}: no writer process: {exc}") from exc
            finally:
                theirs.close()
            reader, writer = await asyncio.open_unix_connection(sock=ours)
            self._loop = loop
            self._outbox = _Outbox(writer)
            self._reading = loop.create_task(self._read(reader, writer))

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pending = self._pending
        try:
            while True:
                ident, ok, value = await _read_frame(reader)
                future = pending.pop(ident, None)
                if future is None or future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, EOFError):
            pass
        finally:
            self._outbox = None
            writer.close()
            if pending:
                code = self.process.poll() if self.process is not None else None
                logger.warning(
                    "sqlite store %s: writer process ended (exit %s) with %d calls in flight",
                    self.label,
                    code,
                    len(pending),
                )
            error = StoreError(f"sqlite store {self.label}: writer process ended")
            for future in pending.values():
                if not future.done():
                    future.set_exception(error)
            pending.clear()

    async def close(self) -> None:
        """Let the child finish what it was sent, then wait for it to exit."""
        outbox, self._outbox = self._outbox, None
        if outbox is not None:
            outbox._flush()
            with contextlib.suppress(OSError):
                outbox.writer.write_eof()
        if self._reading is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading
            self._reading = None
        process, self.process = self.process, None
        if process is not None:
            loop = asyncio.get_running_loop()
            try:
                await asyncio.wait_for(loop.run_in_executor(None, process.wait), 30)
            except asyncio.TimeoutError:
                process.kill()
                await loop.run_in_executor(None, process.wait)


# -- the child --------------------------------------------------------------------------------


async def _serve(fd: int, url: str) -> None:
    from alerthooks.store.sqlite import SQLiteStore

    store = SQLiteStore(url)
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    outbox = _Outbox(writer)
    running: set[asyncio.Task[None]] = set()

    async def run(ident: int, method: str, args: Any, kwargs: Any) -> None:
        try:
            value = await getattr(store, method)(*args, **kwargs)
        except Exception as exc:
            outbox.put((ident, False, _picklable(exc)))
        else:
            outbox.put((ident, True, value))

    try:
        while True:
            try:
                ident, method, args, kwargs = await _read_frame(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            task = asyncio.create_task(run(ident, method, args, kwargs))
            running.add(task)
            task.add_done_callback(running.discard)
        if running:
            await asyncio.wait(running)
        outbox._flush()
        with contextlib.suppress(ConnectionError):
            await writer.drain()
    finally:
        await store.close()
        writer.close()


def _picklable(exc: Exception) -> Exception:
    try:
        pickle.dumps(exc)
    except Exception:
        return StoreError(f"sqlite: {type(exc).__name__}: {exc}")
    return exc


def main(argv: list[str]) -> int:
    """The child's entry point: serve the store at ``argv[1]`` on the socket ``argv[0]``."""
    fd, url = int(argv[0]), argv[1]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(fd, url))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
