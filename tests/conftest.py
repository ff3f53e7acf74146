"""Shared fixtures: configured hooks and an in-process client that signs like the providers."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from alerthooks import AlertHooks
from alerthooks.testing import chargebee_auth_headers, stripe_signature_header

STRIPE_SECRET = "whsec_test_secret_for_alerthooks"
CB_USER, CB_PASSWORD = "chargebee-user", "pa:ss:word"


@pytest.fixture
def hooks() -> AlertHooks:
    return AlertHooks(
        stripe_secret=STRIPE_SECRET, chargebee_auth=(CB_USER, CB_PASSWORD), store="memory://"
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


def free_port() -> int:
    """A loopback port nobody listens on now: for a server to bind, or a refused connection."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
