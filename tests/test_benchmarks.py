"""Each benchmark script runs with tiny sizes and checks its own answers. Nothing is timed here;
the figures are in docs/performance.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .stores import POSTGRES_URL

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_signing_benchmark_verifies_every_scheme_beside_the_sdk() -> None:
    out = _run("signing.py", "--number", "5", "--rounds", "1")
    for name in ("stripe SDK verify_header (baseline)", "stripe (shared", "orb", "standard"):
        assert name in out


def test_lago_jwt_benchmark_verifies_beside_the_rsa_floor() -> None:
    out = _run("lago_jwt.py", "--number", "3", "--rounds", "1")
    for name in ("verify alone (floor)", "Lago.verify jwt", "PyJWT", "Lago.verify hmac"):
        assert name in out


def test_receiver_benchmark_runs_every_variant_and_checks_answers() -> None:
    out = _run(
        "receiver.py", "--events", "20", "--rounds", "2", "--concurrency", "4", "--postgres", ""
    )
    for variant in ("floor", "construct_event", "memory", "memory mounted", "sqlite", "sqlite x4"):
        assert f"  {variant} " in out
    assert "ratios vs floor (median of per-round ratios):" in out


def test_receiver_benchmark_puts_postgres_beside_sqlite_with_its_ratio() -> None:
    if not POSTGRES_URL:
        pytest.skip("ALERTHOOKS_TEST_POSTGRES_URL is not set")
    out = _run(
        *("receiver.py", "--events", "20", "--rounds", "2", "--concurrency", "4"),
        *("--only", "sqlite x4,postgres x4", "--postgres", POSTGRES_URL),
    )
    for variant in ("floor", "sqlite x4", "postgres x4"):
        assert f"  {variant} " in out
    assert "target postgres x4 >= 1.0 x sqlite x4: " in out
    assert "target postgres x4 >= 0.4 x floor per CPU-second: " in out


def test_receiver_benchmark_skips_an_unreachable_postgres_in_one_line() -> None:
    out = _run(
        *("receiver.py", "--events", "10", "--rounds", "1", "--only", "postgres x32"),
        *("--postgres", "postgresql://postgres@127.0.0.1:9/none"),
    )
    assert "postgres: " in out and "; skipped" in out
    assert "  postgres x32 " not in out


def test_http_benchmark_serves_every_app_and_checks_answers() -> None:
    out = _run(
        *("http_e2e.py", "--requests", "40", "--rounds", "1", "--connections", "4"),
        *("--workers", "2"),
    )
    for app in ("floor", "alerthooks", "example memory", "example sqlite", "example sqlite x2"):
        assert f"  {app} " in out
    assert "ratios vs floor:" in out
    assert "example sqlite x2 / example sqlite (one worker): " in out


def test_sync_benchmark_makes_the_minimum_calls() -> None:
    out = _run("sync.py", "--alerts", "120", "--latency", "0.001")
    assert out.count("calls ") == 4
    assert "ABOVE MINIMUM" not in out


def test_claim_benchmark_claims_from_every_backlog_size() -> None:
    out = _run("claim.py", "--pending", "30,60", "--claims", "3", "--limit", "5")
    assert "  sqlite        30 pending: " in out and "  sqlite        60 pending: " in out
    assert "ratio 60 / 30 pending:" in out


def test_connection_flood_benchmark_measures_deliveries_beside_a_no_flood_baseline() -> None:
    out = _run("connection_flood.py", "--fds", "256", "--seconds", "1")
    assert "fd limit 256: limit-concurrency 64, backlog 64" in out
    assert "  no flood " in out and "  flood 128 " in out


def test_flood_benchmark_checks_every_answer_and_counts_every_rejection() -> None:
    out = _run("flood.py", "--events", "20", "--flood", "2", "--rounds", "1", "--concurrency", "4")
    for variant in ("verified only", "flood, recorded", "flood, not recorded"):
        assert f"  {variant} " in out
    assert "flood, recorded / verified only: " in out


def test_drain_benchmark_drains_every_store_and_handler_kind() -> None:
    out = _run(
        *("drain.py", "--events", "40", "--pending", "30,60", "--claims", "2"),
        *("--postgres", POSTGRES_URL or ""),
    )
    for kind in ("async", "sync"):
        assert f"  sqlite   {kind} " in out
        assert (f"  postgres {kind} " in out) == bool(POSTGRES_URL)
    assert "x bound" in out and "ratio 60 / 30:" in out


def test_replicas_benchmark_serves_each_count_and_checks_answers() -> None:
    out = _run(
        *("replicas.py", "--requests", "30", "--rounds", "1", "--connections", "4"),
        *("--warmup", "0", "--sqlite-counts", "1,2", "--postgres", ""),
    )
    assert "  sqlite x1 " in out
    assert "  sqlite x2 " in out and "scaling x2 / x1: " in out


def test_catchup_benchmark_catches_up_every_event_and_compares() -> None:
    out = _run("catchup.py", "--events", "120", "--rounds", "1", "--postgres", "")
    assert "  sqlite   ingest " in out and "catch-up " in out and "ratio " in out
