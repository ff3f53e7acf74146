"""Property-based tests over both endpoints through the raw ASGI interface: whatever bytes,
headers, methods, paths and lengths arrive, the answer is never a 5xx, and no handler runs unless
the delivery verified.

Example counts stay small for ``make test``; ``ALERTHOOKS_FULL_TESTS=1`` raises them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.types import Message

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import Rejected
from alerthooks.providers.chargebee import parse_basic_auth
from alerthooks.providers.stripe import verify as stripe_verify
from alerthooks.testing import (
    chargebee_alert_status_changed,
    chargebee_auth_headers,
    stripe_alert_triggered,
    stripe_signature_header,
)

from .conftest import CB_PASSWORD, CB_USER, STRIPE_SECRET
from .helpers import make_hooks, recorded
from .hostile import asgi_call, examples

_SETTINGS = settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _hooks() -> tuple[AlertHooks, list[AlertEvent]]:
    hooks = make_hooks()
    seen = recorded(hooks)

    return hooks, seen


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


_NOW = int(time.time())
_VALID_STRIPE_BODY = json.dumps(stripe_alert_triggered(id="evt_fuzz_valid")).encode()
_VALID_CB_BODY = json.dumps(chargebee_alert_status_changed(id="ev_fuzz_valid")).encode()

# -- strategies -------------------------------------------------------------------------------

_header_names = st.one_of(
    st.sampled_from(
        [
            b"stripe-signature",
            b"Stripe-Signature",
            b"authorization",
            b"AUTHORIZATION",
            b"content-length",
            b"content-type",
            b"transfer-encoding",
            b"x-forwarded-for",
            b"host",
        ]
    ),
    st.binary(min_size=1, max_size=40),
)

_near_miss_auth = st.sampled_from(
    [
        b"Basic",
        b"Basic ",
        b"basic " + base64.b64encode(f"{CB_USER}:{CB_PASSWORD}x".encode()),
        b"Basic " + base64.b64encode(f"{CB_USER}x:{CB_PASSWORD}".encode()),
        b"Basic " + base64.b64encode(CB_USER.encode()),
        b"Basic " + base64.b64encode(b"\xff\xfe:\xff"),
        b"Basic ====",
        b"Basic \xc3\xa9\xc3\xa9",
        b"Bearer " + base64.b64encode(f"{CB_USER}:{CB_PASSWORD}".encode()),
        "Basic ünïcödé".encode(),
    ]
)

_odd_signatures = st.one_of(
    st.sampled_from(
        [
            b"t=",
            b"t=,v1=",
            b"v1=abc",
            f"t={_NOW},v1=".encode(),
            f"t={_NOW},v1=\xe9\xe9".encode("latin-1"),
            f"t={_NOW},v1=é".encode(),
            f"t={_NOW},v0=deadbeef".encode(),
            b"t=\xb2,v1=00",
            b"t=" + b"9" * 5000 + b",v1=00",
            b"t=-1,v1=00",
            b"t=1e9,v1=00",
            b",,,,===,,",
        ]
    ),
    st.builds(
        lambda ts, sig: f"t={ts},v1={sig}".encode("utf-8", "surrogatepass"),
        st.integers(min_value=-(10**20), max_value=10**20),
        st.text(max_size=70),
    ),
)

_content_lengths = st.one_of(
    st.sampled_from(
        [b"0", b"-1", b"1e3", b" 12", b"12 ", b"\xb2", b"\xb9\xb2", b"9" * 5000, b"0" * 50 + b"1"]
    ),
    st.integers(min_value=0, max_value=2**70).map(lambda n: str(n).encode()),
    st.binary(max_size=12),
)

_header_values = st.one_of(
    st.binary(max_size=120),
    st.text(max_size=60).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.integers(min_value=1, max_value=200_000).map(lambda n: b"A" * n),
    _near_miss_auth,
    _odd_signatures,
)


@st.composite
def _headers(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    headers = draw(st.lists(st.tuples(_header_names, _header_values), max_size=8))
    if draw(st.booleans()):
        headers.append((b"authorization", draw(_near_miss_auth)))
    if draw(st.booleans()):
        headers.append((b"stripe-signature", draw(_odd_signatures)))
    if draw(st.booleans()):
        headers.append((b"content-length", draw(_content_lengths)))
    return draw(st.permutations(headers))


_bodies = st.one_of(
    st.binary(max_size=300),
    st.just(_VALID_STRIPE_BODY),
    st.just(_VALID_CB_BODY),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=20,
    ).map(lambda v: json.dumps(v).encode()),
    st.integers(min_value=1, max_value=3000).map(lambda n: b"[" * n + b"]" * n),
)

_chunked = _bodies.flatmap(
    lambda body: st.lists(st.integers(0, max(len(body), 1)), max_size=4).map(
        lambda cuts: [
            body[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(body)], strict=True)
        ]
    )
)

_methods = st.one_of(
    st.sampled_from(["POST", "GET", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "post", "TRACE"]),
    st.text(min_size=1, max_size=10),
)

_paths = st.one_of(
    st.sampled_from(
        [
            "/stripe",
            "/chargebee",
            "/stripe/",
            "/chargebee/",
            "/",
            "",
            "//stripe",
            "/stripe/x",
            "/STRIPE",
            "/webhooks/stripe",
            "/stripe%00",
            "/chargebee\x00",
            "/\udcff",
        ]
    ),
    st.text(max_size=30),
)


# -- properties ------------------------------------------------------------------------------


_routes = st.one_of(
    st.tuples(st.just("POST"), st.sampled_from(["/stripe", "/chargebee"])),
    st.tuples(_methods, _paths),
)


@_SETTINGS
@given(
    route=_routes,
    headers=_headers(),
    chunks=_chunked,
    root_path=st.sampled_from(["", "/webhooks", "/stripe"]),
)
def test_arbitrary_requests_never_5xx_and_never_reach_a_handler(
    route: tuple[str, str],
    headers: list[tuple[bytes, bytes]],
    chunks: list[bytes],
    root_path: str,
) -> None:
    method, path = route
    hooks, seen = _hooks()
    status, body, _ = _run(
        asgi_call(
            hooks,
            method=method,
            path=root_path + path,
            root_path=root_path,
            headers=headers,
            chunks=chunks,
        )
    )
    assert status < 500, body
    assert 200 <= status < 600
    json.loads(body)  # every answer is a JSON document
    assert seen == []


def _stripe_verifies(body: bytes, header: str | None) -> bool:
    try:
        stripe_verify(body, header, [STRIPE_SECRET])
    except Rejected:
        return False
    return True


_body_mutations = st.one_of(
    st.just(("same", 0, b"")),
    st.tuples(
        st.just("flip"), st.integers(0, 10_000), st.integers(1, 255).map(lambda n: bytes([n]))
    ),
    st.tuples(st.just("append"), st.just(0), st.binary(min_size=1, max_size=5)),
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just(b"")),
)


def _mutate(body: bytes, mutation: tuple[str, int, bytes]) -> bytes:
    kind, at, data = mutation
    if kind == "flip":
        i = at % len(body)
        return body[:i] + bytes([body[i] ^ data[0]]) + body[i + 1 :]
    if kind == "append":
        return body + data
    if kind == "truncate":
        return body[: at % len(body)]
    return body


@_SETTINGS
@given(
    mutation=_body_mutations,
    timestamp_shift=st.sampled_from([0, 0, 0, -301, -3600, 10**9, -(10**10)]),
    secret=st.sampled_from([STRIPE_SECRET, STRIPE_SECRET, STRIPE_SECRET + "x", "whsec_other"]),
    extra=st.lists(st.tuples(_header_names, _header_values), max_size=3),
    duplicate_signature=st.sampled_from([None, "before", "after"]),
)
def test_stripe_handler_runs_only_for_a_verified_body(
    mutation: tuple[str, int, bytes],
    timestamp_shift: int,
    secret: str,
    extra: list[tuple[bytes, bytes]],
    duplicate_signature: str | None,
) -> None:
    hooks, seen = _hooks()
    signed = json.dumps(stripe_alert_triggered()).encode()
    signature = stripe_signature_header(signed, secret, int(time.time()) + timestamp_shift)
    body = _mutate(signed, mutation)
    extra = [(k, v) for k, v in extra if k.lower() not in (b"stripe-signature", b"content-length")]
    headers = [*extra, (b"stripe-signature", signature.encode())]
    if duplicate_signature == "before":
        headers.insert(0, (b"stripe-signature", b"t=1,v1=00"))
    elif duplicate_signature == "after":
        headers.append((b"stripe-signature", b"t=1,v1=00"))
    effective = next(v for k, v in reversed(headers) if k == b"stripe-signature").decode()
    status, answer, _ = _run(asgi_call(hooks, path="/stripe", headers=headers, chunks=[body]))
    assert status < 500, answer
    verified = _stripe_verifies(body, effective)
    assert bool(seen) == verified
    assert (status == 200) == verified


def _basic(user: str, password: str) -> bytes:
    return chargebee_auth_headers(user, password)["Authorization"].encode()


@_SETTINGS
@given(
    auth=st.one_of(
        st.just(_basic(CB_USER, CB_PASSWORD)),
        st.just(b"basic " + _basic(CB_USER, CB_PASSWORD)[6:]),
        st.builds(_basic, st.text(max_size=20), st.text(max_size=20)),
        _near_miss_auth,
        st.binary(max_size=80),
    ),
    extra=st.lists(st.tuples(_header_names, _header_values), max_size=3),
    body_mutation=_body_mutations,
)
def test_chargebee_handler_runs_only_with_matching_basic_auth(
    auth: bytes, extra: list[tuple[bytes, bytes]], body_mutation: tuple[str, int, bytes]
) -> None:
    hooks, seen = _hooks()
    body = _mutate(json.dumps(chargebee_alert_status_changed()).encode(), body_mutation)
    extra = [(k, v) for k, v in extra if k.lower() not in (b"authorization", b"content-length")]
    headers = [*extra, (b"authorization", auth)]
    status, answer, _ = _run(asgi_call(hooks, path="/chargebee", headers=headers, chunks=[body]))
    assert status < 500, answer
    try:
        matches = parse_basic_auth(auth.decode("latin-1")) == (CB_USER, CB_PASSWORD)
    except Rejected:
        matches = False
    if seen:
        assert matches
    if not matches:
        assert status == 401
    elif body_mutation[0] == "same":
        assert status == 200
        assert len(seen) == 1


@settings(_SETTINGS, max_examples=examples(25))
@given(length=_content_lengths, chunks=_chunked, path=st.sampled_from(["/stripe", "/chargebee"]))
def test_any_content_length_is_answered_without_5xx(
    length: bytes, chunks: list[bytes], path: str
) -> None:
    hooks, seen = _hooks()
    status, answer, _ = _run(
        asgi_call(hooks, path=path, headers=[(b"content-length", length)], chunks=chunks)
    )
    assert status < 500, answer
    assert seen == []


def test_non_ascii_stripe_signature_is_rejected_with_400() -> None:
    hooks, _ = _hooks()
    header = f"t={int(time.time())},v1=é".encode()
    status, _, _ = _run(
        asgi_call(hooks, headers=[(b"stripe-signature", header)], chunks=[_VALID_STRIPE_BODY])
    )
    assert status == 400


def test_unicode_digit_content_length_is_rejected_with_400() -> None:
    hooks, _ = _hooks()
    status, _, _ = _run(asgi_call(hooks, headers=[(b"content-length", b"\xb2")], chunks=[b"{}"]))
    assert status == 400


def test_content_length_longer_than_int_parsing_allows_is_413() -> None:
    hooks, _ = _hooks()
    status, _, _ = _run(
        asgi_call(hooks, headers=[(b"content-length", b"9" * 5000)], chunks=[b"{}"])
    )
    assert status == 413


def test_content_length_with_leading_zeros_is_read_as_a_number() -> None:
    hooks, seen = _hooks()
    body = json.dumps(stripe_alert_triggered()).encode()
    headers = [
        (b"content-length", b"0" * 40 + str(len(body)).encode()),
        (b"stripe-signature", stripe_signature_header(body, STRIPE_SECRET).encode()),
    ]
    status, _, _ = _run(asgi_call(hooks, headers=headers, chunks=[body]))
    assert status == 200
    assert len(seen) == 1


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=25,
)


@st.composite
def _alert_shaped(draw: st.DrawFn, provider: str) -> dict[str, Any]:
    """A JSON object that looks enough like an alert to get past the first checks."""
    payload: dict[str, Any] = draw(st.dictionaries(st.text(max_size=10), _json_values, max_size=4))
    if provider == "stripe":
        payload["type"] = draw(st.sampled_from(["billing.alert.triggered", "customer.created"]))
        payload.setdefault(
            "data", {"object": draw(st.dictionaries(st.text(max_size=8), _json_values))}
        )
    else:
        payload["event_type"] = draw(st.sampled_from(["alert_status_changed", "x"]))
        payload.setdefault("content", draw(_json_values))
    payload["id"] = draw(st.one_of(st.text(max_size=12), _json_values))
    return payload


_encodings = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32", "latin-1"])


@_SETTINGS
@given(
    provider=st.sampled_from(["stripe", "chargebee"]),
    data=st.data(),
    encoding=_encodings,
    raw=st.one_of(st.none(), st.binary(max_size=200)),
)
def test_verified_garbage_in_any_encoding_is_answered_without_5xx(
    provider: str, data: st.DataObject, encoding: str, raw: bytes | None
) -> None:
    """Correctly signed bodies of any shape or encoding get past verification; what follows
    (decoding, parsing, normalizing, recording) answers 200 or 400, never a 5xx."""
    hooks, seen = _hooks()
    if raw is None:
        text = json.dumps(data.draw(_alert_shaped(provider)), ensure_ascii=False)
        body = text.encode(encoding, "surrogatepass" if encoding.startswith("utf") else "replace")
    else:
        body = raw
    if provider == "stripe":
        header = stripe_signature_header(body.decode("utf-8", "replace"), STRIPE_SECRET)
        headers = [(b"stripe-signature", header.encode())]
    else:
        headers = [(b"authorization", _basic(CB_USER, CB_PASSWORD))]
    status, answer, _ = _run(asgi_call(hooks, path=f"/{provider}", headers=headers, chunks=[body]))
    assert status in (200, 400), answer
    for event in seen:
        assert event.provider == provider


async def test_websocket_upgrade_is_refused_not_an_error() -> None:
    hooks, seen = _hooks()
    sent: list[Message] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/stripe", "headers": [], "subprotocols": []}
    await hooks(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]
    assert seen == []
