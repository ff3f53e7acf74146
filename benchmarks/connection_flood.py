"""Signed deliveries to ``alerthooks serve`` (its defaults) under a reconnecting slow-header
flood, beside the same deliveries with no flood, in one run.

Each scenario starts ``alerthooks serve apps:alerthooks`` in a process whose fd limit (soft and
hard) is ``--fds``, so serve derives its connection limit from it as it would on a host with that
limit; starts ``tests/flood_client.py`` (its own process, 127.0.0.1 only, stops by itself) with
that many slow-header clients, each reconnecting as soon as the server closes it; and posts
signed Stripe alert deliveries one after another, each on a new connection, for ``--seconds``.
It reports the deliveries' success and p50/p99/max latency, the p99's ratio to the no-flood
baseline, and how many flood connections the server closed.

    .venv/bin/python benchmarks/connection_flood.py [--fds 1024] [--seconds 5] [--flood 2x]

``--flood`` takes a count, or ``Nx`` for N times the connection limit (default: ``2x``).
``--somaxconn N`` runs everything in a network namespace of its own (``unshare -n``, as root)
whose ``net.core.somaxconn`` is N, for scenarios beyond the host's (4096 by default): serve
derives its listen backlog from it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from apps import PATH, signed_alert

from alerthooks.cli.serving import backlog_for, limit_for

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(port: int, fds: int, log: Path) -> subprocess.Popen[bytes]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (fds, fds))

    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from alerthooks.cli import main; main()",
                "serve",
                "apps:alerthooks",
                "--port",
                str(port),
            ],
            cwd=HERE,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=limit,
        )


def wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited: {log.read_text()}")
        try:
            httpx.get(base + "/", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit(f"serve not ready: {log.read_text()}")


def deliver(base: str, seconds: float) -> list[tuple[int, float]]:
    answers: list[tuple[int, float]] = []
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=base, timeout=10, limits=limits) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            body, signature = signed_alert()
            headers = {"Stripe-Signature": signature, "Content-Type": "application/json"}
            started = time.monotonic()
            try:
                status = client.post(PATH, content=body, headers=headers).status_code
            except httpx.TransportError:
                status = 0
            answers.append((status, time.monotonic() - started))
            time.sleep(0.01)
    return answers


def scenario(fds: int, flood: int, seconds: float, log: Path) -> dict[str, float]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = serve(port, fds, log)
    report: dict[str, float] = {}
    try:
        wait_ready(base, server, log)
        attack = None
        if flood:
            sources = max(1, -(-flood // 8000))  # under 8,000 connections per source address
            attack = subprocess.Popen(
                [
                    *(sys.executable, "-m", "tests.flood_client", str(port), str(flood)),
                    *(str(seconds + 2), str(sources)),
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert attack.stdout is not None
            if attack.stdout.readline() != "started\n":
                raise SystemExit("the flood did not start")
        answers = deliver(base, seconds)
        if attack is not None:
            out, _ = attack.communicate(timeout=120)
            report = json.loads(out)
    finally:
        server.kill()  # nothing of it is kept: no graceful shutdown to wait for
        server.wait(30)
    latencies = sorted(s for _, s in answers)
    ok = sum(1 for status, _ in answers if status == 200)
    return {
        "deliveries": len(answers),
        "success": ok / len(answers),
        "p50": statistics.median(latencies),
        "p99": latencies[max(0, int(len(latencies) * 0.99) - 1)],
        "max": latencies[-1],
        "closed": report.get("closed", 0),
        "peak": report.get("peak", 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fds", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--flood", action="append", default=[])
    parser.add_argument("--somaxconn", type=int, default=0)
    args = parser.parse_args()
    if args.somaxconn and os.environ.get("ALERTHOOKS_FLOOD_NETNS") != "1":
        if shutil.which("unshare") is None:
            raise SystemExit("--somaxconn needs unshare (util-linux) and root")
        argv = " ".join(f"'{a}'" for a in [sys.executable, *sys.argv])
        script = (
            f"ip link set lo up && sysctl -qw net.core.somaxconn={args.somaxconn}"
            f" && ALERTHOOKS_FLOOD_NETNS=1 exec {argv}"
        )
        raise SystemExit(subprocess.call(["unshare", "-n", "sh", "-c", script]))
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    limit = limit_for(args.fds)
    floods = []
    for text in args.flood or ["2x"]:
        floods.append(int(float(text[:-1]) * limit) if text.endswith("x") else int(text))
    print(
        f"fd limit {args.fds}: limit-concurrency {limit}, backlog {backlog_for(args.fds)};"
        f" {args.seconds:g} s of deliveries per scenario"
    )
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"alerthooks-flood-{os.getpid()}.log"
    results = [("no flood", scenario(args.fds, 0, args.seconds, log))]
    for count in floods:
        results.append((f"flood {count}", scenario(args.fds, count, args.seconds, log)))
    base_p99 = results[0][1]["p99"]
    print(
        f"  {'scenario':<14} {'sent':>5} {'ok':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}"
        f" {'p99 vs none':>11} {'closed':>7}"
    )
    for label, r in results:
        print(
            f"  {label:<14} {r['deliveries']:>5.0f} {r['success']:>7.1%} {r['p50'] * 1000:>7.1f}"
            f" {r['p99'] * 1000:>7.1f} {r['max'] * 1000:>7.1f} {r['p99'] / base_p99:>10.1f}x"
            f" {r['closed']:>7.0f}"
        )
    failed = [label for label, r in results if r["success"] < 0.99]
    if failed:
        raise SystemExit(f"under 99 % success: {', '.join(failed)}")


if __name__ == "__main__":
    main()
