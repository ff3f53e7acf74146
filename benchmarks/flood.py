"""Verified throughput during a flood of bad signatures (rejections recorded, rate-limited).

In-process, as ``receiver.py`` measures (ASGI calls, no HTTP server), alerthooks on a SQLite
store receives unique, correctly signed Stripe alert deliveries with ``--concurrency`` in
flight. Variants, measured in one run with rounds alternated, each reported against the first:

- ``verified only``: the baseline, nothing else arriving.
- ``flood, recorded``: meanwhile ``--flood`` forged deliveries per verified one (a wrong
  secret) arrive from other tasks; every refusal goes through the rejection recorder (rate
  limit: 10 rows/s, bursts of 100, the rest counted), as in production.
- ``flood, not recorded``: the same flood with the recorder's rate at 0: the cost of
  verifying and refusing alone, so the difference to ``flood, recorded`` is what recording
  costs.

Each round checks that every verified delivery was answered 200 and handled, every forged one
400, and that rows written + rows dropped = forged deliveries (nothing unaccounted).

    .venv/bin/python benchmarks/flood.py [--events 500] [--flood 4] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass

from receiver import Prepared, deliver, prepare

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import Stripe
from alerthooks.testing import stripe_alert_triggered, stripe_signature_header

SECRET = "whsec_benchmark_secret_0123456789"


@dataclass
class Variant:
    name: str
    flood: bool
    record: bool


VARIANTS = [
    Variant("verified only", flood=False, record=True),
    Variant("flood, recorded", flood=True, record=True),
    Variant("flood, not recorded", flood=True, record=False),
]


def forged(count: int) -> list[Prepared]:
    """``count`` deliveries signed with the wrong secret (one body, as an attacker replays)."""
    raw = json.dumps(stripe_alert_triggered(id="evt_forged")).encode()
    header = stripe_signature_header(raw, "whsec_not_the_secret").encode()
    base = prepare(1, "/stripe")[0][0]
    scope = {
        **base,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
            (b"stripe-signature", header),
        ],
        "client": ("198.51.100.66", 40000),
    }
    return [(scope, raw)] * count


async def round_of(
    variant: Variant, directory: str, events: int, flood: int, concurrency: int, index: int
) -> tuple[float, int, int]:
    """One round: verified deliveries/s, rejection rows written and dropped."""
    hooks = AlertHooks(providers=[Stripe([SECRET])], store=f"sqlite:///{directory}/{index}.db")
    handled = [0]

    @hooks.on("*", name="count")
    async def count(event: AlertEvent) -> None:
        handled[0] += 1

    recorder = hooks._receiver.recorder
    if not variant.record:
        recorder.rate, recorder.burst = 0.0, 0
        recorder._tokens = 0.0
    await hooks.startup()
    good = prepare(events, "/stripe")
    bad = forged(events * flood) if variant.flood else []
    statuses: list[int] = []
    refused: list[int] = []
    pending = iter(good)
    forged_left = iter(bad)

    async def verified() -> None:
        for scope, body in pending:
            statuses.append(await deliver(hooks, scope, body))

    async def attacker() -> None:
        for scope, body in forged_left:
            refused.append(await deliver(hooks, scope, body))

    gc.collect()
    started = time.perf_counter()
    senders = [asyncio.ensure_future(verified()) for _ in range(concurrency)]
    attackers = [asyncio.ensure_future(attacker()) for _ in range(concurrency)] if bad else []
    await asyncio.gather(*senders)
    elapsed = time.perf_counter() - started
    await asyncio.gather(*attackers)
    await recorder.flush()
    if statuses != [200] * events or handled[0] != events:
        raise SystemExit(
            f"{variant.name}: verified deliveries not all accepted and handled: "
            f"{sorted(set(statuses))}, {handled[0]} of {events} handled"
        )
    if refused != [400] * len(bad):
        raise SystemExit(f"{variant.name}: forged deliveries not all refused")
    rows = list(await hooks.store.rejections(limit=100_000))
    dropped = sum(r.dropped for r in rows) + recorder.dropped
    if len(rows) + dropped != len(bad):
        raise SystemExit(f"{variant.name}: {len(rows)} rows + {dropped} dropped != {len(bad)}")
    await hooks.shutdown()
    return events / elapsed, len(rows), dropped


async def run(events: int, flood: int, rounds: int, concurrency: int) -> None:
    results: dict[str, list[float]] = {v.name: [] for v in VARIANTS}
    ratios: dict[str, list[float]] = {v.name: [] for v in VARIANTS[1:]}
    written: dict[str, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory() as directory:
        index = 0
        for _ in range(rounds):
            this_round: dict[str, float] = {}
            for variant in VARIANTS:
                index += 1
                rate, rows, dropped = await round_of(
                    variant, directory, events, flood, concurrency, index
                )
                results[variant.name].append(rate)
                this_round[variant.name] = rate
                written[variant.name] = (rows, dropped)
            for variant in VARIANTS[1:]:
                ratios[variant.name].append(this_round[variant.name] / this_round[VARIANTS[0].name])
    print(
        f"{events} verified Stripe deliveries per round, {concurrency} in flight, SQLite store; "
        f"flood: {flood} forged per verified one; median of {rounds} rounds"
    )
    for variant in VARIANTS:
        rows, dropped = written[variant.name]
        extra = f"  (last round: {rows} rows written, {dropped} dropped)" if variant.flood else ""
        rate = statistics.median(results[variant.name])
        print(f"  {variant.name:<22} {rate:8.0f} verified/s{extra}")
    print("ratios vs verified only (median of per-round ratios):")
    for name, values in ratios.items():
        print(f"  {name} / verified only: {statistics.median(values):.2f}")


def main(argv: list[str] | None = None) -> int:
    logging.getLogger("alerthooks").setLevel(logging.ERROR)  # the refusals' warning lines
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--flood", type=int, default=4, help="forged deliveries per verified one")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    asyncio.run(run(args.events, args.flood, args.rounds, args.concurrency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
