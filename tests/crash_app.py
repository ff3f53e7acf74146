"""An app whose one handler takes its process down (``os._exit``) after noting the event id in
the file named by env ALERTHOOKS_TEST_OUT (fsynced), for the crash tests' supervised servers."""

from __future__ import annotations

import os

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import Chargebee, Stripe

from .conftest import CB_PASSWORD, CB_USER, STRIPE_SECRET

hooks = AlertHooks(
    providers=[Stripe(STRIPE_SECRET), Chargebee((CB_USER, CB_PASSWORD))],
    mode="queued",
    lease_seconds=float(os.environ.get("ALERTHOOKS_TEST_LEASE", "1")),
    max_attempts=3,
    retry_backoff=0.01,
    retry_backoff_max=0.05,
    poll_interval=0.1,
)


@hooks.on("*", name="poison")
def poison(event: AlertEvent) -> None:
    fd = os.open(os.environ["ALERTHOOKS_TEST_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{event.id}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os._exit(70)  # as a segfault or an OOM kill would: no outcome, no cleanup
