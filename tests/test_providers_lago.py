"""What is particular to Lago: its two signature schemes (hmac; RS256 jwt whose data claim is the
body), the X-Lago-Unique-Key delivery id, and the most severe of several crossed thresholds.
What every provider does is in tests/test_provider_contract.py."""

from __future__ import annotations

import base64
import builtins
import hashlib
import hmac
import json
from decimal import Decimal
from typing import Any

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import Lago, Rejected
from alerthooks.providers.lago import jwt_headers
from alerthooks.testing.lago import lago_event

TOKEN = "lago-hmac-token"
ISSUER = "https://lago.example.com"


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


# -- hmac --------------------------------------------------------------------------------------


def test_the_hmac_signature_is_lagos_base64_hmac_sha256_of_the_body() -> None:
    body = _body(lago_event())
    # As app/models/webhook.rb: Base64.strict_encode64(OpenSSL::HMAC.digest("sha-256", key, json))
    expected = base64.b64encode(hmac.new(TOKEN.encode(), body, hashlib.sha256).digest()).decode()
    headers = {
        "x-lago-signature": expected,
        "x-lago-signature-algorithm": "hmac",
        "x-lago-unique-key": "0b6e7a0e-0000-4000-8000-000000000001",
    }
    Lago(TOKEN).verify(body, headers)
    assert Lago(TOKEN).sign(body)["X-Lago-Signature"] == expected
    Lago(["old-token", TOKEN]).verify(body, headers)  # rotation
    with pytest.raises(Rejected, match="signature mismatch"):
        Lago("another-token").verify(body, headers)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"x-lago-signature-algorithm": "hmac"}, "missing X-Lago-Signature header"),
        ({"x-lago-signature": "abc"}, "missing or unknown X-Lago-Signature-Algorithm header"),
        (
            {"x-lago-signature": "abc", "x-lago-signature-algorithm": "none"},
            "missing or unknown X-Lago-Signature-Algorithm header",
        ),
        (
            {"x-lago-signature": "é" * 10, "x-lago-signature-algorithm": "hmac"},
            "signature mismatch",
        ),
        (
            {"x-lago-signature": "a" * 1_000_000, "x-lago-signature-algorithm": "hmac"},
            "signature mismatch",
        ),
        (
            {"x-lago-signature": "abc", "x-lago-signature-algorithm": "jwt"},
            "jwt signature but no Lago public key configured",
        ),
    ],
    ids=["no-signature", "no-algorithm", "algorithm-none", "not-ascii", "huge", "jwt-no-key"],
)
def test_malformed_hmac_deliveries_are_rejected(headers: dict[str, str], reason: str) -> None:
    with pytest.raises(Rejected) as info:
        Lago(TOKEN).verify(b"{}", headers)
    assert (info.value.status, info.value.reason) == (400, reason)


# -- jwt ---------------------------------------------------------------------------------------


def _lago(private_key: rsa.RSAPrivateKey, **options: Any) -> Lago:
    return Lago(public_key=_pem(private_key), issuer=ISSUER, **options)


def test_an_rs256_jwt_signed_as_lago_signs_verifies(private_key: rsa.RSAPrivateKey) -> None:
    body = _body(lago_event())
    # As app/models/webhook.rb: JWT.encode({data: payload.to_json, iss: issuer}, key, "RS256")
    token = jwt.encode({"data": body.decode(), "iss": ISSUER}, private_key, algorithm="RS256")
    headers = {"x-lago-signature": token, "x-lago-signature-algorithm": "jwt"}
    _lago(private_key).verify(body, headers)
    # The key as GET /api/v1/webhooks/json_public_key gives it: base64 of the PEM, with newlines.
    served = base64.encodebytes(_pem(private_key).encode()).decode()
    Lago(public_key=served, issuer=ISSUER).verify(body, headers)
    # The test kit's signer makes tokens PyJWT reads as Lago's.
    made = _lower(jwt_headers(body, private_key, issuer=ISSUER))["x-lago-signature"]
    claims = jwt.decode(made, private_key.public_key(), algorithms=["RS256"], issuer=ISSUER)
    assert claims == {"data": body.decode(), "iss": ISSUER}


def _forged(private_key: rsa.RSAPrivateKey, body: bytes, case: str) -> str:
    claims = {"data": body.decode(), "iss": ISSUER}
    if case == "none":
        return jwt.api_jws.PyJWS(algorithms=["none"]).encode(
            json.dumps(claims).encode(),
            key=None,  # type: ignore[arg-type]
            algorithm="none",
        )
    if case == "hs256-with-public-key":
        # The classic confusion: the public PEM used as an HMAC secret.
        header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
        signing_input = header + b"." + payload
        mac = hmac.new(_pem(private_key).encode(), signing_input, hashlib.sha256).digest()
        return (signing_input + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()
    if case == "ps256":
        return jwt.encode(claims, private_key, algorithm="PS256")
    if case == "other-key":
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return jwt.encode(claims, other, algorithm="RS256")
    if case == "other-issuer":
        return jwt.encode({**claims, "iss": "https://evil.example"}, private_key, algorithm="RS256")
    if case == "no-issuer":
        return jwt.encode({"data": body.decode()}, private_key, algorithm="RS256")
    if case == "other-data":
        return jwt.encode({**claims, "data": body.decode() + " "}, private_key, algorithm="RS256")
    if case == "no-data":
        return jwt.encode({"iss": ISSUER}, private_key, algorithm="RS256")
    if case == "expired":
        return jwt.encode({**claims, "exp": 1}, private_key, algorithm="RS256")
    if case == "crit":
        return jwt.encode(claims, private_key, algorithm="RS256", headers={"crit": ["x"]})
    if case == "rs384":
        return jwt.encode(claims, private_key, algorithm="RS384")
    if case == "data-not-a-string":
        data = json.loads(body)
        return jwt.encode({"iss": ISSUER, "data": data}, private_key, algorithm="RS256")
    raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("none", "signature mismatch"),
        ("hs256-with-public-key", "signature mismatch"),
        ("ps256", "signature mismatch"),
        ("other-key", "signature mismatch"),
        ("other-issuer", "jwt issuer is not the configured Lago API URL"),
        ("no-issuer", "jwt issuer is not the configured Lago API URL"),
        ("other-data", "jwt data claim is not the body"),
        ("no-data", "jwt data claim is not the body"),
        ("data-not-a-string", "jwt data claim is not the body"),
        ("expired", "jwt expired"),
        ("crit", "signature mismatch"),
        ("rs384", "signature mismatch"),
    ],
)
def test_jwts_lago_would_not_send_are_rejected(
    private_key: rsa.RSAPrivateKey, case: str, reason: str
) -> None:
    body = _body(lago_event())
    headers = {"x-lago-signature": _forged(private_key, body, case)}
    headers["x-lago-signature-algorithm"] = "jwt"
    with pytest.raises(Rejected) as info:
        _lago(private_key).verify(body, headers)
    assert (info.value.status, info.value.reason) == (400, reason)


def test_a_token_far_longer_than_the_body_is_refused_unparsed(
    private_key: rsa.RSAPrivateKey,
) -> None:
    headers = {"x-lago-signature": "e" * (1 << 20), "x-lago-signature-algorithm": "jwt"}
    with pytest.raises(Rejected, match="signature mismatch"):
        _lago(private_key).verify(b"{}", headers)


@pytest.mark.parametrize(
    "key",
    ["not a key", base64.b64encode(b"-----BEGIN PUBLIC KEY-----\nxx\n").decode(), "ec"],
    ids=["garbage", "bad-pem", "ec-key"],
)
def test_a_public_key_that_is_not_rsa_pem_is_a_one_line_error(key: str) -> None:
    if key == "ec":
        key = (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
    with pytest.raises(ValueError, match=r"^Lago public key: ") as info:
        Lago(public_key=key)
    assert "\n" not in str(info.value)


def test_without_cryptography_a_jwt_key_names_the_extra(
    private_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_jwt(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "cryptography" or name.startswith("cryptography."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_jwt)
    with pytest.raises(ImportError) as info:
        _lago(private_key)
    assert str(info.value) == (
        'the jwt signature needs PyJWT[crypto]: pip install "alerthooks-sdk[lago]"'
    )
    Lago(TOKEN)  # hmac needs nothing more


def test_from_env_reads_the_token_the_key_and_the_issuer(
    private_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAGO_WEBHOOK_SECRET", f" , {TOKEN}")
    monkeypatch.setenv("LAGO_WEBHOOK_PUBLIC_KEY", _pem(private_key))
    monkeypatch.setenv("LAGO_API_URL", ISSUER + "/")
    provider = Lago.from_env()
    assert provider.secrets == (TOKEN,) and provider.issuer == ISSUER
    body = _body(lago_event())
    provider.verify(body, _lower(jwt_headers(body, private_key, issuer=ISSUER)))


@respx.mock
def test_from_env_fetches_the_public_key_with_the_api_key(
    private_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = base64.encodebytes(_pem(private_key).encode()).decode()
    route = respx.get("https://lago.example.com/api/v1/webhooks/json_public_key").respond(
        json={"webhook": {"public_key": served}}
    )
    monkeypatch.delenv("LAGO_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("LAGO_WEBHOOK_PUBLIC_KEY", raising=False)
    monkeypatch.setenv("LAGO_API_KEY", "lago-api-key")
    monkeypatch.setenv("LAGO_API_URL", ISSUER)
    provider = Lago.from_env()
    assert route.calls.last.request.headers["authorization"] == "Bearer lago-api-key"
    assert provider.configured
    body = _body(lago_event())
    provider.verify(body, _lower(jwt_headers(body, private_key, issuer=ISSUER)))


@respx.mock
def test_a_public_key_that_cannot_be_fetched_leaves_lago_unconfigured(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    respx.get("https://api.getlago.com/api/v1/webhooks/json_public_key").respond(401)
    for name in ("LAGO_WEBHOOK_SECRET", "LAGO_WEBHOOK_PUBLIC_KEY", "LAGO_API_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LAGO_API_KEY", "wrong")
    assert not Lago.from_env().configured
    assert "Lago public key not fetched" in caplog.text


# -- delivery through the app ------------------------------------------------------------------


async def _post(hooks: AlertHooks, body: bytes, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=hooks)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.post("/lago", content=body, headers=headers)


@pytest.mark.parametrize("scheme", ["hmac", "jwt"])
@pytest.mark.parametrize(
    "sample", ["lago_alert_triggered", "lago_alert_triggered_spend", "lago_alert_triggered_wallet"]
)
async def test_each_alert_shape_is_delivered_through_the_app(
    private_key: rsa.RSAPrivateKey, scheme: str, sample: str
) -> None:
    lago = Lago(TOKEN, public_key=_pem(private_key), issuer=ISSUER)
    hooks = AlertHooks(providers=[lago], store="memory://")
    seen: list[AlertEvent] = []
    hooks.add_handler(seen.append, "*", name="lago.seen")
    payload = lago_event(sample)
    body = _body(payload)
    headers = lago.sign(body) if scheme == "hmac" else jwt_headers(body, private_key, issuer=ISSUER)
    response = await _post(hooks, body, headers)
    assert (response.status_code, response.json()) == (200, {"status": "accepted"})
    again = await _post(hooks, body, headers)  # Lago's retry: the same X-Lago-Unique-Key
    assert again.json() == {"status": "duplicate"}
    [event] = seen
    alert = payload["triggered_alert"]
    assert event.id == headers["X-Lago-Unique-Key"]
    assert (event.provider, event.type) == ("lago", "alert.triggered")
    assert event.alert_id == alert["lago_alert_id"]
    assert event.alert_name == alert["alert_name"]
    assert event.alert_type == alert["alert_type"]
    assert event.customer_id == "cust_ext_5678"
    assert event.subscription_id == alert["external_subscription_id"]
    assert event.meter_id == alert["billable_metric_code"]
    assert event.value == Decimal(str(alert["current_value"]))
    assert event.occurred_at == event.triggered_at
    assert event.raw == payload
    assert event.external_customer_id == "cust_ext_5678"
    assert (
        event.kind
        == {
            "lago_alert_triggered": "usage",
            "lago_alert_triggered_spend": "spend",
            "lago_alert_triggered_wallet": "credit_balance",
        }[sample]
    )


def _crossing(current: str, previous: str, values: list[Any]) -> AlertEvent:
    payload = lago_event(
        triggered_alert={
            "current_value": current,
            "previous_value": previous,
            "crossed_thresholds": [{"code": None, "value": v, "recurring": False} for v in values],
        }
    )
    return Lago(TOKEN).normalize(payload)


def test_several_crossed_thresholds_make_one_event_with_the_most_severe() -> None:
    rising = _crossing("12500.0", "7400.0", ["10000.0", "12000.0", "8000.0"])
    assert (rising.threshold, rising.threshold_mode) == (Decimal("12000.0"), "absolute")
    falling = _crossing("40.0", "120.0", [100, 50.5, "75"])  # OpenAPI numbers and Ruby strings
    assert falling.threshold == Decimal("50.5")
    assert len(falling.raw["triggered_alert"]["crossed_thresholds"]) == 3
    none = _crossing("1", "0", [])
    assert (none.threshold, none.threshold_mode) == (None, None)


def test_an_ownership_marker_in_the_alert_name_becomes_the_alert_key() -> None:
    payload = lago_event(triggered_alert={"alert_name": "API calls [alerthooks:api-calls]"})
    event = Lago(TOKEN).normalize(payload)
    assert (event.alert_name, event.alert_key) == ("API calls", "api-calls")


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"triggered_alert": {"current_value": "lots"}}, "current_value"),
        ({"triggered_alert": {"crossed_thresholds": "10"}}, "crossed_thresholds"),
        ({"triggered_alert": {"triggered_at": "yesterday"}}, "triggered_at"),
        ({"triggered_alert": {"lago_alert_id": None}}, "lago_alert_id"),
    ],
)
async def test_an_alert_lago_would_not_send_is_kept_unparsed(
    change: dict[str, Any], why: str
) -> None:
    lago = Lago(TOKEN)
    hooks = AlertHooks(providers=[lago], store="memory://")
    body = _body(lago_event(**change))
    response = await _post(hooks, body, lago.sign(body))
    assert response.json() == {"status": "unparsed"}, why


@respx.mock(assert_all_called=False)
def test_with_an_hmac_token_the_api_key_fetches_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    route = respx.get("https://api.getlago.com/api/v1/webhooks/json_public_key").respond(500)
    for name in ("LAGO_WEBHOOK_PUBLIC_KEY", "LAGO_API_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LAGO_WEBHOOK_SECRET", TOKEN)
    monkeypatch.setenv("LAGO_API_KEY", "for-the-manager")
    assert Lago.from_env().secrets == (TOKEN,)
    assert not route.called


async def test_an_alert_resolved_webhook_clears_or_is_kept_unparsed() -> None:
    # lago-api sends none today; one with the triggered alert's shape is read as a clearing.
    lago = Lago(TOKEN)
    hooks = AlertHooks(providers=[lago], store="memory://")
    seen: list[AlertEvent] = []
    hooks.add_handler(seen.append, "*", name="lago.resolved")
    payload = lago_event()
    payload["webhook_type"] = "alert.resolved"
    body = _body(payload)
    assert (await _post(hooks, body, lago.sign(body))).json() == {"status": "accepted"}
    assert [e.type for e in seen] == ["alert.cleared"]
    unknown = {"webhook_type": "alert.resolved", "object_type": "resolved_alert", "x": {}}
    body = _body(unknown)
    assert (await _post(hooks, body, lago.sign(body))).json() == {"status": "unparsed"}
