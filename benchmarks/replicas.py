"""Replicas add up: the example served by ``alerthooks serve`` as 1, 2 and 4 processes on one
PostgreSQL database, and 1 and 2 on one SQLite file, driven over HTTP with signed deliveries.

Each configuration is N ``alerthooks serve examples.app:app`` processes, each on its own loopback
port, sharing one store (a fresh Postgres schema, dropped after; a fresh SQLite file). A load
generator in another process keeps ``--connections`` keep-alive connections busy, spread over
the N ports as a load balancer would, with unique Stripe alert deliveries signed before the clock
starts. Rounds alternate between the configurations; reported per configuration: the median
events/s, the scaling ratio to the same store's one-process run (median of per-round ratios, so
both saw the same load), and events per CPU-second of the servers. Every run checks that every
answer was 200 and every alert reached the example's handler exactly once.

    .venv/bin/python benchmarks/replicas.py [--requests 4000] [--rounds 3] [--connections 32]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]

The PostgreSQL URL defaults to env ``ALERTHOOKS_TEST_POSTGRES_URL``; empty: SQLite only. On a
machine with C cores, N processes can add up to about min(N, C) times one process's rate, less
what the load generator and the database take of the same cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from apps import PATH, SECRET, signed_alert
from http_e2e import HOST, ROOT, _free_port

# -- the load generator (runs in its own process) ---------------------------------------------


def _requests(count: int) -> list[tuple[bytes, bytes]]:
    """(head without Host, body) of ``count`` signed deliveries."""
    built = []
    for _ in range(count):
        body, signature = signed_alert()
        head = (
            f"POST {PATH} HTTP/1.1\r\n"
            "User-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)\r\n"
            "Content-Type: application/json; charset=utf-8\r\n"
            f"Stripe-Signature: {signature}\r\nContent-Length: {len(body)}\r\n"
        )
        built.append((head.encode(), body))
    return built


async def _load(ports: list[int], requests: list[tuple[bytes, bytes]], connections: int) -> Any:
    pending = iter(requests)
    statuses: dict[int, int] = {}

    async def connection(port: int) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        host = f"Host: {HOST}:{port}\r\n\r\n".encode()
        try:
            for head, body in pending:
                writer.write(head + host + body)
                lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                status = int(lines[0].split(" ", 2)[1])
                length = next(
                    int(line.split(":", 1)[1])
                    for line in lines[1:]
                    if line.lower().startswith("content-length:")
                )
                await reader.readexactly(length)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection(ports[i % len(ports)]) for i in range(connections)))
    return {"elapsed": time.perf_counter() - started, "statuses": statuses}


def client_main(ports: list[int], count: int, connections: int, timeout: float) -> None:
    """Build ``count`` signed deliveries, send them over ``ports``, print one JSON line."""
    requests = _requests(count)
    print(json.dumps(asyncio.run(asyncio.wait_for(_load(ports, requests, connections), timeout))))


# -- the servers --------------------------------------------------------------------------------


@dataclass
class Replicas:
    """N ``alerthooks serve`` processes of the example on one store."""

    name: str
    store: str
    count: int
    ports: list[int] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    outputs: list[IO[bytes]] = field(default_factory=list)
    sent: int = 0

    def start(self, directory: str) -> None:
        env = {**os.environ, "STRIPE_WEBHOOK_SECRET": SECRET}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        for i in range(self.count):
            port = _free_port()
            log = Path(directory) / f"{self.name.replace(' ', '_')}_{i}.out"
            output = open(log, "w+b")  # noqa: SIM115 - closed in stop()
            self.outputs.append(output)
            self.processes.append(
                subprocess.Popen(
                    [
                        *(sys.executable, "-c", "from alerthooks.cli import main; main()"),
                        *("serve", "examples.app:app"),
                        *("--host", HOST, "--port", str(port), "--store", self.store),
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            )
            self.ports.append(port)

    def wait(self) -> None:
        """Return once every process listens."""
        for process, port in zip(self.processes, self.ports, strict=True):
            _wait_listening(process, port, self.log)

    def cpu_seconds(self) -> float:
        """CPU time the processes have used so far (Linux /proc; 0 elsewhere)."""
        total = 0.0
        for process in self.processes:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def handled(self) -> int:
        """Alerts that reached the example's handler (it prints one line per alert)."""
        total = 0
        for output in self.outputs:
            output.flush()
            total += Path(output.name).read_bytes().count(b"triggered (")
        return total

    def log(self) -> str:
        return "\n".join(Path(o.name).read_text(errors="replace")[-1500:] for o in self.outputs)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for output in self.outputs:
            output.close()


def _wait_listening(process: subprocess.Popen[bytes], port: int, log: Any) -> None:
    import socket

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"alerthooks serve exited:\n{log()}")
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"alerthooks serve did not listen in 60 s:\n{log()}")


def _drive(replicas: Replicas, count: int, connections: int, timeout: float) -> dict[str, float]:
    cpu = replicas.cpu_seconds()
    done = subprocess.run(
        [
            *(sys.executable, __file__, "client", "--ports", ",".join(map(str, replicas.ports))),
            *("--requests", str(count), "--connections", str(connections)),
            *("--timeout", str(timeout)),
        ],
        capture_output=True,
        text=True,
        timeout=timeout + 120,
    )
    if done.returncode != 0:
        raise SystemExit(f"{replicas.name}: load generator failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    statuses = {int(k): v for k, v in result["statuses"].items()}
    if statuses != {200: count}:
        raise SystemExit(f"{replicas.name}: answers were not all 200: {statuses}")
    replicas.sent += count
    deadline = time.monotonic() + 10  # the handler's line may trail the answer by a moment
    while (handled := replicas.handled()) != replicas.sent and time.monotonic() < deadline:
        time.sleep(0.05)
    if handled != replicas.sent:
        raise SystemExit(f"{replicas.name}: {handled} alerts handled of {replicas.sent} sent")
    return {
        "rate": count / result["elapsed"],
        "per_cpu": count / max(1e-9, replicas.cpu_seconds() - cpu),
    }


async def _drop_schema(base: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(base.split("?", 1)[0])
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    """Command line entry: the comparison, or (``client``) one load generator run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", choices=["compare", "client"], default="compare")
    parser.add_argument("--requests", type=int, default=4000, help="deliveries per run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--connections", type=int, default=32, help="connections in all")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per run")
    parser.add_argument("--warmup", type=int, default=500, help="deliveries before the rounds")
    parser.add_argument("--counts", default="1,2,4", help="Postgres process counts")
    parser.add_argument("--sqlite-counts", default="1,2", help="SQLite process counts")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("ALERTHOOKS_TEST_POSTGRES_URL", ""),
        help="PostgreSQL URL (default: env ALERTHOOKS_TEST_POSTGRES_URL; empty: SQLite only)",
    )
    parser.add_argument("--ports", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mode == "client":
        ports = [int(p) for p in args.ports.split(",")]
        client_main(ports, args.requests, args.connections, args.timeout)
        return 0

    schemas: list[str] = []
    configs: list[Replicas] = []
    with tempfile.TemporaryDirectory(prefix="alerthooks-replicas-") as directory:
        for n in [int(c) for c in args.sqlite_counts.split(",") if c]:
            store = f"sqlite:///{directory}/x{n}.db"
            configs.append(Replicas(f"sqlite x{n}", store, n))
        if args.postgres:
            for n in [int(c) for c in args.counts.split(",") if c]:
                schema = f"alerthooks_bench_{uuid.uuid4().hex[:8]}"
                schemas.append(schema)
                sep = "&" if "?" in args.postgres else "?"
                configs.append(
                    Replicas(f"postgres x{n}", f"{args.postgres}{sep}schema={schema}", n)
                )
        results: dict[str, list[dict[str, float]]] = {c.name: [] for c in configs}
        try:
            for config in configs:  # every process starts at once, then each is waited for
                config.start(directory)
            for config in configs:
                config.wait()
                if args.warmup:
                    _drive(config, args.warmup, args.connections, args.timeout)
            for r in range(args.rounds):
                order = configs if r % 2 == 0 else configs[::-1]
                for config in order:
                    results[config.name].append(
                        _drive(config, args.requests, args.connections, args.timeout)
                    )
        finally:
            for config in configs:
                config.stop()
            for schema in schemas:
                asyncio.run(_drop_schema(args.postgres, schema))

    print(
        f"replicas over HTTP: alerthooks serve examples.app:app, {args.connections} connections"
        f" spread over the processes, {args.requests} deliveries x {args.rounds} rounds"
        f" alternated; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs,"
        f" load {os.getloadavg()[0]:.1f}"
    )
    for config in configs:
        runs = results[config.name]
        store = config.name.split(" ")[0]
        one = results.get(f"{store} x1")
        rate = statistics.median(run["rate"] for run in runs)
        per_cpu = statistics.median(run["per_cpu"] for run in runs)
        line = f"  {config.name:<12} {rate:>7,.0f} events/s  {per_cpu:>6,.0f} per server CPU-second"
        if one is not None and config.count > 1:
            scaling = statistics.median(
                a["rate"] / b["rate"] for a, b in zip(runs, one, strict=True)
            )
            line += f"  scaling x{config.count} / x1: {scaling:.2f}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
