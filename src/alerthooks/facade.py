"""What the console and the health app need of an :class:`~alerthooks.AlertHooks`: a
:class:`Facade` protocol, so they depend on these few members rather than on the facade's module
(which builds them, and so would import them back)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol

from alerthooks.events import AlertState
from alerthooks.providers import Provider
from alerthooks.store import Store
from alerthooks.worker import Worker


class Facade(Protocol):
    """The members of :class:`~alerthooks.AlertHooks` the console and health app use."""

    @property
    def providers(self) -> Mapping[str, Provider]:
        """The providers served, by name."""

    @property
    def store(self) -> Store:
        """Where deliveries and outcomes are recorded."""

    @property
    def mode(self) -> Literal["inline", "queued"]:
        """``"inline"`` or ``"queued"``."""

    @property
    def run_worker(self) -> bool:
        """Whether this process runs the queued-mode worker."""

    @property
    def worker(self) -> Worker:
        """The queued-mode worker of this process."""

    async def read_again(self, provider: str, event_id: str) -> tuple[str, ...] | str:
        """Read a stored ``unparsed`` event again (see ``AlertHooks.read_again``)."""

    async def drain(self, timeout: float = 30.0) -> None:
        """Run queued work now until none is due."""

    async def alert_states(
        self, *, in_alarm: bool | None = None, provider: str | None = None
    ) -> list[AlertState]:
        """Where each alert stands for each subject."""
