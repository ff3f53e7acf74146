"""Health checks: /live while serving, /ready when the store answers and the worker runs."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from alerthooks import AlertHooks
from alerthooks.health import HealthApp
from alerthooks.providers import Stripe
from alerthooks.store import StoreError
from alerthooks.store.memory import MemoryStore

from .conftest import STRIPE_SECRET, free_port
from .helpers import ServedApp


class FlakyStore(MemoryStore):
    """A memory store that can be made to fail, or to hang, on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.hang = False

    async def next_due(self) -> float | None:
        if self.down:
            raise StoreError("connection refused\n(second line)")
        if self.hang:
            await asyncio.Event().wait()
        return await super().next_due()


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def get(app: Any, path: str) -> httpx.Response:
    async with client_for(app) as client:
        return await client.get(path)


async def test_live_answers_while_serving_even_with_the_store_down() -> None:
    store = FlakyStore()
    store.down = True
    app = AlertHooks(store=store).health_app()
    response = await get(app, "/live")
    assert (response.status_code, response.json()) == (200, {"status": "live"})
    assert (await get(app, "/ready")).status_code == 503


async def test_ready_follows_the_store() -> None:
    store = FlakyStore()
    app = AlertHooks(store=store).health_app()
    ready = await get(app, "/ready")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    store.down = True
    down = await get(app, "/ready")
    assert down.status_code == 503
    assert down.json() == {
        "status": "unavailable",
        "reason": "store memory:// unavailable: connection refused (second line)",
    }
    assert down.text.count("\n") == 1  # one line
    store.down = False
    assert (await get(app, "/ready")).status_code == 200


async def test_a_store_that_hangs_is_not_ready() -> None:
    store = FlakyStore()
    store.hang = True
    app = HealthApp(AlertHooks(store=store), store_timeout=0.05)
    response = await get(app, "/ready")
    assert response.status_code == 503
    assert response.json()["reason"] == "store memory:// did not answer in 0.05 s"


async def test_an_unreachable_store_is_not_ready_and_its_password_stays_hidden() -> None:
    url = f"postgresql://alerthooks:hunter2@127.0.0.1:{free_port()}/nowhere"
    response = await get(AlertHooks(store=url).health_app(), "/ready")
    assert response.status_code == 503
    reason = response.json()["reason"]
    assert reason.startswith("store postgresql://alerthooks:***@127.0.0.1:")
    assert "hunter2" not in response.text


async def test_a_store_down_at_startup_is_ready_once_it_answers(tmp_path: Any) -> None:
    hooks = AlertHooks(store=f"sqlite:///{tmp_path}/never-opened.db")
    assert (await get(hooks.health_app(), "/ready")).status_code == 200  # /ready opened it
    await hooks.shutdown()


async def test_queued_mode_is_ready_only_while_the_worker_runs() -> None:
    hooks = AlertHooks(providers=[Stripe(STRIPE_SECRET)], store="memory://", mode="queued")
    app = hooks.health_app()
    response = await get(app, "/ready")
    assert (response.status_code, response.json()["reason"]) == (503, "worker not running")
    await hooks.startup()
    assert (await get(app, "/ready")).status_code == 200
    await hooks.shutdown()
    assert (await get(app, "/ready")).json()["reason"] == "worker not running"
    # A web process of a split deployment runs no worker, and needs none to be ready.
    web = AlertHooks(
        providers=[Stripe(STRIPE_SECRET)], store="memory://", mode="queued", worker=False
    )
    assert (await get(web.health_app(), "/ready")).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/", 404), ("GET", "/health", 404), ("POST", "/ready", 405), ("PUT", "/live", 405)],
)
async def test_other_paths_and_methods_are_refused(method: str, path: str, status: int) -> None:
    async with client_for(AlertHooks(store="memory://").health_app()) as client:
        response = await client.request(method, path)
    assert response.status_code == status
    if status == 405:
        assert response.headers["allow"] == "GET, HEAD"


async def test_not_ready_is_logged_when_it_changes_not_at_every_probe(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore()
    store.down = True
    app = AlertHooks(store=store).health_app()
    for _ in range(3):
        await get(app, "/ready")
    assert sum("not ready" in r.getMessage() for r in caplog.records) == 1


def test_mounted_under_a_real_server_beside_the_receiver() -> None:
    hooks = AlertHooks(providers=[Stripe(STRIPE_SECRET)], store="memory://", mode="queued")
    app = Starlette(
        routes=[Mount("/webhooks", app=hooks), Mount("/_alerthooks", app=hooks.health_app())],
        lifespan=hooks.lifespan,
    )
    with ServedApp(app) as served:
        base = f"http://127.0.0.1:{served.port}/_alerthooks"
        live = httpx.get(f"{base}/live")
        ready = httpx.get(f"{base}/ready")
    assert (live.status_code, live.json()) == (200, {"status": "live"})
    assert (ready.status_code, json.loads(ready.text)) == (200, {"status": "ready"})
    assert ready.headers["cache-control"] == "no-store"
