"""An app for the kill -9 attempt-count test: its one plain handler notes the event id in the
file named by env ALERTHOOKS_TEST_OUT (fsynced) as its first act, then works for a while.

Plain handlers run in one thread here (anyio's default is 40) while the worker claims up to 16
pairs at a time, so at any moment one pair the worker holds has started and the rest are claimed
but waiting for the thread: a kill finds both kinds. (One thread, so that a kill just after a
run was noted finds that run in its work, and no other between its start and its note.)"""

from __future__ import annotations

import os
import time

import anyio.to_thread

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import Chargebee, Stripe

from .conftest import CB_PASSWORD, CB_USER, STRIPE_SECRET

hooks = AlertHooks(
    providers=[Stripe(STRIPE_SECRET), Chargebee((CB_USER, CB_PASSWORD))],
    mode="queued",
    lease_seconds=float(os.environ.get("ALERTHOOKS_TEST_LEASE", "1")),
    max_attempts=50,
    retry_backoff=0.01,
    retry_backoff_max=0.05,
    poll_interval=0.1,
)


@hooks.on("*", name="work")
def work(event: AlertEvent) -> None:
    fd = os.open(os.environ["ALERTHOOKS_TEST_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{event.id}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    time.sleep(0.1)  # the handler's work


_start = hooks.worker.start


async def _start_with_one_thread() -> None:
    anyio.to_thread.current_default_thread_limiter().total_tokens = 1
    await _start()


setattr(hooks.worker, "start", _start_with_one_thread)  # noqa: B010 - a test app's tweak
