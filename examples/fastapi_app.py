"""The same receiver mounted in a FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import Chargebee, Metronome, Orb, Stripe

# Queued mode: answer once the event is stored; the worker (started by the lifespan) runs handlers.
hooks = AlertHooks(
    providers=[Stripe.from_env(), Chargebee.from_env(), Orb.from_env(), Metronome.from_env()],
    mode="queued",
)


@hooks.on("alert.triggered", provider="stripe")
async def stripe_alert(event: AlertEvent) -> None:
    """Runs for Stripe alerts only."""
    print(f"stripe alert {event.alert_id} on meter {event.meter_id}: {event.value}")


app = FastAPI(lifespan=hooks.lifespan)
app.mount("/webhooks", hooks)
