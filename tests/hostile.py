"""Hardening test helpers: raw ASGI calls, example counts, a server in a thread, a TCP proxy.

``ALERTHOOKS_FULL_TESTS=1`` raises hypothesis example counts and load-test sizes to full size.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

FULL = os.environ.get("ALERTHOOKS_FULL_TESTS", "") == "1"


def examples(quick: int, full: int | None = None) -> int:
    """The hypothesis example count: ``quick`` in ``make test``, ``full`` under the flag."""
    return (full if full is not None else quick * 20) if FULL else quick


async def asgi_call(
    app: Any,
    *,
    method: str = "POST",
    path: str = "/stripe",
    headers: Sequence[tuple[bytes, bytes]] = (),
    chunks: Sequence[bytes] = (b"",),
    root_path: str = "",
    client: tuple[str, int] | None = ("203.0.113.7", 40000),
) -> tuple[int, bytes, int]:
    """Call an ASGI app with exactly these bytes; return (status, body, chunks it read).

    The body arrives as ``chunks`` (``more_body`` on all but the last); once they are consumed
    the client is reported as disconnected, as a server would.
    """
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "root_path": root_path,
        "query_string": b"",
        "headers": list(headers),
        "client": client,
        "server": ("127.0.0.1", 8000),
    }
    pending = list(chunks) or [b""]
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        if read < len(pending):
            read += 1
            return {
                "type": "http.request",
                "body": pending[read - 1],
                "more_body": read < len(pending),
            }
        await asyncio.sleep(0)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, read


def read_response(sock: Any, timeout: float) -> bytes:
    """Read until the server closes or a whole response head (and its Content-Length) arrived."""
    import time

    sock.settimeout(0.2)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length" and len(body) >= int(value):
                    return data
    return data


class TcpProxy:
    """A loopback TCP forwarder to ``target``, to take a database away and bring it back.

    ``stop`` closes the listener and resets every open connection (the port refuses, like a
    database that is down); ``start`` listens again on the same port.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._transports: set[asyncio.BaseTransport] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for transport in list(self._transports):
            transport.abort()  # type: ignore[attr-defined]
        self._transports.clear()
        if server is not None:
            await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._transports.update((writer.transport, up_writer.transport))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._transports.discard(writer.transport)
        self._transports.discard(up_writer.transport)
