"""Health checks for load balancers and Kubernetes probes: ``hooks.health_app()``.

``GET /live`` answers 200 while the process serves. ``GET /ready`` answers 200 when the store
answers (and, in queued mode with the worker in this process, the worker runs), else 503 with a
one-line JSON reason, so traffic goes elsewhere until it recovers. Mount both with
``Mount("/_alerthooks", app=hooks.health_app())``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING

from starlette.types import Receive, Scope, Send

from alerthooks.asgi import acknowledge_lifespan, route_path
from alerthooks.store import redact_url

if TYPE_CHECKING:
    from alerthooks.facade import Facade

logger = logging.getLogger(__name__)

DEFAULT_STORE_TIMEOUT = 2.0


class HealthApp:
    """ASGI app serving ``/live`` and ``/ready`` for one :class:`~alerthooks.AlertHooks`.

    ``store_timeout``: seconds the store has to answer ``/ready`` before it counts as down.
    """

    def __init__(self, hooks: Facade, *, store_timeout: float = DEFAULT_STORE_TIMEOUT) -> None:
        self.hooks = hooks
        self.store_timeout = store_timeout
        self._last_reason: str | None = None

    async def ready(self) -> str | None:
        """None when ready, else why not (one line)."""
        hooks = self.hooks
        store = hooks.store
        try:
            # open() is idempotent: a store that was down at startup is opened once it answers.
            await asyncio.wait_for(store.open(), self.store_timeout)
            await asyncio.wait_for(store.next_due(), self.store_timeout)
        except (TimeoutError, asyncio.TimeoutError):
            return f"store {redact_url(store.url)} did not answer in {self.store_timeout:g} s"
        except Exception as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            return f"store {redact_url(store.url)} unavailable: {reason}"
        if hooks.mode == "queued" and hooks.run_worker and not hooks.worker.started:
            return "worker not running"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await acknowledge_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = route_path(scope).rstrip("/")
        headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
        if path not in ("/live", "/ready"):
            status, answer = 404, {"error": "not found"}
        elif scope["method"] not in ("GET", "HEAD"):
            status, answer = 405, {"error": "method not allowed"}
            headers.append((b"allow", b"GET, HEAD"))
        elif path == "/live":
            status, answer = 200, {"status": "live"}
        else:
            reason = await self.ready()
            if reason != self._last_reason:  # logged when it changes, not at every probe
                if reason is None:
                    logger.info("ready again")
                else:
                    logger.warning("not ready: %s", reason)
                self._last_reason = reason
            if reason is None:
                status, answer = 200, {"status": "ready"}
            else:
                status, answer = 503, {"status": "unavailable", "reason": reason}
        body = json.dumps(answer, separators=(",", ":")).encode() + b"\n"
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )
