"""hooks.wrap(app, prefix=): requests under the prefix reach the hooks and the rest the app, and
the two lifespans compose (the hooks start first and stop last; an app without one leaves the
hooks' alone; a failure on either side is the server's startup failure)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from alerthooks import AlertHooks
from alerthooks.providers import Stripe
from alerthooks.testing import SyncAlertHooksClient, stripe_alert_triggered

Message = dict[str, Any]


def make_hooks(calls: list[str]) -> AlertHooks:
    hooks = AlertHooks(providers=[Stripe("whsec_wrap")], store="memory://")
    startup, shutdown = hooks.startup, hooks.shutdown

    async def start() -> None:
        calls.append("hooks up")
        await startup()

    async def stop() -> None:
        calls.append("hooks down")
        await shutdown()

    hooks.startup, hooks.shutdown = start, stop  # type: ignore[method-assign]
    return hooks


class App:
    """A host app: answers `app <path>`; its lifespan as told (`on`, `fails`, `none`)."""

    def __init__(self, calls: list[str], lifespan: str = "on") -> None:
        self.calls, self.lifespan = calls, lifespan

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            if self.lifespan == "none":
                raise ValueError("no lifespan here")  # as Django's ASGIHandler does
            await receive()
            if self.lifespan == "fails":
                await send({"type": "lifespan.startup.failed", "message": "app broke"})
                return
            self.calls.append("app up")
            await send({"type": "lifespan.startup.complete"})
            await receive()
            self.calls.append("app down")
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = f"app {scope['path']}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


async def run_lifespan(app: Any) -> list[Message]:
    """Drive a lifespan as a server does: startup, then shutdown if it started."""
    sent: list[Message] = []
    inbox = [{"type": "lifespan.startup"}]
    started = anyio.Event()

    async def receive() -> Message:
        if inbox:
            return inbox.pop()
        await started.wait()
        return {"type": "lifespan.shutdown"}

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "lifespan.startup.complete":
            started.set()

    with anyio.fail_after(10):
        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    return sent


async def test_the_hooks_start_before_the_app_and_stop_after_it() -> None:
    calls: list[str] = []
    sent = await run_lifespan(make_hooks(calls).wrap(App(calls)))
    assert calls == ["hooks up", "app up", "app down", "hooks down"]
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_an_app_without_a_lifespan_gets_the_hooks_alone() -> None:
    calls: list[str] = []
    sent = await run_lifespan(make_hooks(calls).wrap(App(calls, lifespan="none")))
    assert calls == ["hooks up", "hooks down"]
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_an_app_failing_to_start_is_the_servers_startup_failure_and_stops_the_hooks() -> None:
    calls: list[str] = []
    sent = await run_lifespan(make_hooks(calls).wrap(App(calls, lifespan="fails")))
    assert calls == ["hooks up", "hooks down"]
    assert sent == [{"type": "lifespan.startup.failed", "message": "app broke"}]


async def test_hooks_failing_to_start_fail_the_startup_before_the_app_starts() -> None:
    calls: list[str] = []
    hooks = make_hooks(calls)

    async def broken() -> None:
        raise RuntimeError("store broke")

    hooks.startup = broken  # type: ignore[method-assign]
    sent = await run_lifespan(hooks.wrap(App(calls)))
    assert calls == []
    assert sent == [{"type": "lifespan.startup.failed", "message": "store broke"}]


def test_the_prefix_goes_to_the_hooks_and_everything_else_to_the_app() -> None:
    calls: list[str] = []
    wrapped = make_hooks(calls).wrap(App(calls), prefix="/webhooks/")
    with SyncAlertHooksClient(wrapped) as client:
        assert client.prefix == "/webhooks"
        assert client.send_stripe(stripe_alert_triggered()).status_code == 200
        assert client.post("/webhooks/nope").status_code == 404  # the hooks' own 404
        assert client.get("/webhooksfoo").text == "app /webhooksfoo"
        assert client.get("/").text == "app /"


@pytest.mark.parametrize("prefix", ["", "/", "webhooks"])
def test_a_prefix_must_be_a_path_below_the_root(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix must be a path below the root"):
        AlertHooks(store="memory://").wrap(App([]), prefix=prefix)
