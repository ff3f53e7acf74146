"""Rejected deliveries recorded by the receiver: every refusal path with its status, the source
and the claimed event id; the rate limit under a flood; and no secret in any output (rows,
console pages, logs, CLI) when recognisable secrets are planted everywhere a sender could put
them."""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from alerthooks import AlertHooks
from alerthooks.cli import cli
from alerthooks.providers import Chargebee, Metronome, Orb, Stripe
from alerthooks.rejections import RejectionRecorder
from alerthooks.store import Rejection
from alerthooks.store.memory import MemoryStore
from alerthooks.testing import (
    chargebee_alert_status_changed,
    metronome_event,
    orb_event,
    stripe_alert_triggered,
    stripe_signature_header,
)

from .conftest import encode
from .test_console import basic

# Recognisable secrets: each must never appear in anything the receiver writes or shows.
STRIPE_SECRET = "whsec_PLANTEDstripeSECRET0001"
FORGED_SIGNATURE_SECRET = "whsec_PLANTEDforgerSECRET0002"
CB_PASSWORD = "PLANTEDchargebeePASSWORD0003"
FORGED_PASSWORD = "PLANTEDforgedPASSWORD0004"
ORB_SECRET = "PLANTEDorbSECRET0005"
METRONOME_SECRET = "PLANTEDmetronomeSECRET0006"
HEADER_TOKEN = "PLANTEDheaderTOKEN0007"
BODY_SECRET = "PLANTEDbodySECRET0008"
CONSOLE_PASSWORD = "PLANTEDconsolePASSWORD0009"
PLANTED = "PLANTED"


def make_hooks(store: str, **options: object) -> AlertHooks:
    return AlertHooks(
        providers=[
            Stripe([STRIPE_SECRET]),
            Chargebee([("cb-user", CB_PASSWORD)]),
            Orb([ORB_SECRET]),
            Metronome([METRONOME_SECRET]),
        ],
        store=store,
        **options,  # type: ignore[arg-type]
    )


def client_for(hooks: AlertHooks) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=hooks, client=("203.0.113.9", 4242)),
        base_url="http://t",
    )


def forged_stripe(event_id: str) -> tuple[bytes, dict[str, str]]:
    payload = stripe_alert_triggered(id=event_id)
    payload["metadata"] = {"note": BODY_SECRET}
    body = encode(payload)
    return body, {
        "Stripe-Signature": stripe_signature_header(body, FORGED_SIGNATURE_SECRET),
        "X-Api-Key": HEADER_TOKEN,
        "Authorization": f"Bearer {HEADER_TOKEN}",
    }


async def refuse_every_way(hooks: AlertHooks) -> None:
    """One delivery refused in each way a sender can be, every one carrying planted secrets."""
    async with client_for(hooks) as client:
        body, headers = forged_stripe("evt_forged")
        assert (await client.post("/stripe", content=body, headers=headers)).status_code == 400
        forged_auth = base64.b64encode(f"cb-user:{FORGED_PASSWORD}".encode()).decode()
        cb = encode(chargebee_alert_status_changed(id="ev_forged"))
        answer = await client.post(
            "/chargebee", content=cb, headers={"Authorization": f"Basic {forged_auth}"}
        )
        assert answer.status_code == 401
        orb = encode(orb_event(id="orb_forged"))
        answer = await client.post(
            "/orb",
            content=orb,
            headers={"X-Orb-Timestamp": "2026-01-01T00:00:00", "X-Orb-Signature": f"v1={PLANTED}"},
        )
        assert answer.status_code == 400
        metronome = encode(metronome_event())
        answer = await client.post(
            "/metronome",
            content=metronome,
            headers={
                "Date": "Mon, 07 Dec 2026 00:00:00 GMT",
                "Metronome-Webhook-Signature": PLANTED,
            },
        )
        assert answer.status_code == 400
        good_auth = base64.b64encode(f"cb-user:{CB_PASSWORD}".encode()).decode()
        answer = await client.post(
            "/chargebee",
            content=b"{not json " + BODY_SECRET.encode(),
            headers={"Authorization": f"Basic {good_auth}"},
        )
        assert answer.status_code == 400
        huge = b"x" * (hooks.max_body_bytes + 1)
        answer = await client.post("/stripe", content=huge, headers={"X-Api-Key": HEADER_TOKEN})
        assert answer.status_code == 413
    await hooks._receiver.recorder.flush()


async def test_every_refusal_is_recorded_with_status_reason_source_and_claimed_id(
    tmp_path: Path,
) -> None:
    hooks = make_hooks(f"sqlite:///{tmp_path}/r.db")
    await refuse_every_way(hooks)
    found = list(await hooks.store.rejections())
    summary = [(r.provider, r.status, r.reason) for r in reversed(found)]
    assert summary == [
        ("stripe", 400, "signature mismatch"),
        ("chargebee", 401, "credentials do not match"),
        ("orb", 400, summary[2][2]),
        ("metronome", 400, summary[3][2]),
        ("chargebee", 400, "invalid JSON"),
        ("stripe", 413, "body too large"),
    ]
    assert {r.source for r in found} == {"203.0.113.9"}
    by_id = {r.event_id: r for r in found}
    assert by_id["evt_forged"].event_type == "billing.alert.triggered"
    assert "ev_forged" in by_id and "orb_forged" in by_id
    stripe = by_id["evt_forged"]
    assert stripe.body_bytes > 0 and stripe.received_at.tzinfo is not None
    await hooks.shutdown()


async def test_an_unconfigured_provider_and_a_source_not_allowed_are_recorded() -> None:
    hooks = AlertHooks(
        providers=[Stripe([]), Chargebee([("u", "p")], allowed_ips=["198.51.100.0/24"])],
        store="memory://",
    )
    async with client_for(hooks) as client:
        assert (await client.post("/stripe", content=b"{}")).status_code == 503
        assert (await client.post("/chargebee", content=b"{}")).status_code == 403
    await hooks._receiver.recorder.flush()
    found = [(r.provider, r.status, r.reason, r.source) for r in await hooks.store.rejections()]
    assert found == [
        ("chargebee", 403, "source not allowed", "203.0.113.9"),
        ("stripe", 503, "provider not configured", "203.0.113.9"),
    ]


async def test_no_planted_secret_reaches_a_row_a_page_a_log_or_the_cli(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"sqlite:///{tmp_path}/secrets.db"
    hooks = make_hooks(url)
    await refuse_every_way(hooks)
    outputs: dict[str, str] = {"rows": repr(list(await hooks.store.rejections()))}
    console = hooks.console(auth=("ops", CONSOLE_PASSWORD))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=console),
        base_url="http://t",
        headers=basic("ops", CONSOLE_PASSWORD),
    ) as browser:
        for path in ("/", "/rejected", "/rejected?provider=stripe", "/?q=evt_forged"):
            page = await browser.get(path)
            assert page.status_code == 200
            outputs[f"page {path}"] = page.text + repr(dict(page.headers))
    await hooks.shutdown()
    outputs["logs"] = (
        "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records) + caplog.text
    )
    runner = CliRunner()
    for args in (["rejections"], ["events"], ["rejections", "--provider", "chargebee"]):
        result = await asyncio.to_thread(runner.invoke, cli, [*args, "--store", url])
        assert result.exit_code == 0, result.output
        outputs[f"cli {' '.join(args)}"] = result.output
    assert "signature mismatch" in outputs["cli rejections"]
    assert "evt_forged" in outputs["page /rejected"]
    secrets = [
        STRIPE_SECRET,
        FORGED_SIGNATURE_SECRET,
        CB_PASSWORD,
        FORGED_PASSWORD,
        ORB_SECRET,
        METRONOME_SECRET,
        HEADER_TOKEN,
        BODY_SECRET,
        CONSOLE_PASSWORD,
        base64.b64encode(f"cb-user:{FORGED_PASSWORD}".encode()).decode(),
        base64.b64encode(f"cb-user:{CB_PASSWORD}".encode()).decode(),
    ]
    for where, text in outputs.items():
        assert PLANTED not in text, f"{where} shows a planted secret"
        for secret in secrets:
            assert secret not in text, f"{where} shows {secret}"


async def test_the_rate_limit_counts_what_it_does_not_write() -> None:
    store = MemoryStore()
    clock = {"now": 0.0}
    recorder = RejectionRecorder(lambda: store, rate=10, burst=100, clock=lambda: clock["now"])
    for _ in range(300):
        recorder.note("stripe", 400, "signature mismatch")
    await recorder.flush()
    assert len(await store.rejections(limit=1000)) == 100
    assert recorder.dropped == 200
    clock["now"] = 1.0  # ten more tokens
    for _ in range(20):
        recorder.note("stripe", 400, "signature mismatch")
    await recorder.flush()
    rows = list(await store.rejections(limit=1000))
    assert len(rows) == 110
    assert rows[9].dropped == 200  # the first row written after the flood says what it missed
    assert sum(r.dropped for r in rows) + len(rows) + recorder.dropped == 320


async def test_a_flood_of_bad_signatures_is_bounded_and_fully_counted() -> None:
    hooks = make_hooks("memory://")
    total = 400
    async with client_for(hooks) as client:
        body, headers = forged_stripe("evt_flood")
        for _ in range(total):
            assert (await client.post("/stripe", content=body, headers=headers)).status_code == 400
    recorder = hooks._receiver.recorder
    await recorder.flush()
    rows = list(await hooks.store.rejections(limit=10_000))
    assert len(rows) < total
    assert sum(r.dropped for r in rows) + len(rows) + recorder.dropped == total


def test_a_rejection_row_never_has_a_field_for_a_body_or_header() -> None:
    fields = set(Rejection.__dataclass_fields__)
    assert fields == {
        "received_at",
        "provider",
        "status",
        "reason",
        "source",
        "body_bytes",
        "event_id",
        "event_type",
        "dropped",
    }


def test_alerthooks_rejections_lists_newest_first_by_provider(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    hooks = make_hooks(url)
    asyncio.run(refuse_every_way(hooks))
    runner = CliRunner()
    listed = runner.invoke(cli, ["rejections", "--store", url])
    assert listed.exit_code == 0, listed.output
    lines = [line.split("\t") for line in listed.output.splitlines()]
    assert lines[0][:5] == ["time", "provider", "status", "reason", "source"]
    assert [(r[1], r[2], r[3]) for r in lines[1:3]] == [
        ("stripe", "413", "body too large"),
        ("chargebee", "400", "invalid JSON"),
    ]
    assert all(r[0].endswith("Z") and r[4] == "203.0.113.9" for r in lines[1:])
    assert len(lines) == 7
    chargebee = runner.invoke(
        cli, ["rejections", "--provider", "chargebee", "--limit", "1", "--store", url]
    )
    assert chargebee.exit_code == 0, chargebee.output
    (row,) = [line.split("\t") for line in chargebee.output.splitlines()[1:]]
    assert (row[1], row[2], row[3]) == ("chargebee", "400", "invalid JSON")
