"""Signature checks per delivery: the shared HMAC module against the Stripe SDK's own verifier.

Prints microseconds per verification and the ratio to the SDK's ``verify_header``, measured in
the same run (min of 7 rounds of 20,000). ``python benchmarks/signing.py``
"""

from __future__ import annotations

import argparse
import json
import timeit

import stripe

from alerthooks.providers.metronome import Metronome
from alerthooks.providers.orb import Orb
from alerthooks.providers.standard_webhooks import StandardWebhooksProvider
from alerthooks.providers.stripe import Stripe

BODY = json.dumps({"id": "evt_1", "type": "billing.alert.triggered", "data": {"x": "y" * 900}})


class _Standard(StandardWebhooksProvider):
    name = "standard"


def per_call(call: object, number: int, rounds: int) -> float:
    """Microseconds per call, the minimum over the rounds."""
    return min(timeit.repeat(call, number=number, repeat=rounds)) / number * 1e6  # type: ignore[arg-type]


def main() -> None:
    """Measure each provider's verify and the SDK's, and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=20_000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    body = BODY.encode()
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    stripe_provider = Stripe(secret)
    header = stripe_provider.sign(body)["stripe-signature"]
    sdk = stripe.WebhookSignature.verify_header
    baseline = per_call(lambda: sdk(BODY, header, secret, 300), args.number, args.rounds)
    print(f"{'stripe SDK verify_header (baseline)':40} {baseline:6.2f} us  1.00x")
    for name, provider in (
        ("stripe (shared HMAC module)", stripe_provider),
        ("orb", Orb("orb-secret")),
        ("metronome", Metronome("metronome-secret")),
        ("standard webhooks", _Standard(secret)),
    ):
        headers = {k.lower(): v for k, v in provider.sign(body).items()}
        cost = per_call(
            lambda p=provider, h=headers: p.verify(body, h),  # type: ignore[misc]
            args.number,
            args.rounds,
        )
        print(f"{name:40} {cost:6.2f} us  {cost / baseline:.2f}x")


if __name__ == "__main__":
    main()
