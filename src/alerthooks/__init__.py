"""alerthooks: verified Stripe and Chargebee usage-alert webhooks, one event model, decorated
handlers, and alert definitions synced from a reviewed file."""

from alerthooks.events import AlertEvent, AlertState
from alerthooks.hooks import AlertHooks

__all__ = ["AlertEvent", "AlertHooks", "AlertState"]
__version__ = "0.1.0"
