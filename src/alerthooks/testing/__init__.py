"""Test kit: realistic payload samples, provider signing, clients that deliver signed events to
an :class:`~alerthooks.AlertHooks` (or an app mounting one) without the providers, and fakes of
the providers' APIs.

One module per provider holds its samples, builders and fake API (:mod:`.stripe`,
:mod:`.chargebee`, :mod:`.orb`, :mod:`.metronome`, :mod:`.lago`, :mod:`.openmeter`,
:mod:`.autumn`, :mod:`.flexprice`); :mod:`.samples` is the registry of named
samples, :mod:`.fakeserver` the generic fake API they build on, :mod:`.client` the clients
(``deliver`` works for any provider).
"""

from alerthooks.testing.autumn import autumn_event
from alerthooks.testing.chargebee import (
    FakeChargebee,
    chargebee_alert_status_changed,
    chargebee_subscription_created,
)
from alerthooks.testing.client import AlertHooksClient, SyncAlertHooksClient, find_hooks
from alerthooks.testing.fakeserver import FakeAPI, Fault
from alerthooks.testing.flexprice import flexprice_event
from alerthooks.testing.lago import FakeLago, lago_event
from alerthooks.testing.metronome import FakeMetronome, metronome_event
from alerthooks.testing.openmeter import FakeOpenMeter, openmeter_event
from alerthooks.testing.orb import FakeOrb, orb_event
from alerthooks.testing.samples import (
    build_sample,
    default_sample,
    load_sample,
    register_sample,
    register_samples,
    sample_names,
)
from alerthooks.testing.signing import chargebee_auth_headers, stripe_signature_header
from alerthooks.testing.stripe import (
    FakeStripe,
    stripe_alert_recovered,
    stripe_alert_triggered,
    stripe_customer_created,
    stripe_thin_event,
)

__all__ = [
    "AlertHooksClient",
    "FakeAPI",
    "FakeChargebee",
    "FakeLago",
    "FakeMetronome",
    "FakeOpenMeter",
    "FakeOrb",
    "FakeStripe",
    "Fault",
    "SyncAlertHooksClient",
    "autumn_event",
    "build_sample",
    "chargebee_alert_status_changed",
    "chargebee_auth_headers",
    "chargebee_subscription_created",
    "default_sample",
    "find_hooks",
    "flexprice_event",
    "lago_event",
    "load_sample",
    "metronome_event",
    "openmeter_event",
    "orb_event",
    "register_sample",
    "register_samples",
    "sample_names",
    "stripe_alert_recovered",
    "stripe_alert_triggered",
    "stripe_customer_created",
    "stripe_signature_header",
    "stripe_thin_event",
]
