"""The provider contract: what every provider does, checked once over every registered provider
and a plug-in built as README's "Adding a provider" shows (examples/custom_provider.py).

A provider's own test file keeps only what is particular to it (its header formats, its payload
shapes, its API); anything every provider must do belongs here.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from alerthooks import AlertHooks
from alerthooks.providers import (
    BUILTIN,
    Provider,
    Rejected,
    SecretProvider,
    StandardWebhooksProvider,
)
from alerthooks.providers import signing as signing_module
from alerthooks.providers.base import normalized
from alerthooks.testing import build_sample, sample_names

ROOT = Path(__file__).resolve().parent.parent


def _example_provider() -> type[StandardWebhooksProvider]:
    spec = importlib.util.spec_from_file_location(
        "_example_custom_provider", ROOT / "examples" / "custom_provider.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    acme: type[StandardWebhooksProvider] = module.Acme
    return acme


Acme = _example_provider()


def _standard_secret(seed: str) -> str:
    return "whsec_" + base64.b64encode(seed.encode().ljust(24, b"-")).decode()


def _acme_alert() -> dict[str, Any]:
    # No "id": Standard Webhooks' webhook-id header is its event id.
    return {
        "type": "balance.threshold",
        "timestamp": "2026-12-07T10:00:00Z",
        "data": {"alert_id": "al_1", "customer": "cus_1", "threshold": 100, "value": 104},
    }


def _acme_other() -> dict[str, Any]:
    return {"type": "invoice.paid", "timestamp": "2026-12-07T10:00:00Z", "data": {}}


@dataclass(frozen=True)
class Case:
    """One provider under contract: how to build it with credentials (``other`` builds it with
    different ones), its alert payloads and its payloads that are not alerts."""

    cls: type[Provider]
    secret: str
    other: str
    alerts: Callable[[], list[dict[str, Any]]]
    others: Callable[[], list[dict[str, Any]]]

    @property
    def name(self) -> str:
        return self.cls.name

    def provider(self, secret: str | None = None) -> Provider:
        return self.cls.from_secret(secret or self.secret)


# The credential string each built-in's from_secret takes (what `alerthooks send --secret` does).
SECRETS: dict[str, tuple[str, str]] = {
    "stripe": ("whsec_contract_one", "whsec_contract_two"),
    "chargebee": ("contract-user:pass:word", "contract-user:other"),
    "orb": ("orb-contract-one", "orb-contract-two"),
    "metronome": ("metronome-contract-one", "metronome-contract-two"),
    "lago": ("lago-hmac-contract-one", "lago-hmac-contract-two"),
}


def _registered(name: str, alerts: bool) -> Callable[[], list[dict[str, Any]]]:
    def build() -> list[dict[str, Any]]:
        provider: Provider = next(cls for cls in BUILTIN if cls.name == name)()
        built = [build_sample(sample) for sample in sample_names(name)]
        # A delivery that refers to its event is read from the provider's API: tested with
        # the provider's fake API (tests/test_alert_family.py), not here.
        return [
            p
            for p in built
            if provider.is_alert_type(provider.event_type(p)) is alerts and not provider.refers(p)
        ]

    return build


def _secrets_for(cls: type[Provider]) -> tuple[str, str]:
    if cls.name in SECRETS:
        return SECRETS[cls.name]
    # A provider added later on the Standard Webhooks scheme needs no entry here.
    return _standard_secret(f"{cls.name}-one"), _standard_secret(f"{cls.name}-two")


CASES = [
    Case(cls, *_secrets_for(cls), _registered(cls.name, True), _registered(cls.name, False))
    for cls in BUILTIN
] + [
    Case(
        Acme,
        _standard_secret("acme-one"),
        _standard_secret("acme-two"),
        lambda: [_acme_alert()],
        lambda: [_acme_other()],
    )
]
IDS = [case.name for case in CASES]
# Providers that sign the body with a dated signature (Chargebee's Basic auth does neither).
SIGNED = [case for case in CASES if issubclass(case.cls, SecretProvider)]


def _lower(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


@pytest.fixture(params=CASES, ids=IDS)
def case(request: pytest.FixtureRequest) -> Case:
    result: Case = request.param
    return result


def test_every_provider_has_alert_and_other_payloads(case: Case) -> None:
    assert case.alerts(), f"{case.name}: no alert sample"
    assert case.others(), f"{case.name}: no sample that is not an alert"


def test_signed_deliveries_verify(case: Case) -> None:
    provider = case.provider()
    for payload in case.alerts() + case.others():
        body = _body(payload)
        provider.verify(body, _lower(provider.sign(body)))


@pytest.mark.parametrize("case", SIGNED, ids=[c.name for c in SIGNED])
def test_tampered_body_is_rejected(case: Case) -> None:
    provider = case.provider()
    body = _body(case.alerts()[0])
    headers = _lower(provider.sign(body))
    with pytest.raises(Rejected) as info:
        provider.verify(body.replace(b"}", b" }", 1), headers)
    assert info.value.status == 400


def test_other_credentials_are_rejected(case: Case) -> None:
    body = _body(case.alerts()[0])
    headers = _lower(case.provider(case.other).sign(body))
    with pytest.raises(Rejected) as info:
        case.provider().verify(body, headers)
    assert info.value.status in (400, 401)


def test_missing_signature_headers_are_rejected(case: Case) -> None:
    with pytest.raises(Rejected) as info:
        case.provider().verify(_body(case.alerts()[0]), {"content-type": "application/json"})
    assert info.value.status in (400, 401)


@pytest.mark.parametrize("case", SIGNED, ids=[c.name for c in SIGNED])
@pytest.mark.parametrize("shift", [-1, 1], ids=["stale", "future"])
def test_signatures_dated_outside_the_tolerance_are_rejected(
    case: Case, shift: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = case.provider()
    assert isinstance(provider, SecretProvider)
    body = _body(case.alerts()[0])
    headers = _lower(provider.sign(body))
    provider.verify(body, headers)
    signed, tolerance = time.time(), provider.tolerance

    class Clock:
        @staticmethod
        def time() -> float:
            # stale: now is later than the signature by more than the tolerance; future: earlier.
            return signed - shift * (tolerance + 5)

    monkeypatch.setattr(signing_module, "time", Clock)
    with pytest.raises(Rejected) as info:
        provider.verify(body, headers)
    assert (info.value.status, info.value.reason) == (400, "timestamp outside tolerance")


def test_alert_payloads_normalize(case: Case) -> None:
    provider = case.provider()
    for payload in case.alerts():
        event = normalized(provider, "evt_contract", payload)
        assert event.provider == case.name
        assert event.id == "evt_contract"
        assert event.type in ("alert.triggered", "alert.cleared")
        assert event.alert_id
        assert event.raw == payload


async def _deliver(
    hooks: AlertHooks, provider: Provider, payload: dict[str, Any], **sign: Any
) -> tuple[int, dict[str, Any], dict[str, str]]:
    body = _body(payload)
    headers = provider.sign(body, **sign)  # type: ignore[call-arg]
    transport = httpx.ASGITransport(app=hooks)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post(f"/{provider.name}", content=body, headers=headers)
    return response.status_code, response.json(), headers


async def test_alerts_are_accepted_once_then_duplicate(case: Case) -> None:
    provider = case.provider()
    hooks = AlertHooks(providers=[provider], store="memory://")
    seen: list[str] = []
    hooks.add_handler(lambda event: seen.append(event.id), "*", name="contract.seen")
    for payload in case.alerts():
        first = await _deliver(hooks, provider, payload)
        again = await hooks.receive(provider, _body(payload), _lower(first[2]))
        assert first[:2] == (200, {"status": "accepted"}), (payload, first)
        assert (again.status, json.loads(again.body)) == (200, {"status": "duplicate"})
    assert len(seen) == len(case.alerts()) == len(set(seen))


async def test_other_events_are_ignored(case: Case) -> None:
    provider = case.provider()
    hooks = AlertHooks(providers=[provider], store="memory://")
    for payload in case.others():
        status, answer, _ = await _deliver(hooks, provider, payload)
        assert (status, answer) == (200, {"status": "ignored"}), payload


async def test_alert_typed_payload_it_cannot_read_is_kept_unparsed(case: Case) -> None:
    provider = case.provider()
    hooks = AlertHooks(providers=[provider], store="memory://")
    # Only the top-level scalars: the type and the id stay, the alert's body is gone (from an
    # alert that has one: some providers' alerts are flat, e.g. Flexprice's spend alerts).
    nested = next(p for p in case.alerts() if any(isinstance(v, (dict, list)) for v in p.values()))
    payload = {k: v for k, v in nested.items() if not isinstance(v, (dict, list))}
    status, answer, headers = await _deliver(hooks, provider, payload)
    assert (status, answer) == (200, {"status": "unparsed"}), payload
    event_id = provider.event_id(payload) or provider.delivery_id(_lower(headers))
    assert event_id is not None
    stored = await hooks.store.get(provider.name, event_id)
    assert stored is not None and stored.body == _body(payload)


async def test_a_provider_without_credentials_answers_503_and_warns_once(
    case: Case, caplog: pytest.LogCaptureFixture
) -> None:
    signer = case.provider()
    unconfigured = case.cls()
    assert not unconfigured.configured
    hooks = AlertHooks(providers=[unconfigured], store="memory://")
    body = _body(case.alerts()[0])
    transport = httpx.ASGITransport(app=hooks)
    with caplog.at_level("WARNING", logger="alerthooks"):
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            for _ in range(2):
                response = await client.post(
                    f"/{case.name}", content=body, headers=signer.sign(body)
                )
                assert response.status_code == 503
    warnings = [r.getMessage() for r in caplog.records if "no credentials" in r.getMessage()]
    assert len(warnings) == 1 and case.cls.env_hint in warnings[0], warnings


async def test_a_delivery_under_other_credentials_is_refused_and_not_dispatched(
    case: Case,
) -> None:
    hooks = AlertHooks(providers=[case.provider()], store="memory://")
    seen: list[str] = []
    hooks.add_handler(lambda event: seen.append(event.id), "*", name="contract.refused")
    status, _, _ = await _deliver(hooks, case.provider(case.other), case.alerts()[0])
    assert status in (400, 401)
    assert seen == []


def test_repr_hides_the_credentials(case: Case) -> None:
    hidden = case.secret.partition(":")[2] or case.secret
    assert hidden not in repr(case.provider())


# -- Providers signed with shared secrets: rotation, env, tolerance ----------------------------


@pytest.mark.parametrize("case", SIGNED, ids=[c.name for c in SIGNED])
def test_rotated_secrets_are_all_accepted_and_the_first_signs(case: Case) -> None:
    both = case.cls([case.secret, case.other])  # type: ignore[call-arg]
    body = _body(case.alerts()[0])
    for one in (case.secret, case.other):
        both.verify(body, _lower(case.provider(one).sign(body)))
    signed = _lower(both.sign(body))
    case.provider(case.secret).verify(body, signed)
    with pytest.raises(Rejected):
        case.provider(case.other).verify(body, signed)


@pytest.mark.parametrize("case", SIGNED, ids=[c.name for c in SIGNED])
def test_from_env_reads_comma_separated_secrets(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    cls = case.cls
    assert issubclass(cls, SecretProvider)
    monkeypatch.setenv(cls.secret_env, f" {case.secret} , {case.other} ,")
    provider = cls.from_env()
    assert provider.secrets == (case.secret, case.other)
    assert provider.configured


@pytest.mark.parametrize("case", SIGNED, ids=[c.name for c in SIGNED])
def test_from_env_without_a_secret_cannot_sign_and_refuses(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    cls = case.cls
    assert issubclass(cls, SecretProvider)
    monkeypatch.delenv(cls.secret_env, raising=False)
    provider = cls.from_env()
    assert not provider.configured
    body = _body(case.alerts()[0])
    with pytest.raises(ValueError, match=cls.secret_env):
        provider.sign(body)
    with pytest.raises(Rejected) as info:
        provider.verify(body, _lower(case.provider().sign(body)))
    assert info.value.status == 400


@pytest.mark.parametrize("case", SIGNED, ids=[c.name for c in SIGNED])
@pytest.mark.parametrize("tolerance", [0, -1, True, 1.5])
def test_tolerance_must_be_a_positive_int(case: Case, tolerance: Any) -> None:
    with pytest.raises(ValueError, match="tolerance"):
        case.cls([case.secret], tolerance=tolerance)  # type: ignore[call-arg]


# -- Standard Webhooks: the official vectors, the delivery id ---------------------------------

VECTOR_KEY = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


STANDARD = [c.cls for c in CASES if issubclass(c.cls, StandardWebhooksProvider)]


@pytest.mark.parametrize("cls", STANDARD, ids=[c.name for c in STANDARD])
def test_standard_webhooks_signs_the_official_vector(cls: type[StandardWebhooksProvider]) -> None:
    provider = cls(VECTOR_KEY)
    headers = provider.sign(VECTOR_BODY, msg_id=VECTOR_ID, timestamp=VECTOR_TIMESTAMP)
    with pytest.raises(Rejected, match="timestamp outside tolerance"):
        provider.verify(VECTOR_BODY, headers)  # the vector is from 2021
    assert headers == {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    }


def _vector_headers(**changes: str | None) -> dict[str, str]:
    headers: dict[str, str | None] = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": "",
    }
    key = base64.b64decode(VECTOR_KEY.removeprefix("whsec_"))
    message = f"{VECTOR_ID}.{headers['webhook-timestamp']}.".encode() + VECTOR_BODY
    headers["webhook-signature"] = "v1," + signing_module.signature(
        key, message, signing_module.BASE64
    )
    headers.update(changes)
    return {k: v for k, v in headers.items() if v is not None}


@pytest.mark.parametrize("cls", STANDARD, ids=[c.name for c in STANDARD])
@pytest.mark.parametrize("key", [VECTOR_KEY, VECTOR_KEY.removeprefix("whsec_")])
def test_standard_webhooks_accepts_the_reference_deliveries(
    cls: type[StandardWebhooksProvider], key: str
) -> None:
    headers = _vector_headers()
    cls(key).verify(VECTOR_BODY, headers)
    valid = headers["webhook-signature"]
    wrong = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
    several = f"{wrong} v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {valid} {wrong}"
    cls(key).verify(VECTOR_BODY, _vector_headers(**{"webhook-signature": several}))
    svix = {"svix-" + name.removeprefix("webhook-"): value for name, value in headers.items()}
    cls(key).verify(VECTOR_BODY, svix)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"webhook-id": None}, "missing webhook-id header"),
        ({"webhook-timestamp": None}, "missing webhook-timestamp header"),
        ({"webhook-timestamp": "hello"}, "malformed webhook-timestamp header"),
        ({"webhook-signature": None}, "missing webhook-signature header"),
        (
            {"webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="},
            "signature mismatch",
        ),
        ({"webhook-timestamp": str(int(time.time()) - 3600)}, "timestamp outside tolerance"),
        ({"webhook-timestamp": str(int(time.time()) + 3600)}, "timestamp outside tolerance"),
    ],
    ids=["no-id", "no-timestamp", "bad-timestamp", "no-signature", "wrong", "old", "new"],
)
def test_standard_webhooks_refuses_the_reference_negative_cases(
    changes: dict[str, str | None], reason: str
) -> None:
    with pytest.raises(Rejected) as info:
        Acme(VECTOR_KEY).verify(VECTOR_BODY, _vector_headers(**changes))
    assert (info.value.status, info.value.reason) == (400, reason)


def test_standard_webhooks_makes_a_fresh_id_per_signature() -> None:
    acme = Acme(VECTOR_KEY)
    ids = {acme.sign(VECTOR_BODY)["webhook-id"] for _ in range(3)}
    assert len(ids) == 3


def test_a_secret_that_is_not_base64_is_a_one_line_error() -> None:
    with pytest.raises(ValueError, match=r"^acme webhook secret: .*base64$"):
        Acme("whsec_not base64!")


async def test_the_webhook_id_is_the_event_id_where_the_payload_has_none() -> None:
    acme = Acme(VECTOR_KEY)
    hooks = AlertHooks(providers=[acme], store="memory://")
    seen: list[str] = []
    hooks.add_handler(lambda event: seen.append(event.id), "*", name="contract.ids")
    first = await _deliver(hooks, acme, _acme_alert(), msg_id="msg_first")
    redelivered = await _deliver(hooks, acme, _acme_alert(), msg_id="msg_first")
    second = await _deliver(hooks, acme, _acme_alert(), msg_id="msg_second")
    assert [first[1], redelivered[1], second[1]] == [
        {"status": "accepted"},
        {"status": "duplicate"},
        {"status": "accepted"},
    ]
    assert seen == ["msg_first", "msg_second"]


async def test_the_payload_id_wins_over_the_webhook_id() -> None:
    acme = Acme(VECTOR_KEY)
    hooks = AlertHooks(providers=[acme], store="memory://")
    seen: list[str] = []
    hooks.add_handler(lambda event: seen.append(event.id), "*", name="contract.own")
    payload = {**_acme_alert(), "id": "evt_own"}
    assert (await _deliver(hooks, acme, payload, msg_id="msg_a"))[1] == {"status": "accepted"}
    assert (await _deliver(hooks, acme, payload, msg_id="msg_b"))[1] == {"status": "duplicate"}
    assert seen == ["evt_own"]


# -- Secrets that are empty or blank leave a provider unconfigured ----------------------------


class HandRolled(SecretProvider):
    """A plug-in that checks its own HMAC, as the issue's reporter wrote one."""

    name = "handrolled"
    secret_env = "HANDROLLED_WEBHOOK_SECRET"

    def verify(self, body: bytes, headers: Any) -> None:
        given = [headers.get("x-signature", "").encode()]
        keys = [secret.encode() for secret in self.secrets]
        if not signing_module.matches(keys, body, given):
            raise Rejected(400, "signature mismatch")

    def sign(self, body: bytes) -> dict[str, str]:
        secret = self.secrets[0] if self.secrets else ""
        return {"x-signature": signing_module.signature(secret.encode(), body)}


@pytest.mark.parametrize("cls", [HandRolled, Acme], ids=["hand-rolled", "standard-webhooks"])
@pytest.mark.parametrize("value", [None, "", " , "], ids=["unset", "empty", "blank-list"])
async def test_a_plug_in_whose_secret_env_is_unset_or_blank_fails_closed(
    cls: type[SecretProvider],
    value: str | None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if value is None:
        monkeypatch.delenv(cls.secret_env, raising=False)
    else:
        monkeypatch.setenv(cls.secret_env, value)
    provider = cls.from_env()
    assert not provider.configured and provider.secrets == ()
    body = _body(_acme_alert())
    # Signed with the empty key, as a forger would.
    key = b"" if cls is HandRolled else b"\x00"
    headers = (
        {"x-signature": signing_module.signature(key, body)}
        if cls is HandRolled
        else signing_module.standard_headers(body, key)
    )
    hooks = AlertHooks(providers=[provider], store="memory://")
    transport = httpx.ASGITransport(app=hooks)
    with caplog.at_level("WARNING"):
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.post(f"/{cls.name}", content=body, headers=headers)
    assert response.status_code == 503
    assert any("no credentials" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("secrets", [["", "  "], " , ", ["", "good"]])
def test_blank_secrets_are_dropped_wherever_they_come_from(secrets: Any) -> None:
    provider = HandRolled(secrets)
    assert provider.secrets == (("good",) if "good" in secrets else ())
    assert provider.configured is ("good" in secrets)
