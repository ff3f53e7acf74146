"""Settings that would weaken authentication are refused or fail closed: a Stripe tolerance of
0 or less (the Stripe SDK takes 0 as "no staleness check"), and a Chargebee username without a
password or a password without a username, from arguments or from the environment."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from alerthooks import AlertHooks
from alerthooks.providers import Chargebee, Stripe
from alerthooks.testing import chargebee_alert_status_changed, chargebee_auth_headers

from .conftest import STRIPE_SECRET, encode

USER_ENV, PASSWORD_ENV = "CHARGEBEE_WEBHOOK_USERNAME", "CHARGEBEE_WEBHOOK_PASSWORD"


@pytest.mark.parametrize("tolerance", [0, -1, -300])
def test_stripe_tolerance_of_zero_or_less_is_refused(tolerance: int) -> None:
    with pytest.raises(ValueError, match="stripe_tolerance") as info:
        Stripe(STRIPE_SECRET, tolerance=tolerance)
    assert repr(tolerance) in str(info.value)
    with pytest.raises(ValueError, match="stripe_tolerance"):
        Stripe.from_env(tolerance=tolerance)


@pytest.mark.parametrize("tolerance", [True, 1.5, "300"])
def test_stripe_tolerance_that_is_not_whole_seconds_is_refused(tolerance: Any) -> None:
    with pytest.raises(ValueError, match="stripe_tolerance"):
        Stripe(STRIPE_SECRET, tolerance=tolerance)


@pytest.mark.parametrize("tolerance", [-1, -300])
def test_alerthooks_refuses_a_negative_stripe_tolerance(tolerance: int) -> None:
    with pytest.raises(ValueError, match="stripe_tolerance"):
        AlertHooks(providers=[Stripe(STRIPE_SECRET, tolerance=tolerance)], store="memory://")


def test_alerthooks_refuses_a_stripe_tolerance_of_zero() -> None:
    with pytest.raises(ValueError, match="stripe_tolerance"):
        AlertHooks(providers=[Stripe(STRIPE_SECRET, tolerance=0)], store="memory://")


def test_a_positive_stripe_tolerance_is_kept() -> None:
    hooks = AlertHooks(providers=[Stripe(STRIPE_SECRET, tolerance=1)], store="memory://")
    stripe = hooks.providers["stripe"]
    assert isinstance(stripe, Stripe)
    assert stripe.tolerance == 1


# -- Chargebee: half a credential pair is no credential ------------------------------------------


@pytest.fixture(autouse=True)
def _no_chargebee_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (USER_ENV, PASSWORD_ENV, "CHARGEBEE_SITE", "CHARGEBEE_API_KEY"):
        monkeypatch.delenv(name, raising=False)


async def _post_as(hooks: AlertHooks, user: str, password: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=hooks)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.post(
            "/chargebee",
            content=encode(chargebee_alert_status_changed()),
            headers=chargebee_auth_headers(user, password),
        )


def _hooks_from_arguments(user: str, password: str) -> AlertHooks:
    return AlertHooks(providers=[Chargebee((user, password))], store="memory://")


def _hooks_from_env(user: str, password: str, monkeypatch: pytest.MonkeyPatch) -> AlertHooks:
    if user:
        monkeypatch.setenv(USER_ENV, user)
    if password:
        monkeypatch.setenv(PASSWORD_ENV, password)
    return AlertHooks(store="memory://")


@pytest.mark.parametrize("source", ["arguments", "env"])
@pytest.mark.parametrize(("user", "password"), [("cb-user", ""), ("", "cb-password")])
async def test_half_a_chargebee_credential_is_not_configured_answers_503_and_warns(
    source: str,
    user: str,
    password: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if source == "arguments":
        hooks = _hooks_from_arguments(user, password)
    else:
        hooks = _hooks_from_env(user, password, monkeypatch)
    chargebee = hooks.providers["chargebee"]
    assert isinstance(chargebee, Chargebee)
    assert not chargebee.configured
    assert chargebee.credentials == ()
    with caplog.at_level(logging.WARNING, logger="alerthooks"):
        # What the half pair would let through, if it counted.
        response = await _post_as(hooks, user, password)
    assert response.status_code == 503
    assert response.json() == {"error": "provider not configured"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("chargebee" in m and USER_ENV in m and PASSWORD_ENV in m for m in warnings), warnings
    with pytest.raises(ValueError, match=USER_ENV):
        chargebee.sign(b"{}")


@pytest.mark.parametrize("source", ["arguments", "env"])
async def test_a_whole_chargebee_credential_pair_is_accepted(
    source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if source == "arguments":
        hooks = _hooks_from_arguments("cb-user", "cb-password")
    else:
        hooks = _hooks_from_env("cb-user", "cb-password", monkeypatch)
    assert hooks.providers["chargebee"].configured
    assert (await _post_as(hooks, "cb-user", "cb-password")).status_code == 200
    assert (await _post_as(hooks, "cb-user", "")).status_code == 401


def test_a_half_pair_beside_a_whole_one_is_ignored() -> None:
    chargebee = Chargebee([("cb-user", ""), ("rotated", "secret")])
    assert chargebee.credentials == (("rotated", "secret"),)
    assert chargebee.incomplete == 1
