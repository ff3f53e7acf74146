"""Verification edges: a Stripe signature dated beyond the tolerance in the future, an oversized
``Stripe-Signature``, and bodies that are not UTF-8 (any provider) are refused with 400."""

from __future__ import annotations

import json
import time

import pytest

from alerthooks.providers import Rejected
from alerthooks.providers.chargebee import basic_auth_header
from alerthooks.providers.stripe import MAX_SIGNATURE_HEADER, verify
from alerthooks.testing import (
    chargebee_alert_status_changed,
    stripe_alert_triggered,
    stripe_signature_header,
)

from .conftest import CB_PASSWORD, CB_USER, STRIPE_SECRET
from .helpers import make_hooks, recorded
from .hostile import asgi_call

BODY = b'{"id": "evt_1"}'


def rejected(header: str, body: bytes = BODY) -> str:
    with pytest.raises(Rejected) as info:
        verify(body, header, [STRIPE_SECRET], tolerance=300)
    assert info.value.status == 400
    return info.value.reason


def test_signature_dated_beyond_the_tolerance_in_the_future_is_rejected() -> None:
    future = int(time.time()) + 301 + 5
    assert rejected(stripe_signature_header(BODY, STRIPE_SECRET, future)) == (
        "timestamp outside tolerance"
    )
    far = int(time.time()) + 10 * 365 * 86400
    assert rejected(stripe_signature_header(BODY, STRIPE_SECRET, far)) == (
        "timestamp outside tolerance"
    )


def test_signature_slightly_in_the_future_passes_as_clock_skew() -> None:
    verify(
        BODY, stripe_signature_header(BODY, STRIPE_SECRET, int(time.time()) + 200), [STRIPE_SECRET]
    )


def test_overlong_signature_header_is_rejected_before_any_hmac() -> None:
    header = stripe_signature_header(BODY, STRIPE_SECRET)
    many = header + ",v1=" + ",v1=".join(["0" * 64] * 10_000)
    started = time.perf_counter()
    assert rejected(many) == "Stripe-Signature header too long"
    assert rejected(header + ",x=" + "a" * MAX_SIGNATURE_HEADER) == (
        "Stripe-Signature header too long"
    )
    assert rejected(header + "," * 40) == "Stripe-Signature header too long"
    assert time.perf_counter() - started < 0.5
    # A header with one v1 per secret of a rotation is far below the bound.
    rotating = stripe_signature_header(BODY, STRIPE_SECRET, extra_secrets=["whsec_a", "whsec_b"])
    verify(BODY, rotating, [STRIPE_SECRET])


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
async def test_chargebee_body_in_another_encoding_is_refused(encoding: str) -> None:
    hooks = make_hooks()
    seen = recorded(hooks)
    body = json.dumps(chargebee_alert_status_changed()).encode(encoding)
    status, answer, _ = await asgi_call(
        hooks,
        path="/chargebee",
        headers=[(b"authorization", basic_auth_header(CB_USER, CB_PASSWORD).encode())],
        chunks=[body],
    )
    assert status == 400
    assert json.loads(answer)["error"] in ("body is not UTF-8", "invalid JSON")
    assert seen == []
    stored = await hooks.store.events()
    assert list(stored) == []


async def test_chargebee_utf16_with_bom_is_refused_as_not_utf8() -> None:
    hooks = make_hooks()
    body = json.dumps(chargebee_alert_status_changed()).encode("utf-16")
    status, answer, _ = await asgi_call(
        hooks,
        path="/chargebee",
        headers=[(b"authorization", basic_auth_header(CB_USER, CB_PASSWORD).encode())],
        chunks=[body],
    )
    assert (status, json.loads(answer)) == (400, {"error": "body is not UTF-8"})


async def test_utf8_bodies_are_accepted_with_or_without_a_byte_order_mark() -> None:
    hooks = make_hooks()
    seen = recorded(hooks)
    for prefix in (b"", b"\xef\xbb\xbf"):
        body = prefix + json.dumps(stripe_alert_triggered(), ensure_ascii=False).encode()
        header = stripe_signature_header(body, STRIPE_SECRET).encode()
        status, _, _ = await asgi_call(
            hooks, path="/stripe", headers=[(b"stripe-signature", header)], chunks=[body]
        )
        assert status == 200
    assert len(seen) == 2
