"""The delivery pipeline with a provider defined here alone, and its parts without ASGI: a
provider is served, verified, normalized, deduplicated and dispatched with no change under src/."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import Chargebee, NotAnAlert, Orb, Provider, Rejected, Stripe, build_event
from alerthooks.receiver import Answer, RejectionLog
from alerthooks.testing import (
    chargebee_alert_status_changed,
    chargebee_auth_headers,
    stripe_alert_triggered,
    stripe_customer_created,
    stripe_signature_header,
)

from .conftest import CB_PASSWORD, CB_USER, STRIPE_SECRET
from .helpers import logged, wait_until
from .test_unparsed import spend_alert


class Toy(Provider):
    """A made-up billing provider: HMAC-SHA256 of the body in ``X-Toy-Signature``."""

    name = "toy"
    env_hint = "TOY_SECRET"
    alert_types = frozenset({"usage.alert"})

    def __init__(self, secret: str = "toy-secret") -> None:
        self.secret = secret

    @property
    def configured(self) -> bool:
        return bool(self.secret)

    def _digest(self, body: bytes) -> str:
        return hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        given = headers.get("x-toy-signature")
        if given is None:
            raise Rejected(400, "missing X-Toy-Signature")
        if not hmac.compare_digest(given, self._digest(body)):
            raise Rejected(400, "bad signature")

    def sign(self, body: bytes) -> dict[str, str]:
        return {"X-Toy-Signature": self._digest(body)}

    def normalize(self, payload: dict[str, Any]) -> AlertEvent:
        if payload.get("type") != "usage.alert":
            raise NotAnAlert(f"type {payload.get('type')!r}")
        return build_event(
            id=payload["id"],
            provider=self.name,
            type="alert.triggered",
            alert_id=payload["alert"],
            alert_name=None,
            meter_id=None,
            customer_id=payload.get("customer"),
            subscription_id=None,
            threshold=None,
            threshold_mode=None,
            value=None,
            occurred_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
            livemode=None,
            raw=payload,
        )


def _toy_alert(event_id: str = "toy_1") -> dict[str, Any]:
    return {"id": event_id, "type": "usage.alert", "alert": "al_1", "customer": "c_1"}


async def _post(client: httpx.AsyncClient, payload: Any, provider: Provider) -> httpx.Response:
    body = json.dumps(payload).encode()
    return await client.post(f"/{provider.name}", content=body, headers=provider.sign(body))


@pytest.mark.parametrize("mode", ["inline", "queued"])
async def test_a_provider_defined_in_a_test_is_served_verified_deduplicated_and_dispatched(
    tmp_path: Path, mode: Literal["inline", "queued"]
) -> None:
    toy = Toy()
    hooks = AlertHooks(providers=[toy], store=f"sqlite:///{tmp_path / 'toy.db'}", mode=mode)
    seen: list[AlertEvent] = []
    hooks.add_handler(seen.append, "alert.triggered", provider="toy")
    assert list(hooks.providers) == ["toy"] and hooks.toy is toy
    transport = httpx.ASGITransport(app=hooks)
    async with hooks.lifespan(), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        first = await _post(c, _toy_alert(), toy)
        assert first.json() == {"status": "accepted"}
        await wait_until(lambda: len(seen) == 1, what="the handler")
        assert (await _post(c, _toy_alert(), toy)).json() == {"status": "duplicate"}
        assert (await _post(c, {"id": "toy_2", "type": "other"}, toy)).json() == {
            "status": "ignored"
        }
        unsigned = await c.post("/toy", content=json.dumps(_toy_alert("toy_3")).encode())
        assert (unsigned.status_code, unsigned.json()) == (
            400,
            {"error": "missing X-Toy-Signature"},
        )
        assert (await c.post("/stripe", content=b"{}")).status_code == 404
        stored = await hooks.store.get("toy", "toy_1")
        assert stored is not None and [o.status for o in stored.outcomes] == ["done"]
    (event,) = seen
    assert (event.provider, event.id, event.alert_id, event.customer_id) == (
        "toy",
        "toy_1",
        "al_1",
        "c_1",
    )


async def test_the_receiver_without_asgi_answers_a_pair(caplog: pytest.LogCaptureFixture) -> None:
    toy = Toy()
    hooks = AlertHooks(providers=[toy], store="memory://")
    body = json.dumps(_toy_alert()).encode()
    status, answer_body = await hooks.receive(toy, body, {"x-toy-signature": "00"})
    assert (status, json.loads(answer_body)) == (400, {"error": "bad signature"})
    signed = {k.lower(): v for k, v in toy.sign(body).items()}
    assert await hooks.receive(toy, body, signed) == (200, b'{"status":"accepted"}')
    assert logged(caplog, "toy delivery rejected (400): bad signature", level=logging.WARNING)


def test_an_answer_is_a_status_and_body_pair_with_headers() -> None:
    plain = Answer(200, b"{}")
    challenged = Answer(401, b"{}", {"www-authenticate": 'Basic realm="x"'})
    status, body = challenged
    assert (status, body) == (401, b"{}") and challenged == (401, b"{}")
    assert (plain.status, plain.body, plain.headers) == (200, b"{}", {})
    assert challenged.headers == {"www-authenticate": 'Basic realm="x"'}


def test_rejection_log_holds_back_repeats_and_counts_them(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = RejectionLog(interval=10.0, clock=lambda: now[0])
    caplog.set_level(logging.WARNING)
    for _ in range(4):
        log.warn("toy", "bad signature", "toy rejected: %s", "bad signature")
    log.warn("toy", "missing header", "toy rejected: %s", "missing header")
    now[0] = 9.9
    log.warn("toy", "bad signature", "toy rejected: %s", "bad signature")
    now[0] = 10.0
    log.warn("toy", "bad signature", "toy rejected: %s", "bad signature")
    now[0] = 25.0
    log.warn("toy", "bad signature", "toy rejected: %s", "bad signature")
    assert logged(caplog, "toy rejected") == [
        "toy rejected: bad signature",
        "toy rejected: missing header",
        "toy rejected: bad signature (4 more like it in the last 10 s)",
        "toy rejected: bad signature",
    ]


@pytest.mark.parametrize("mode", ["inline", "queued"])
def test_the_test_client_signs_for_a_provider_defined_here_and_events_lists_it(
    tmp_path: Path, mode: Literal["inline", "queued"]
) -> None:
    from click.testing import CliRunner

    from alerthooks.cli import cli
    from alerthooks.testing import SyncAlertHooksClient

    db = tmp_path / "toy.db"
    hooks = AlertHooks(providers=[Toy()], store=f"sqlite:///{db}", mode=mode)
    seen: list[str] = []
    hooks.add_handler(lambda event: seen.append(event.id), "alert.triggered", name="toy.seen")
    with SyncAlertHooksClient(hooks) as client:
        answer = client.deliver("toy", _toy_alert("toy_9"))
        assert answer.json() == {"status": "accepted"}
        again = client.deliver("toy", _toy_alert("toy_9"))
        assert again.json() == {"status": "duplicate"}
    assert seen == ["toy_9"]
    listed = CliRunner().invoke(cli, ["events", "--store", f"sqlite:///{db}"])
    assert listed.exit_code == 0, listed.output
    (row,) = [line.split("\t") for line in listed.output.splitlines()[1:]]
    assert row[1:7] == ["toy", "toy_9", "usage.alert", "-", "toy.seen", "done"]


# -- hooks.receive answers as HTTP does ---------------------------------------------------------


def _stripe_signed(payload: Any, *, secret: str = STRIPE_SECRET, timestamp: int | None = None):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return "stripe", body, {"stripe-signature": stripe_signature_header(body, secret, timestamp)}


def _chargebee(payload: Any, auth: tuple[str, str] = (CB_USER, CB_PASSWORD)):
    body = json.dumps(payload).encode()
    return "chargebee", body, {k.lower(): v for k, v in chargebee_auth_headers(*auth).items()}


def _failing(event: AlertEvent) -> None:
    raise RuntimeError("boom")


# Every answer the receiver decides: (provider, body, lower-case headers), sent once or twice.
AGREEMENT = {
    "accepted": lambda: _stripe_signed(stripe_alert_triggered(id="evt_same")),
    "bad signature": lambda: _stripe_signed(stripe_alert_triggered(), secret="whsec_other"),
    "stale signature": lambda: _stripe_signed(stripe_alert_triggered(), timestamp=1),
    "missing signature": lambda: ("stripe", json.dumps(stripe_alert_triggered()).encode(), {}),
    "wrong basic auth": lambda: _chargebee(chargebee_alert_status_changed(), ("u", "wrong")),
    "not UTF-8": lambda: _stripe_signed(b'{"id": "\xff"}'),
    "invalid JSON": lambda: _stripe_signed(b"{"),
    "not an object": lambda: _stripe_signed(b"[1]"),
    "not an alert": lambda: _stripe_signed(stripe_customer_created()),
    "unparsed": lambda: _stripe_signed(spend_alert()),
    "a handler fails": lambda: _chargebee(chargebee_alert_status_changed(), (CB_USER, CB_PASSWORD)),
    "not configured": lambda: ("orb", b"{}", {}),
}


def _agreement_hooks() -> AlertHooks:
    hooks = AlertHooks(
        providers=[Stripe(STRIPE_SECRET), Chargebee((CB_USER, CB_PASSWORD)), Orb([])],
        store="memory://",
    )
    hooks.add_handler(_failing, "alert.triggered", name="fails", provider="chargebee")
    return hooks


@pytest.mark.parametrize("case", list(AGREEMENT))
async def test_hooks_receive_answers_as_http_does(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    provider_name, body, headers = AGREEMENT[case]()
    direct, served = _agreement_hooks(), _agreement_hooks()
    transport = httpx.ASGITransport(app=served)
    answers: list[tuple[int, Any, str | None]] = []
    logs: list[list[str]] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for _ in range(2):  # twice: a duplicate is decided by the receiver too
            caplog.clear()
            result = await direct.receive(direct.providers[provider_name], body, headers)
            by_receive = (
                result.status,
                json.loads(result.body),
                result.headers.get("www-authenticate"),
            )
            said = sorted(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
            caplog.clear()
            response = await client.post(f"/{provider_name}", content=body, headers=headers)
            by_http = (
                response.status_code,
                response.json(),
                response.headers.get("www-authenticate"),
            )
            assert by_receive == by_http
            assert said == sorted(
                r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
            )
            answers.append(by_http)
            logs.append(said)
    await direct.shutdown()
    await served.shutdown()
    if case == "not configured":
        assert answers[0][:2] == (503, {"error": "provider not configured"})
        assert logs[0] == [
            "orb webhooks are refused: no credentials configured (set ORB_WEBHOOK_SECRET)"
        ]
    elif case == "accepted":
        assert [a[1] for a in answers] == [{"status": "accepted"}, {"status": "duplicate"}]
    elif case == "wrong basic auth":
        assert answers[0][0] == 401 and answers[0][2] is not None


async def test_an_unconfigured_provider_reads_no_body_over_http() -> None:
    """The receiver refuses it before the ASGI layer reads the body: a body over the limit to
    an unconfigured provider is 503, not 413."""
    hooks = AlertHooks(providers=[Orb([])], store="memory://", max_body_bytes=10)
    transport = httpx.ASGITransport(app=hooks)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post("/orb", content=b"x" * 100)
    assert (response.status_code, response.json()) == (503, {"error": "provider not configured"})
