"""A reconnecting slow-header flood, run as its own process by the flood tests so that its CPU
use does not slow the test's own deliveries:

    python -m tests.flood_client PORT COUNT SECONDS [SOURCES]

``COUNT`` clients connect to 127.0.0.1:PORT (only there), each sending a request's headers one
byte a second; as soon as the server closes one, it reconnects. After ``SECONDS`` every client
stops and the process prints one JSON line (after a line ``started`` once every client has
connected at least once): how many connections were open at the peak, how
many the server closed, and how many connects failed. ``SOURCES`` (default 1) spreads the
clients over source addresses 127.0.0.1, 127.0.0.2, … so that ``COUNT`` can exceed one address's
ephemeral ports. The flood is bounded in count and in time and stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import time

HEAD = b"POST /stripe HTTP/1.1\r\nHost: x\r\nX-Slow: "


class Flood:
    def __init__(self, port: int, count: int, sources: int) -> None:
        self.port, self.count, self.sources = port, count, sources
        self.open = self.peak = self.closed = self.failed = 0
        self.stop = asyncio.Event()
        self.connected: set[int] = set()
        self.all_connected = asyncio.Event()

    async def client(self, index: int) -> None:
        source = (f"127.0.0.{1 + index % self.sources}", 0)
        while not self.stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.port, local_addr=source
                )
            except OSError:
                self.failed += 1
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), 0.05)
                continue
            self.open += 1
            self.peak = max(self.peak, self.open)
            self.connected.add(index)
            if len(self.connected) == self.count:
                self.all_connected.set()
            try:
                writer.write(HEAD)
                while not self.stop.is_set():
                    with contextlib.suppress(asyncio.TimeoutError):
                        if not await asyncio.wait_for(reader.read(4096), 1.0):
                            self.closed += 1
                            break
                    writer.write(b"s")
            except ConnectionError:
                self.closed += 1
            finally:
                self.open -= 1
                writer.transport.abort()


async def main(port: int, count: int, seconds: float, sources: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    flood = Flood(port, count, sources)
    tasks = [asyncio.ensure_future(flood.client(i)) for i in range(count)]
    started = time.monotonic()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(flood.all_connected.wait(), seconds)
    print("started", flush=True)
    await asyncio.sleep(max(0.0, seconds - (time.monotonic() - started)))
    flood.stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(
        json.dumps(
            {
                "peak": flood.peak,
                "closed": flood.closed,
                "failed": flood.failed,
                "seconds": round(time.monotonic() - started, 2),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(
        main(int(args[0]), int(args[1]), float(args[2]), int(args[3]) if len(args) > 3 else 1)
    )
