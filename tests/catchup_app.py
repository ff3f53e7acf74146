"""Apps the catch-up CLI tests load in-process: each handled event id is appended to a list."""

from __future__ import annotations

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import Chargebee, Metronome, Orb, Provider, Stripe

from .conftest import CB_PASSWORD, CB_USER, STRIPE_SECRET

handled: list[str] = []
"""Ids of the events the apps' handlers ran for, in order."""


def _providers() -> list[Provider]:
    return [
        Stripe(STRIPE_SECRET),
        Chargebee((CB_USER, CB_PASSWORD)),
        Orb.from_env(),
        Metronome.from_env(),
    ]


hooks = AlertHooks(providers=_providers())
queued = AlertHooks(providers=_providers(), mode="queued", catch_up_every=3600)


@hooks.on("*", name="record")
@queued.on("*", name="record")
def record(event: AlertEvent) -> None:
    handled.append(event.id)
