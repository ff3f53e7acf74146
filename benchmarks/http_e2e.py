"""End to end over HTTP: the example app served by uvicorn, the floor app beside it.

Apps: ``floor`` (see ``apps.py``); ``alerthooks`` (memory store, a counting handler, mounted at
/webhooks, printing nothing); ``example memory`` and ``example sqlite``: ``examples/app.py``
as ``make run`` serves it (its handler prints a line per alert), with either store; and
``example sqlite xN`` (with ``--workers N``, N > 1): the SQLite example served by ``uvicorn
--workers N``, N receiver processes on one SQLite file, reported against the one-worker run.

Each app runs in its own uvicorn process on a free loopback port; a load generator in another
process keeps 32 keep-alive connections busy with unique, signed Stripe alert deliveries (built
before the clock starts) and reports requests/s and p50/p99 latency. Rounds alternate between
the apps; medians are reported. Every run checks that every answer was 200 and that every
delivery reached a handler (the example prints one line per alert; the floor app counts).

    .venv/bin/python benchmarks/http_e2e.py [--requests 10000] [--rounds 3] [--connections 32]
        [--workers 2]

(Not ``http.py``: run as a script, that name would shadow the standard library's ``http``.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from apps import PATH, SECRET, signed_alert

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


# -- the load generator (runs in its own process) ---------------------------------------------


def _requests(count: int, port: int) -> list[bytes]:
    built = []
    for _ in range(count):
        body, signature = signed_alert()
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            "User-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)\r\n"
            "Content-Type: application/json; charset=utf-8\r\n"
            f"Stripe-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        built.append(head.encode() + body)
    return built


async def _load(port: int, requests: list[bytes], connections: int) -> dict[str, Any]:
    pending = iter(requests)
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            for request in pending:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split(" ", 2)[1])
                length = next(
                    int(line.split(":", 1)[1])
                    for line in lines[1:]
                    if line.lower().startswith("content-length:")
                )
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "count": len(latencies),
        "elapsed": elapsed,
        "statuses": statuses,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def client_main(port: int, count: int, connections: int, timeout: float) -> None:
    """Build ``count`` signed deliveries, send them, print the result as one JSON line."""
    requests = _requests(count, port)
    result = asyncio.run(asyncio.wait_for(_load(port, requests, connections), timeout))
    print(json.dumps(result))


# -- the servers and the run ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """One app in its own uvicorn process."""

    name: str
    target: str
    env: dict[str, str] = field(default_factory=dict)
    app_dir: str = "."
    workers: int = 1
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    output: IO[bytes] | None = None
    sent: int = 0

    def start(self, directory: str) -> None:
        self.port = _free_port()
        self.output = open(Path(directory) / f"{self.name.replace(' ', '_')}.out", "w+b")  # noqa: SIM115
        env = {**os.environ, "STRIPE_WEBHOOK_SECRET": SECRET, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", self.target, "--app-dir", self.app_dir),
                *("--host", HOST, "--port", str(self.port)),
                *("--log-level", "warning", "--no-access-log"),
                *(("--workers", str(self.workers)) if self.workers > 1 else ()),
            ],
            cwd=ROOT,
            env=env,
            stdout=self.output,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name}: uvicorn exited:\n{self.log()}")
            try:
                socket.create_connection((HOST, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"{self.name}: uvicorn did not start in 30 s:\n{self.log()}")

    def cpu_seconds(self) -> float:
        """CPU time the server's processes (uvicorn and its workers) have used so far (Linux
        /proc; 0 elsewhere)."""
        assert self.process is not None
        pids = [self.process.pid]
        try:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            pids += [int(pid) for pid in children.read_text().split()]
        except OSError:
            pass
        total = 0.0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def log(self) -> str:
        assert self.output is not None
        self.output.flush()
        return Path(self.output.name).read_text(errors="replace")[-2000:]

    def handled(self) -> int:
        """Alerts that reached a handler: the example prints a line, the floor app counts."""
        if self.target.startswith("apps:"):
            return int(httpx.get(f"http://{HOST}:{self.port}/count", timeout=5).text)
        return self.log_lines("triggered")

    def log_lines(self, word: str) -> int:
        assert self.output is not None
        self.output.flush()
        with open(self.output.name, "rb") as log:
            # Occurrences, not lines: several worker processes write to one file.
            return log.read().count(word.encode())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.output is not None:
            self.output.close()


def _drive(server: Server, count: int, connections: int, timeout: float) -> dict[str, Any]:
    cpu = server.cpu_seconds()
    done = subprocess.run(
        [
            *(sys.executable, __file__, "client", "--port", str(server.port)),
            *("--requests", str(count), "--connections", str(connections)),
            *("--timeout", str(timeout)),
        ],
        capture_output=True,
        text=True,
        timeout=timeout + 120,
    )
    if done.returncode != 0:
        raise SystemExit(f"{server.name}: load generator failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    result["server_cpu"] = server.cpu_seconds() - cpu
    statuses = {int(k): v for k, v in result["statuses"].items()}
    if result["count"] != count or set(statuses) != {200}:
        raise SystemExit(f"{server.name}: answers were not all 200: {statuses}\n{server.log()}")
    server.sent += count
    handled = server.handled()
    if handled != server.sent:
        raise SystemExit(f"{server.name}: {handled} alerts handled of {server.sent} sent")
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line entry: the comparison, or (``client``) one load generator run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", choices=["compare", "client"], default="compare")
    parser.add_argument("--requests", type=int, default=10000, help="requests per app per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per run")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="uvicorn worker processes for 'example sqlite xN' (1: leave that server out)",
    )
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mode == "client":
        client_main(args.port, args.requests, args.connections, args.timeout)
        return 0

    with tempfile.TemporaryDirectory(prefix="alerthooks-http-") as directory:
        servers = [
            Server("floor", "apps:floor", app_dir=str(ROOT / "benchmarks")),
            Server("alerthooks", "apps:alerthooks", app_dir=str(ROOT / "benchmarks")),
            Server("example memory", "examples.app:app", {"ALERTHOOKS_STORE": "memory://"}),
            Server(
                "example sqlite",
                "examples.app:app",
                {"ALERTHOOKS_STORE": f"sqlite:///{directory}/alerthooks.db"},
            ),
        ]
        if args.workers > 1:
            servers.append(
                Server(
                    f"example sqlite x{args.workers}",
                    "examples.app:app",
                    {"ALERTHOOKS_STORE": f"sqlite:///{directory}/workers.db"},
                    workers=args.workers,
                )
            )
        results: dict[str, list[dict[str, Any]]] = {s.name: [] for s in servers}
        try:
            for server in servers:
                server.start(directory)
                _drive(server, min(500, args.requests), args.connections, args.timeout)  # warm-up
            for r in range(args.rounds):
                order = servers if r % 2 == 0 else servers[::-1]
                for server in order:
                    results[server.name].append(
                        _drive(server, args.requests, args.connections, args.timeout)
                    )
        finally:
            for server in servers:
                server.stop()

    print(
        f"HTTP end to end, uvicorn on {HOST}: {args.connections} connections, "
        f"{args.requests} requests x {args.rounds} rounds alternated, medians; "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {_server_stack()}"
    )
    rates: dict[str, float] = {}
    per_cpu: dict[str, float] = {}
    for name, runs in results.items():
        rates[name] = statistics.median(run["count"] / run["elapsed"] for run in runs)
        p50 = statistics.median(run["p50_ms"] for run in runs)
        p99 = statistics.median(run["p99_ms"] for run in runs)
        per_cpu[name] = statistics.median(
            run["count"] / max(run["server_cpu"], 1e-9) for run in runs
        )
        print(
            f"  {name:<15} {rates[name]:>8,.0f} requests/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms"
        )
    floor = rates["floor"]
    print("ratios vs floor: " + " | ".join(f"{n} {r / floor:.2f}" for n, r in rates.items()))
    scaled = f"example sqlite x{args.workers}"
    if scaled in rates:
        print(
            f"{scaled} / example sqlite (one worker): {rates[scaled] / rates['example sqlite']:.2f}"
        )
    if per_cpu["floor"] > 0:
        print(
            "requests per server CPU-second: "
            + " | ".join(f"{n} {c:,.0f} ({c / per_cpu['floor']:.2f})" for n, c in per_cpu.items())
        )
    return 0


def _server_stack() -> str:
    try:
        import httptools  # noqa: F401

        http = "httptools"
    except ImportError:
        http = "h11"
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    return f"uvicorn with {http} and {loop}"


if __name__ == "__main__":
    sys.exit(main())
