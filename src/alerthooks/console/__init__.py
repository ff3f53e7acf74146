"""The operator's console: recent events, one event's payload and outcomes, replays.

``hooks.console(auth=("admin", "secret"))`` builds it (see :meth:`AlertHooks.console`); the
pages are Jinja2 templates shipped with the package, server-rendered, with no script and no
asset from elsewhere.
"""

from alerthooks.console.app import IN_FLIGHT, REPLAYABLE, STATUSES, console_app

__all__ = ["IN_FLIGHT", "REPLAYABLE", "STATUSES", "console_app"]
