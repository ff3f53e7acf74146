"""A module that fails while importing, for the CLI's error path."""

from alerthooks import AlertHooks

hooks = AlertHooks(store="redis://localhost")
