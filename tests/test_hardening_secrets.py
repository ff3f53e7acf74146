"""Secrets and auth headers never appear in logs, exception messages, answers or ``repr()``.

Every rejection and failure path runs with all loggers capturing at DEBUG; each formatted record
(traceback included) and each answer is searched for the secrets and the headers carrying them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

import pytest
from starlette.types import Message

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import Chargebee, Rejected, Stripe
from alerthooks.providers.chargebee import verify as chargebee_verify
from alerthooks.providers.stripe import verify as stripe_verify
from alerthooks.store import Begun, Delivery, StoreError
from alerthooks.store.memory import MemoryStore
from alerthooks.testing import (
    chargebee_alert_status_changed,
    chargebee_subscription_created,
    stripe_alert_triggered,
    stripe_signature_header,
)

from .conftest import free_port
from .hostile import asgi_call

STRIPE_SECRET = "whsec_SeCrEtMaRkEr0123456789abcdef"
OLD_STRIPE_SECRET = "whsec_OlDsEcReTmArKeR987654321"
CB_USER, CB_PASSWORD = "cbUsErMaRkEr", "cbPaSs:MaRkEr:42"
ATTACKER_PASSWORD = "aTtAcKeRpAsSwOrD"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _forbidden() -> list[str]:
    """Every string that must never be shown: secrets, their parts and encoded forms."""
    values = [
        STRIPE_SECRET,
        STRIPE_SECRET.removeprefix("whsec_"),
        OLD_STRIPE_SECRET.removeprefix("whsec_"),
        CB_PASSWORD,
        ATTACKER_PASSWORD,
        _basic(CB_USER, CB_PASSWORD).split()[1],
        _basic(CB_USER, ATTACKER_PASSWORD).split()[1],
    ]
    return [v for v in values if v]


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))
        self.texts.append(repr(record.args))


@pytest.fixture
def captured() -> Iterator[_Capture]:
    capture = _Capture()
    root = logging.getLogger()
    old = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(old)


def _assert_clean(texts: Sequence[str], *extra: str) -> None:
    forbidden = [*_forbidden(), *extra]
    for text in texts:
        for secret in forbidden:
            assert secret not in text, f"secret {secret[:6]}… shown in: {text[:300]}"


class _FailingStore(MemoryStore):
    """A store whose writes fail with a message that carries a connection URL's password."""

    url = "postgresql://app:***@db/alerts"

    def __init__(self, fail_in: str) -> None:
        super().__init__()
        self.fail_in = fail_in

    async def begin(
        self, delivery: Delivery, *, owner: str, lease: float, claim: bool = True
    ) -> Begun:
        if self.fail_in == "begin":
            raise StoreError("connection refused")
        return await super().begin(delivery, owner=owner, lease=lease, claim=claim)

    async def finish(
        self,
        provider: str,
        event_id: str,
        results: Mapping[str, str | None],
        *,
        owner: str,
        retry_in: Mapping[str, float] | None = None,
        dead: Collection[str] = (),
    ) -> None:
        if self.fail_in == "finish":
            raise OSError("disk full")
        await super().finish(provider, event_id, results, owner=owner, retry_in=retry_in, dead=dead)


def _hooks(store: Any = "memory://", **kwargs: Any) -> AlertHooks:
    hooks = AlertHooks(
        providers=[Stripe([STRIPE_SECRET, OLD_STRIPE_SECRET]), Chargebee([(CB_USER, CB_PASSWORD)])],
        store=store,
        **kwargs,
    )

    @hooks.on("*")
    def ok(event: AlertEvent) -> None:
        pass

    return hooks


def _stripe(body: bytes, header: str) -> dict[str, Any]:
    return {
        "path": "/stripe",
        "headers": [(b"stripe-signature", header.encode())],
        "chunks": [body],
    }


def _chargebee(body: bytes, auth: str) -> dict[str, Any]:
    return {"path": "/chargebee", "headers": [(b"authorization", auth.encode())], "chunks": [body]}


def _deliveries() -> Iterator[tuple[str, dict[str, Any]]]:
    now = int(time.time())
    alert = json.dumps(stripe_alert_triggered()).encode()
    good = stripe_signature_header(alert, STRIPE_SECRET)
    cb_alert = json.dumps(chargebee_alert_status_changed()).encode()
    yield "stripe accepted", _stripe(alert, good)
    yield "stripe duplicate", _stripe(alert, good)
    rotated = json.dumps(stripe_alert_triggered()).encode()
    yield (
        "stripe signed with the old secret",
        _stripe(rotated, stripe_signature_header(rotated, OLD_STRIPE_SECRET)),
    )
    yield "stripe bad signature", _stripe(alert, stripe_signature_header(alert, "whsec_wrong"))
    yield "stripe stale", _stripe(alert, stripe_signature_header(alert, STRIPE_SECRET, now - 9999))
    yield "stripe signature of another body", _stripe(alert + b" ", good)
    yield "stripe malformed header", _stripe(alert, f"t=x,v1={STRIPE_SECRET}")
    yield "stripe non-ascii header", _stripe(alert, f"t={now},v1=é{STRIPE_SECRET}")
    yield "stripe missing header", {"path": "/stripe", "chunks": [alert]}
    for name, body in [
        ("invalid JSON", b"{nope"),
        ("not an object", b"[1]"),
        ("no id", json.dumps({"type": "billing.alert.triggered"}).encode()),
        ("not an alert", json.dumps(stripe_alert_triggered(type="customer.created")).encode()),
        ("broken alert", json.dumps(stripe_alert_triggered(data={"object": None})).encode()),
    ]:
        yield f"stripe {name}", _stripe(body, stripe_signature_header(body, STRIPE_SECRET))
    yield "chargebee accepted", _chargebee(cb_alert, _basic(CB_USER, CB_PASSWORD))
    yield (
        "chargebee lower-case scheme",
        _chargebee(cb_alert, "basic " + _basic(CB_USER, CB_PASSWORD).split()[1]),
    )
    yield "chargebee wrong password", _chargebee(cb_alert, _basic(CB_USER, ATTACKER_PASSWORD))
    yield "chargebee password as user", _chargebee(cb_alert, _basic(CB_PASSWORD, CB_USER))
    yield "chargebee bearer", _chargebee(cb_alert, f"Bearer {CB_PASSWORD}")
    yield "chargebee not base64", _chargebee(cb_alert, f"Basic {ATTACKER_PASSWORD}!!")
    yield (
        "chargebee no colon",
        _chargebee(cb_alert, "Basic " + base64.b64encode(ATTACKER_PASSWORD.encode()).decode()),
    )
    yield (
        "chargebee not an alert",
        _chargebee(
            json.dumps(chargebee_subscription_created()).encode(), _basic(CB_USER, CB_PASSWORD)
        ),
    )
    yield "chargebee missing header", {"path": "/chargebee", "chunks": [cb_alert]}
    yield (
        "too large by header",
        {
            **_chargebee(cb_alert, _basic(CB_USER, CB_PASSWORD)),
            "headers": [
                (b"authorization", _basic(CB_USER, CB_PASSWORD).encode()),
                (b"content-length", b"999999999"),
            ],
        },
    )
    yield (
        "too large streamed",
        _chargebee(b"x" * 5000, _basic(CB_USER, CB_PASSWORD))
        | {"chunks": [b"x" * 3000, b"x" * 3000, b"x"]},
    )
    yield (
        "bad content-length",
        {
            "path": "/stripe",
            "headers": [(b"content-length", b"-1"), (b"stripe-signature", good.encode())],
            "chunks": [alert],
        },
    )
    yield "wrong method", {"method": "GET", **_stripe(alert, good)}
    yield "unknown path", {**_stripe(alert, good), "path": "/nope"}


async def test_no_rejection_path_logs_or_answers_a_secret(captured: _Capture) -> None:
    hooks = _hooks(max_body_bytes=4096)
    answers: list[str] = []
    for name, request in _deliveries():
        status, body, _ = await asgi_call(hooks, **request)
        answers.append(f"{name}: {status} {body.decode()}")
    assert any(" 401 " in a for a in answers) and any(" 400 " in a for a in answers)
    assert any(" 413 " in a for a in answers)
    assert len(captured.texts) > 20
    with pytest.raises(AssertionError):
        _assert_clean([f"the check itself works: {STRIPE_SECRET}"])
    _assert_clean(captured.texts)
    _assert_clean(answers)


async def test_stalled_body_and_disconnect_log_no_secret(captured: _Capture) -> None:
    hooks = _hooks(body_timeout=0.05)
    auth = [(b"authorization", _basic(CB_USER, CB_PASSWORD).encode())]
    scope = {"type": "http", "method": "POST", "path": "/chargebee", "headers": auth}

    async def stalled() -> dict[str, Any]:
        await asyncio.sleep(10)
        return {}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await hooks(scope, stalled, send)
    assert sent[0]["status"] == 408

    async def gone() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    await hooks(scope, gone, send)
    _assert_clean(captured.texts)
    _assert_clean([repr(m) for m in sent])


@pytest.mark.parametrize("fail_in", ["begin", "finish"])
async def test_store_failures_log_no_secret(captured: _Capture, fail_in: str) -> None:
    hooks = _hooks(store=_FailingStore(fail_in))
    alert = json.dumps(stripe_alert_triggered()).encode()
    status, _, _ = await asgi_call(
        hooks, **_stripe(alert, stripe_signature_header(alert, STRIPE_SECRET))
    )
    assert status == 503
    status, _, _ = await asgi_call(
        hooks,
        **_chargebee(
            json.dumps(chargebee_alert_status_changed()).encode(), _basic(CB_USER, CB_PASSWORD)
        ),
    )
    assert status == 503
    assert captured.texts
    _assert_clean(captured.texts)


async def test_failing_handler_logs_no_secret(captured: _Capture) -> None:
    hooks = _hooks()

    @hooks.on("*")
    def broken(event: AlertEvent) -> None:
        raise RuntimeError("handler broke")

    alert = json.dumps(stripe_alert_triggered()).encode()
    status, _, _ = await asgi_call(
        hooks, **_stripe(alert, stripe_signature_header(alert, STRIPE_SECRET))
    )
    assert status == 500
    assert any("handler broke" in t for t in captured.texts)
    _assert_clean(captured.texts)


async def test_unconfigured_provider_warning_names_the_variable_not_a_value(
    captured: _Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("CHARGEBEE_WEBHOOK_USERNAME", raising=False)
    monkeypatch.delenv("CHARGEBEE_WEBHOOK_PASSWORD", raising=False)
    hooks = AlertHooks(store="memory://")
    alert = json.dumps(stripe_alert_triggered()).encode()
    status, _, _ = await asgi_call(
        hooks, **_stripe(alert, stripe_signature_header(alert, STRIPE_SECRET))
    )
    assert status == 503
    assert any("STRIPE_WEBHOOK_SECRET" in t for t in captured.texts)
    _assert_clean(captured.texts)


def _exception_texts(exc: BaseException) -> list[str]:
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return texts


def test_verification_errors_carry_no_secret_or_header() -> None:
    alert = json.dumps(stripe_alert_triggered()).encode()
    headers = [
        stripe_signature_header(alert, "whsec_wrong"),
        stripe_signature_header(alert, STRIPE_SECRET, int(time.time()) - 9999),
        stripe_signature_header(alert + b"x", STRIPE_SECRET),
        f"t=x,v1={STRIPE_SECRET}",
        f"t=1,v1=é{STRIPE_SECRET}",
    ]
    texts: list[str] = []
    for header in headers:
        with pytest.raises(Rejected) as info:
            stripe_verify(alert, header, [STRIPE_SECRET])
        texts += _exception_texts(info.value)
        assert header not in " ".join(_exception_texts(info.value))
    for header in [
        _basic(CB_USER, ATTACKER_PASSWORD),
        _basic(CB_PASSWORD, CB_USER),
        f"Basic {ATTACKER_PASSWORD}",
        f"Bearer {CB_PASSWORD}",
    ]:
        with pytest.raises(Rejected) as info:
            chargebee_verify(header, [(CB_USER, CB_PASSWORD)])
        texts += _exception_texts(info.value)
    _assert_clean(texts, CB_USER)


def test_repr_of_everything_holding_credentials_hides_them() -> None:
    hooks = _hooks()
    objects: list[Any] = [
        hooks,
        hooks.stripe,
        hooks.chargebee,
        hooks.store,
        hooks.dispatcher,
        *hooks.dispatcher.handlers,
    ]
    texts = [repr(o) for o in objects] + [str(o) for o in objects]
    _assert_clean(texts, CB_USER)
    assert "hidden" in repr(hooks.stripe) and "hidden" in repr(hooks.chargebee)


async def test_database_password_is_not_shown_when_the_database_is_down(
    captured: _Capture,
) -> None:
    password = "DbPaSsWoRdMaRkEr"
    url = f"postgresql://alerts:{password}@127.0.0.1:{free_port()}/test?schema=s1"
    hooks = _hooks(store=url)
    await hooks.startup()
    alert = json.dumps(stripe_alert_triggered()).encode()
    status, answer, _ = await asgi_call(
        hooks, **_stripe(alert, stripe_signature_header(alert, STRIPE_SECRET))
    )
    assert status == 503
    await hooks.shutdown()
    assert any("unavailable" in t for t in captured.texts)
    texts = [*captured.texts, answer.decode(), repr(hooks), repr(hooks.store)]
    _assert_clean(texts, password)
    assert "alerts:***@127.0.0.1" in repr(hooks)


def test_redact_url_hides_only_the_password() -> None:
    from alerthooks.store import redact_url

    assert redact_url("postgresql://u:p%40ss@db:5432/x?schema=a") == (
        "postgresql://u:***@db:5432/x?schema=a"
    )
    assert redact_url("postgresql://u@db/x") == "postgresql://u@db/x"
    assert redact_url("postgresql://u:a@b@db/x") == "postgresql://u:***@db/x"
    assert redact_url("sqlite:///alerthooks.db") == "sqlite:///alerthooks.db"
    assert redact_url("memory://") == "memory://"


async def test_repr_of_manager_and_test_kit_objects_hides_credentials() -> None:
    from alerthooks.manager.chargebee import ChargebeeAPI
    from alerthooks.manager.config import Credentials
    from alerthooks.manager.stripe import StripeAPI
    from alerthooks.providers.chargebee import EventFetcher
    from alerthooks.testing.client import AlertHooksClient

    stripe_key = "sk_test_StRiPeKeYmArKeR123"
    chargebee_key = "test_CbKeYmArKeR456"
    credentials = Credentials(
        stripe_api_key=stripe_key,
        chargebee_api_key=chargebee_key,
        chargebee_site="acme-test",
        chargebee_webhook_username=CB_USER,
        chargebee_webhook_password=CB_PASSWORD,
    )
    stripe_api = StripeAPI(stripe_key, api_base="http://127.0.0.1:9")
    chargebee_api = ChargebeeAPI(chargebee_key, "acme-test", api_base="http://127.0.0.1:9")
    fetcher = EventFetcher(site="acme-test", api_key=chargebee_key)
    hooks = _hooks()
    client = AlertHooksClient(hooks, lifespan=False)
    try:
        objects: list[Any] = [credentials, stripe_api, chargebee_api, fetcher, client]
        texts = [repr(o) for o in objects] + [str(o) for o in objects]
        _assert_clean(texts, stripe_key, chargebee_key, stripe_key[8:], CB_USER)
    finally:
        await stripe_api.aclose()
        await chargebee_api.aclose()
        await client.aclose()
