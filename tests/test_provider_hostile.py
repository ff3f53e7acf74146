"""Hostile deliveries through every registered provider (the provider contract's cases, so a
provider added to ``BUILTIN`` later is covered without a line here), each signed with the
provider's own ``sign``: a signature header of 10,000 entries, a signature dated far in the
future, a 1 MiB header value, bodies that are not UTF-8 or are UTF-16, deeply nested JSON and
duplicate keys. None is answered 500, each costs bounded CPU, and each gets the status codes
today's providers give: 400/401 for what does not verify, 200 for what verifies (kept
``unparsed`` or ``ignored`` when it cannot be read as an alert).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from alerthooks import AlertHooks
from alerthooks.providers import SecretProvider
from alerthooks.providers import signing as signing_module

from .test_provider_contract import CASES, IDS, SIGNED, Case

REFUSED = (400, 401)
CPU_SECONDS = 2.0  # per hostile request, in this process; a few ms is typical


@pytest.fixture(params=CASES, ids=IDS)
def case(request: pytest.FixtureRequest) -> Case:
    result: Case = request.param
    return result


def _body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


async def _post(
    case: Case, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any] | None, float]:
    """Deliver ``body`` with exactly ``headers`` to a fresh app serving only ``case``'s provider;
    (status, JSON answer or None, CPU seconds it took)."""
    hooks = AlertHooks(providers=[case.provider()], store="memory://")
    transport = httpx.ASGITransport(app=hooks)
    started = time.process_time()
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post(f"/{case.name}", content=body, headers=headers)
    cpu = time.process_time() - started
    try:
        answer = response.json()
    except ValueError:
        answer = None
    return response.status_code, answer, cpu


def _signed(case: Case, body: bytes) -> dict[str, str]:
    return case.provider().sign(body)


def _each_header(headers: dict[str, str]) -> Iterator[tuple[str, str]]:
    yield from headers.items()


async def test_a_signature_header_of_10000_entries_is_answered_in_bounded_time(
    case: Case,
) -> None:
    body = _body(case.alerts()[0])
    signed = _signed(case, body)
    for name, value in _each_header(signed):
        for sep in (",", " "):
            hostile = {**signed, name: sep.join([value] * 10_000)}
            status, _, cpu = await _post(case, body, hostile)
            assert status in (200, *REFUSED), (name, sep, status)
            assert cpu < CPU_SECONDS, (name, sep, cpu)


async def test_10000_wrong_signatures_over_a_large_body_cost_bounded_cpu(case: Case) -> None:
    payload = {**case.alerts()[0], "padding": "p" * (256 << 10)}
    body = _body(payload)
    signed = _signed(case, body)
    wrong = _signed(case, body + b" ")  # signatures of another body, in this provider's form
    for name, value in _each_header(wrong):
        if signed.get(name) == value:
            continue  # not a signature (the same for both bodies): nothing to multiply
        if (await _post(case, body, {**signed, name: value}))[0] == 200:
            continue  # differs per signing but is not checked (a delivery's unique key)
        hostile = {**signed, name: ",".join([value] * 10_000)}
        status, _, cpu = await _post(case, body, hostile)
        assert status in REFUSED, (name, status)
        assert cpu < CPU_SECONDS, (name, cpu)


@pytest.mark.parametrize("case", SIGNED, ids=[c.name for c in SIGNED])
@pytest.mark.parametrize("years", [1, 100, 10_000])
async def test_a_signature_dated_far_in_the_future_is_refused(
    case: Case, years: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = _body(case.alerts()[0])
    signed = _signed(case, body)
    now = time.time()

    class Clock:
        @staticmethod
        def time() -> float:
            # The signature was made now; the receiver's clock reads ``years`` earlier (as far as
            # a float clock goes), so to it the signature is dated that far in the future.
            return max(now - years * 365.25 * 86400, -62135596800.0)

    monkeypatch.setattr(signing_module, "time", Clock)
    assert isinstance(case.provider(), SecretProvider)
    status, _, cpu = await _post(case, body, signed)
    assert status == 400, status
    assert cpu < CPU_SECONDS


async def test_a_1_mib_header_value_is_refused_or_ignored_never_a_500(case: Case) -> None:
    body = _body(case.alerts()[0])
    signed = _signed(case, body)
    huge = "A" * (1 << 20)
    refused = []
    for name in signed:
        status, _, cpu = await _post(case, body, {**signed, name: huge})
        # A header the provider reads no longer verifies; one it does not read (Metronome's
        # Date beside X-Metronome-Date) changes nothing.
        assert status in (200, *REFUSED), (name, status)
        assert cpu < CPU_SECONDS, (name, cpu)
        if status in REFUSED:
            refused.append(name)
    assert refused, "no signed header's value was checked"
    # A 1 MiB header the provider does not read leaves a good signature good.
    status, answer, cpu = await _post(case, body, {**signed, "x-hostile": huge})
    assert (status, answer) == (200, {"status": "accepted"})
    assert cpu < CPU_SECONDS


def _bodies(case: Case) -> dict[str, bytes]:
    alert = case.alerts()[0]
    text = json.dumps(alert)
    depth = 100_000
    return {
        "utf-16": text.encode("utf-16"),
        "utf-16-le": text.encode("utf-16-le"),
        "latin-1": json.dumps({**alert, "note": "caf\u00e9"}, ensure_ascii=False).encode("latin-1"),
        "invalid-utf-8": text.encode()[:-1] + b"\xff\xfe\xc3(}",
        "lone-surrogate": text.replace('"', '"\\ud800', 1).encode(),
        "nested-objects": b'{"a":' * depth + b"1" + b"}" * depth,
        "nested-arrays": b"[" * depth + b"]" * depth,
        "nested-in-alert": text[:-1].encode() + b', "deep": ' + b"[" * depth + b"]" * depth + b"}",
        "duplicate-keys": _duplicated(text),
    }


def _duplicated(text: str) -> bytes:
    """``text`` (a JSON object) with every top-level key given a second, different value first."""
    payload = json.loads(text)
    decoys = ", ".join(f"{json.dumps(k)}: {json.dumps('decoy')}" for k in payload)
    return ("{" + decoys + ", " + text[1:]).encode()


async def test_odd_bodies_that_verify_are_never_a_500(case: Case) -> None:
    for label, body in _bodies(case).items():
        status, answer, cpu = await _post(case, body, _signed(case, body))
        # Verified: accepted as read, kept unparsed, ignored, or refused as unreadable (400).
        assert status in (200, 400), (label, status, answer)
        if status == 200:
            assert answer is not None and answer["status"] in (
                "accepted",
                "unparsed",
                "ignored",
            ), (label, answer)
        assert cpu < CPU_SECONDS, (label, cpu)
