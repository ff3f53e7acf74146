"""The reference apps the benchmarks put alerthooks beside, and signed Stripe alert deliveries.

- ``floor_app``: a Starlette route doing only ``stripe.WebhookSignature.verify_header`` +
  ``json.loads`` + a type check: the irreducible work of receiving a Stripe alert.
- ``construct_event_app``: the same route with ``stripe.Webhook.construct_event``, as Stripe's
  docs show it.
- ``floor``: ``floor_app`` for ``uvicorn --app-dir benchmarks apps:floor``, with ``GET /count``
  answering how many alerts it accepted.
- ``alerthooks``: AlertHooks with the memory store and one counting handler, mounted at
  ``/webhooks`` like the example but printing nothing; ``GET /count`` likewise.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import stripe
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import Chargebee, Stripe
from alerthooks.testing import stripe_alert_triggered, stripe_signature_header

SECRET = "whsec_benchmark_secret_0123456789"
PATH = "/webhooks/stripe"
ALERT_TYPE = "billing.alert.triggered"
ACCEPTED = b'{"status":"accepted"}'

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def floor_app(handled: list[int], *extra: Route) -> Starlette:
    """The irreducible work in a Starlette route: check the HMAC, parse, check the type."""

    async def stripe_webhook(request: Request) -> Response:
        body = await request.body()
        try:
            stripe.WebhookSignature.verify_header(
                body.decode(), request.headers.get("stripe-signature"), SECRET, 300
            )
            payload = json.loads(body)
        except (ValueError, stripe.SignatureVerificationError):
            return Response(status_code=400)
        if isinstance(payload, dict) and payload.get("type") == ALERT_TYPE:
            handled[0] += 1
        return Response(ACCEPTED, media_type="application/json")

    return Starlette(routes=[Route(PATH, stripe_webhook, methods=["POST"]), *extra])


def construct_event_app(handled: list[int]) -> Starlette:
    """The route Stripe's docs show: ``stripe.Webhook.construct_event``."""

    async def stripe_webhook(request: Request) -> Response:
        payload = await request.body()
        sig_header = request.headers.get("stripe-signature")
        try:
            event = stripe.Webhook.construct_event(payload, sig_header, SECRET)
        except ValueError:
            return Response(status_code=400)
        except stripe.SignatureVerificationError:
            return Response(status_code=400)
        if event["type"] == ALERT_TYPE:
            handled[0] += 1
        return Response(ACCEPTED, media_type="application/json")

    return Starlette(routes=[Route(PATH, stripe_webhook, methods=["POST"])])


def signed_alert(secret: str = SECRET) -> tuple[bytes, str]:
    """A unique ``billing.alert.triggered`` body, as Stripe formats it, and its signature."""
    body = json.dumps(stripe_alert_triggered(), indent=2).encode()
    return body, stripe_signature_header(body, secret)


_FLOOR_HANDLED = [0]


async def _count(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(_FLOOR_HANDLED[0]))


floor = floor_app(_FLOOR_HANDLED, Route("/count", _count))


_HOOKS_HANDLED = [0]
_hooks = AlertHooks(providers=[Stripe(SECRET), Chargebee(("bench", "bench"))], store="memory://")


@_hooks.on("alert.triggered")
async def _count_alert(event: AlertEvent) -> None:
    _HOOKS_HANDLED[0] += 1


async def _hooks_count(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(_HOOKS_HANDLED[0]))


alerthooks = Starlette(
    routes=[Route("/count", _hooks_count), Mount("/webhooks", app=_hooks)],
    lifespan=_hooks.lifespan,
)
