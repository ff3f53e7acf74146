"""The ``alerthooks`` command line: the durable inbox (:mod:`~alerthooks.cli.inbox`), alert
state (:mod:`~alerthooks.cli.status`), the alert manager (:mod:`~alerthooks.cli.manage`),
signed test deliveries (:mod:`~alerthooks.cli.send`) and catching up from the providers' APIs
(:mod:`~alerthooks.cli.catchup`). Errors are one line on stderr and a non-zero exit code
(:mod:`~alerthooks.cli.core`)."""

from alerthooks.cli import catchup, inbox, manage, send, status  # noqa: F401  (register commands)
from alerthooks.cli.core import cli, main

__all__ = ["cli", "main"]
