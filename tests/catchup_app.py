"""Apps the catch-up CLI tests load in-process: each handled event id is appended to a list."""

from __future__ import annotations

from alerthooks import AlertEvent, AlertHooks

from .conftest import CB_PASSWORD, CB_USER, STRIPE_SECRET

handled: list[str] = []
"""Ids of the events the apps' handlers ran for, in order."""

hooks = AlertHooks(stripe_secret=STRIPE_SECRET, chargebee_auth=(CB_USER, CB_PASSWORD))
queued = AlertHooks(
    stripe_secret=STRIPE_SECRET,
    chargebee_auth=(CB_USER, CB_PASSWORD),
    mode="queued",
    catch_up_every=3600,
)


@hooks.on("*", name="record")
@queued.on("*", name="record")
def record(event: AlertEvent) -> None:
    handled.append(event.id)
