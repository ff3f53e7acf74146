"""Shared fixtures: configured hooks and an in-process client that signs like the providers."""

from __future__ import annotations

import json
import random
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from alerthooks import AlertHooks
from alerthooks.providers import Chargebee, Metronome, Orb, Stripe
from alerthooks.testing import chargebee_auth_headers, stripe_signature_header

STRIPE_SECRET = "whsec_test_secret_for_alerthooks"
CB_USER, CB_PASSWORD = "chargebee-user", "pa:ss:word"


@pytest.fixture
def hooks() -> AlertHooks:
    # Every built-in provider, as AlertHooks() serves them: Orb and Metronome from the environment.
    return AlertHooks(
        providers=[
            Stripe(STRIPE_SECRET),
            Chargebee((CB_USER, CB_PASSWORD)),
            Orb.from_env(),
            Metronome.from_env(),
        ],
        store="memory://",
    )


@pytest.fixture
async def client(hooks: AlertHooks) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=hooks)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def encode(payload: Any) -> bytes:
    return json.dumps(payload).encode() if not isinstance(payload, bytes) else payload


async def post_stripe(
    client: httpx.AsyncClient,
    payload: Any,
    *,
    secret: str = STRIPE_SECRET,
    timestamp: int | None = None,
    path: str = "/stripe",
) -> httpx.Response:
    body = encode(payload)
    header = stripe_signature_header(body, secret, timestamp)
    return await client.post(path, content=body, headers={"Stripe-Signature": header})


async def post_chargebee(
    client: httpx.AsyncClient,
    payload: Any,
    *,
    auth: tuple[str, str] = (CB_USER, CB_PASSWORD),
    path: str = "/chargebee",
) -> httpx.Response:
    return await client.post(path, content=encode(payload), headers=chargebee_auth_headers(*auth))


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def load_fixture(name: str) -> dict[str, Any]:
    """``fixtures/{name}.json`` as stored: every shape a provider sends, samples or not."""
    payload: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return payload


def _ephemeral_ports() -> tuple[int, int]:
    """The kernel's range of local ports for outgoing connections (Linux; IANA's elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49152, 65535


def free_port() -> int:
    """A loopback port nobody listens on now: for a server to bind, or a refused connection.

    It is taken below the kernel's ephemeral range when there is room: a port from that range
    (``bind(0)``) can become the local port of any outgoing connection (the flood tests open
    thousands) before the server that was given it binds it, which then fails."""
    low, _ = _ephemeral_ports()
    if low > 12_000:
        for _ in range(50):
            port = random.randrange(10_000, low)
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# No test reaches the internet: in this process, a connection or a name lookup for anything but
# loopback fails at once, as it would offline, and the session fails naming the host. (Servers
# the tests start as subprocesses are pointed at loopback fakes by their env.)
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "::", ""}
_OFF_LOOPBACK: list[str] = []


def _is_loopback(host: object) -> bool:
    if host is None:
        return True
    name = host.decode() if isinstance(host, bytes) else str(host)
    return name in _LOOPBACK_NAMES or name.startswith("127.")


def _guard(address: object) -> None:
    if isinstance(address, tuple) and address and not _is_loopback(address[0]):
        _OFF_LOOPBACK.append(str(address[0]))
        raise OSError(f"tests do not reach the internet: connect to {address[0]!r} refused")


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _connect(self: socket.socket, address: Any) -> None:
    _guard(address)
    _real_connect(self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    _guard(address)
    return _real_connect_ex(self, address)


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if not _is_loopback(host):
        _OFF_LOOPBACK.append(str(host))
        raise socket.gaierror(socket.EAI_NONAME, f"tests do not reach the internet: {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _connect  # type: ignore[method-assign,assignment]
socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign,assignment]
socket.getaddrinfo = _getaddrinfo


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _OFF_LOOPBACK:
        hosts = ", ".join(sorted(set(_OFF_LOOPBACK)))
        print(f"\ntests tried to reach the internet: {hosts}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
