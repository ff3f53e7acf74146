"""The same receiver mounted in a FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI

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

# Queued mode: answer once the event is stored; the worker (started by the lifespan) runs handlers.
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
    ],
    mode="queued",
)


@hooks.on("alert.triggered", provider="stripe")
async def stripe_alert(event: AlertEvent) -> None:
    """Runs for Stripe alerts only."""
    print(f"stripe alert {event.alert_id} on meter {event.meter_id}: {event.value}")


app = FastAPI(lifespan=hooks.lifespan)
app.mount("/webhooks", hooks)
