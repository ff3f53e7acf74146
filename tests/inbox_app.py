"""An app the CLI tests serve in subprocesses: each handled event id is appended, fsynced, to the
file named by env ALERTHOOKS_TEST_OUT, so a test can count runs even across SIGKILL."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.routing import Mount

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import Chargebee, Stripe

from .conftest import CB_PASSWORD, CB_USER, STRIPE_SECRET

hooks = AlertHooks(
    providers=[Stripe(STRIPE_SECRET), Chargebee((CB_USER, CB_PASSWORD))],
    mode="inline" if os.environ.get("ALERTHOOKS_TEST_MODE") == "inline" else "queued",
    worker=os.environ.get("ALERTHOOKS_TEST_WORKER", "1") == "1",
    lease_seconds=float(os.environ.get("ALERTHOOKS_TEST_LEASE", "300")),
    max_attempts=3,
    retry_backoff=0.01,
    retry_backoff_max=0.05,
    poll_interval=0.1,
)

host = Starlette(routes=[Mount("/webhooks", app=hooks)], lifespan=hooks.lifespan)

not_an_app = 42

several = Starlette(
    routes=[Mount("/webhooks", app=hooks), Mount("/other", app=AlertHooks(store="memory://"))]
)


@hooks.on("*", name="record")
def record(event: AlertEvent) -> None:
    if os.environ.get("ALERTHOOKS_TEST_FAIL"):
        raise RuntimeError("told to fail")
    fd = os.open(os.environ["ALERTHOOKS_TEST_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{event.id}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
