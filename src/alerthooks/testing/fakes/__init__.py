"""Stateful fakes of the providers' alert and webhook-endpoint APIs, served over real HTTP on
127.0.0.1 (a free port) in a background thread.

They behave like the real APIs for what :mod:`alerthooks.manager` uses: form-encoded (Stripe,
Chargebee) or JSON (Orb, Metronome) requests, each API's paging, idempotency keys replayed,
Stripe's 25 alerts per (meter, customer), Orb's one alert per identity, Metronome's 409 on a used
uniqueness key, Lago's one code per subscription or wallet, OpenMeter's rules and events. On
top they count calls per endpoint, add latency to every call, and inject faults (429, 500,
connection reset, timeout), before or after the request takes effect::

    with FakeStripe() as stripe_api, FakeChargebee() as chargebee_api:
        env = {**stripe_api.env(), **chargebee_api.env()}   # point the manager at the fakes
        stripe_api.inject("reset", method="POST", path="/v1/billing/alerts", after=True)
        ...
        assert stripe_api.calls["POST /v1/billing/alerts"] == 3

Each fake lives beside its provider's samples (:mod:`alerthooks.testing.stripe`,
:mod:`alerthooks.testing.chargebee`, :mod:`alerthooks.testing.orb`,
:mod:`alerthooks.testing.metronome`) on the generic :mod:`alerthooks.testing.fakeserver`; this
module gathers them. ``python -m alerthooks.testing.fakes`` serves every fake (see
:func:`~alerthooks.testing.fakeserver.main`).
"""

from __future__ import annotations

from alerthooks.testing.chargebee import FakeChargebee
from alerthooks.testing.fakeserver import FakeAPI, Fault, FaultKind, main
from alerthooks.testing.lago import FakeLago
from alerthooks.testing.metronome import FakeMetronome
from alerthooks.testing.openmeter import FakeOpenMeter
from alerthooks.testing.orb import FakeOrb
from alerthooks.testing.stripe import FakeStripe

_FakeAPI = FakeAPI  # the former name of the base class

__all__ = [
    "FakeAPI",
    "FakeChargebee",
    "FakeLago",
    "FakeMetronome",
    "FakeOpenMeter",
    "FakeOrb",
    "FakeStripe",
    "Fault",
    "FaultKind",
    "main",
]
