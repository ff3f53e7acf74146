"""The console's "last 24 hours" chart: deliveries per hour by outcome, as numbers the template
draws into a small inline SVG (server-rendered: no script, nothing from elsewhere, so the
strict Content-Security-Policy stays)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from alerthooks.store import Rejection, StoredEvent

HOURS = 24
OUTCOMES: tuple[str, ...] = ("accepted", "failed", "unparsed", "ignored", "rejected")
"""The outcomes the chart stacks, bottom up: handlers ran or will (``accepted``), one failed or
is dead (``failed``), an alert that could not be read (``unparsed``), not an alert
(``ignored``), refused (``rejected``, from the recorded rejections)."""
COLOURS = {
    "accepted": "#067647",
    "failed": "#b42318",
    "unparsed": "#475467",
    "ignored": "#98a2b3",
    "rejected": "#dc6803",
}
WIDTH, HEIGHT, BAR_GAP = 720, 96, 2


@dataclass
class Bar:
    """One hour: its start and the stacked rectangles (outcome, y, height) drawn for it."""

    hour: datetime
    counts: dict[str, int]
    x: float = 0.0
    rects: list[tuple[str, float, float]] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Deliveries in this hour."""
        return sum(self.counts.values())

    @property
    def title(self) -> str:
        """The tooltip: the hour and its counts."""
        parts = ", ".join(f"{n} {o}" for o, n in self.counts.items() if n)
        return f"{self.hour:%H}:00 UTC: {parts or 'nothing'}"


@dataclass
class Chart:
    """What the template draws: the bars, their width, the tallest total, and the totals."""

    bars: list[Bar]
    bar_width: float
    peak: int
    totals: dict[str, int]
    truncated: bool
    width: int = WIDTH
    height: int = HEIGHT
    colours: dict[str, str] = field(default_factory=lambda: dict(COLOURS))


def outcome_of(event: StoredEvent) -> str:
    """Which outcome an event stored counts as in the chart."""
    statuses = {o.status for o in event.outcomes}
    if "unparsed" in statuses:
        return "unparsed"
    if statuses & {"failed", "dead"}:
        return "failed"
    if not statuses:
        return "ignored"
    return "accepted"


def chart(
    events: Iterable[StoredEvent],
    rejections: Iterable[Rejection],
    *,
    now: datetime | None = None,
    truncated: bool = False,
) -> Chart:
    """The chart of the 24 hours up to ``now``, from the events stored and the rejections
    recorded in them (``truncated``: the store held more than was read)."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    last = now.replace(minute=0, second=0, microsecond=0)
    first = last - timedelta(hours=HOURS - 1)
    bars = [Bar(first + timedelta(hours=i), dict.fromkeys(OUTCOMES, 0)) for i in range(HOURS)]

    def count(at: datetime, outcome: str) -> None:
        index = int((at.astimezone(timezone.utc) - first) // timedelta(hours=1))
        if 0 <= index < HOURS:
            bars[index].counts[outcome] += 1

    for event in events:
        count(event.received_at, outcome_of(event))
    for rejection in rejections:
        count(rejection.received_at, "rejected")
    return _laid_out(bars, truncated)


def _laid_out(bars: Sequence[Bar], truncated: bool) -> Chart:
    peak = max((bar.total for bar in bars), default=0)
    width = WIDTH / HOURS
    for i, bar in enumerate(bars):
        bar.x = i * width
        y = float(HEIGHT)
        for outcome in OUTCOMES:
            n = bar.counts[outcome]
            if n and peak:
                h = max(1.0, HEIGHT * n / peak)
                y -= h
                bar.rects.append((outcome, round(y, 2), round(h, 2)))
    totals = {o: sum(bar.counts[o] for bar in bars) for o in OUTCOMES}
    return Chart(list(bars), round(width - BAR_GAP, 2), peak, totals, truncated)
