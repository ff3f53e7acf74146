"""The example receiver that `make run` serves: Stripe, Chargebee, Orb, Metronome, Lago,
OpenMeter, Autumn and Flexprice alerts under /webhooks.

Run it with `make run`, or `uvicorn examples.app:app`.
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import (
    Autumn,
    Chargebee,
    Flexprice,
    Lago,
    Metronome,
    OpenMeter,
    Orb,
    Stripe,
)

logger = logging.getLogger("examples.app")

# Each provider's credentials from its environment (STRIPE_WEBHOOK_SECRET, …; `make run` sets
# development ones); the default store: SQLite at ./alerthooks.db (env ALERTHOOKS_STORE overrides).
hooks = AlertHooks(
    providers=[
        Stripe.from_env(),
        Chargebee.from_env(),
        Orb.from_env(),
        Metronome.from_env(),
        Lago.from_env(),
        OpenMeter.from_env(),
        Autumn.from_env(),
        Flexprice.from_env(),
    ]
)


def name_of(event: AlertEvent) -> str:
    """The alert's name, or its id where the provider names none (Orb)."""
    return event.alert_name or event.alert_id


@hooks.on("alert.triggered")
async def notify(event: AlertEvent) -> None:
    """Print every alert that fired, whichever provider sent it."""
    print(
        f"[{event.provider}] {name_of(event)!r} triggered ({event.id}): "
        f"value={event.value} threshold={event.threshold} ({event.threshold_mode}) "
        f"customer={event.customer_id} subscription={event.subscription_id}",
        flush=True,
    )


@hooks.on("alert.cleared")
def cleared(event: AlertEvent) -> None:
    """Chargebee, Orb and Metronome also say when usage is back within the limit.

    A plain ``def`` runs in a worker thread, beside the event loop's own output: the line and
    its newline go out in one write so that the two never interleave mid-line."""
    print(f"[{event.provider}] {name_of(event)!r} cleared ({event.id})\n", end="", flush=True)


async def health(request: object) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(
    routes=[Route("/health", health), Mount("/webhooks", app=hooks)],
    lifespan=hooks.lifespan,
)
