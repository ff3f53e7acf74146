"""Serving an :class:`~alerthooks.AlertHooks` under a path of an ASGI app that cannot mount one
(Django's ``get_asgi_application()``, Quart's ``asgi_app``), with both lifespans composed.

Requests under the prefix go to the hooks, the rest to the app, unchanged. The hooks start
before the app's own lifespan and stop after it; an app that does not speak the lifespan
protocol (Django raises on it) gets the hooks' lifespan alone.
"""

from __future__ import annotations

import logging
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)


class Mountable(Protocol):
    """What :class:`HooksMount` needs of an :class:`~alerthooks.AlertHooks`: an ASGI app that
    starts and stops (a protocol, so this module does not import the facade that builds it)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""

    async def startup(self) -> None:
        """Open the store and, in queued mode, start the worker."""

    async def shutdown(self) -> None:
        """Stop the worker and close the store."""


class HooksMount:
    """``app`` with ``hooks`` answering under ``prefix`` (``POST {prefix}/{provider}``).

    Built by :meth:`AlertHooks.wrap`. The hooks see the prefix as their ``root_path``, as a
    Starlette ``Mount`` would give it; the test kit finds them through ``hooks`` and ``prefix``.
    """

    def __init__(self, hooks: Mountable, app: ASGIApp, prefix: str) -> None:
        if not prefix.startswith("/") or prefix.rstrip("/") == "":
            raise ValueError(f"prefix must be a path below the root, like '/webhooks': {prefix!r}")
        self.hooks = hooks
        self.app = app
        self.prefix = prefix.rstrip("/")

    def __repr__(self) -> str:
        return f"HooksMount(prefix={self.prefix!r}, app={self.app!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if kind in ("http", "websocket"):
            root_path: str = scope.get("root_path", "")
            path: str = scope["path"]
            # Servers give the full path (root_path included) or, some, the path below it.
            below = path[len(root_path) :] if root_path and path.startswith(root_path) else path
            if below == self.prefix or below.startswith(self.prefix + "/"):
                mounted = dict(scope, root_path=root_path + self.prefix)
                if not (root_path and path.startswith(root_path)):
                    mounted["path"] = root_path + path
                await self.hooks(mounted, receive, send)
                return
        await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        try:
            await self.hooks.startup()
        except Exception as exc:
            logger.exception("the alert hooks failed to start")
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        pending: list[Message] = [message]
        started = finished = False

        async def app_receive() -> Message:
            return pending.pop() if pending else await receive()

        async def app_send(reply: Message) -> None:
            nonlocal started, finished
            if reply["type"] == "lifespan.startup.complete":
                started = True
            elif reply["type"] in (
                "lifespan.startup.failed",
                "lifespan.shutdown.complete",
                "lifespan.shutdown.failed",
            ):
                finished = True
                await self.hooks.shutdown()  # before the server is told it may stop
            await send(reply)

        try:
            await self.app(scope, app_receive, app_send)
        except Exception:
            if started or finished:
                if not finished:
                    await self.hooks.shutdown()
                raise
            logger.debug("%r does not speak the lifespan protocol: the hooks' alone", self.app)
        if finished:
            return
        if started:  # the app returned without being told to stop
            await self.hooks.shutdown()
            return
        await self._lifespan_alone(receive, send)

    async def _lifespan_alone(self, receive: Receive, send: Send) -> None:
        await send({"type": "lifespan.startup.complete"})
        while True:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self.hooks.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return
