"""alerthooks: verified Stripe and Chargebee usage-alert webhooks, one event model, decorated
handlers, and alert definitions synced from a reviewed file."""

from alerthooks._version import __version__ as __version__
from alerthooks.dispatch import Dispatcher
from alerthooks.events import AlertEvent, AlertState
from alerthooks.hooks import AlertHooks

__all__ = ["AlertEvent", "AlertHooks", "AlertState", "Dispatcher"]
