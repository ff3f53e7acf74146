"""Mutated real payloads, signed correctly: every field of every fixture removed, nulled, retyped
and nested wrongly, one at a time, delivered through the ASGI app.

For each mutation the answer is 200 and either the handler got a valid event that equals the
fixture's normalized event in every field the mutation did not touch, or no handler ran and the
reason was logged. Never a 500, never a half-filled event.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import Chargebee, NotAnAlert, Stripe
from alerthooks.providers.chargebee import normalize as chargebee_normalize
from alerthooks.providers.stripe import normalize as stripe_normalize
from alerthooks.testing import (
    chargebee_auth_headers,
    load_sample,
    stripe_alert_triggered,
    stripe_signature_header,
)

from .conftest import CB_PASSWORD, CB_USER, STRIPE_SECRET, load_fixture
from .hostile import asgi_call

Path = tuple[str | int, ...]

# Where each normalized field comes from; a mutation at, above or below one of these paths
# "touches" the field. Fields not listed (provider, customer_id for Chargebee, …) are constants.
_ALERT_TYPE: Path = ("data", "object", "alert", "alert_type")
_SOURCES: dict[str, dict[str, list[Path]]] = {
    "stripe": {
        "id": [("id",)],
        "type": [("type",)],
        "alert_id": [("data", "object", "alert", "id")],
        "alert_name": [("data", "object", "alert", "title")],
        # alert_type says which threshold configuration is read: everything it holds.
        "kind": [_ALERT_TYPE],
        "meter_id": [
            _ALERT_TYPE,
            ("data", "object", "alert", "usage_threshold", "meter"),
            ("data", "object", "alert", "usage_threshold_config", "meter"),
        ],
        "customer_id": [
            _ALERT_TYPE,
            ("data", "object", "customer"),
            ("data", "object", "alert", "usage_threshold", "filters"),
            ("data", "object", "alert", "filter"),
            ("data", "object", "alert", "credit_balance_threshold", "filters"),
        ],
        "external_customer_id": [("data", "object", "external_customer_id")],
        "threshold": [
            _ALERT_TYPE,
            ("data", "object", "alert", "usage_threshold", "gte"),
            ("data", "object", "alert", "usage_threshold_config", "gte"),
            ("data", "object", "alert", "credit_balance_threshold", "lte"),
            ("data", "object", "alert", "spend_threshold", "gte"),
        ],
        "threshold_mode": [
            _ALERT_TYPE,
            ("data", "object", "alert", "credit_balance_threshold", "lte"),
            ("data", "object", "alert", "spend_threshold", "gte"),
        ],
        "value": [("data", "object", "value")],
        "occurred_at": [("created",)],
        "livemode": [("livemode",)],
        "alert_type": [_ALERT_TYPE],
        "currency": [
            _ALERT_TYPE,
            ("data", "object", "currency"),
            ("data", "object", "alert", "credit_balance_threshold", "lte"),
            ("data", "object", "alert", "spend_threshold", "gte"),
        ],
        "triggered_at": [("data", "object", "triggered_at")],
        "alert_key": [("data", "object", "alert", "title")],
    },
    "chargebee": {
        "id": [("id",)],
        "type": [
            ("content", "alert_status", "alarm_status"),
            ("content", "alert_status", "alert_status"),
        ],
        "alert_id": [("content", "alert", "id")],
        "alert_name": [("content", "alert", "name")],
        "meter_id": [("content", "alert", "metered_feature_id")],
        "subscription_id": [
            ("content", "alert_status", "subscription_id"),
            ("content", "alert", "subscription_id"),
        ],
        "threshold": [("content", "alert", "threshold", "value")],
        "threshold_mode": [("content", "alert", "threshold", "mode")],
        "occurred_at": [("occurred_at",)],
        "alert_type": [("content", "alert", "type")],
        "kind": [("content", "alert", "type")],
        "currency": [("content", "alert", "currency_code")],
        "triggered_at": [
            ("content", "alert_status", "alarm_triggered_at"),
            ("content", "alert", "alarm_triggered_at"),
        ],
        "alert_key": [("content", "alert", "name"), ("content", "alert", "meta")],
    },
}

_RETYPES: list[Any] = [
    "",
    "x",
    "\ud800",
    0,
    -1,
    1.5,
    10**30,
    True,
    [],
    {},
    float("nan"),
    float("inf"),
    -float("inf"),
]


def _paths(value: Any, prefix: Path = ()) -> Iterator[Path]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*prefix, index)
            yield from _paths(child, (*prefix, index))


def _get(obj: Any, path: Path) -> Any:
    for part in path:
        obj = obj[part]
    return obj


def _mutations(payload: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], list[Path]]]:
    """(description, mutated payload, paths touched) for every single-field mutation."""
    for path in _paths(payload):
        key = path[-1]
        original = _get(payload, path)
        replacements = [None, *_RETYPES, [original], {"id": original, "value": original}]
        for kind in ["remove", *range(len(replacements)), "move"]:
            if kind == "move" and not (len(path) > 1 and isinstance(key, str)):
                continue
            mutated = copy.deepcopy(payload)
            parent = _get(mutated, path[:-1])
            if kind == "remove":
                del parent[key]
                yield f"remove {path}", mutated, [path]
            elif kind == "move":
                mutated[key] = parent.pop(key)  # type: ignore[index]
                yield f"move {path} to the top level", mutated, [path, (key,)]
            else:
                new = replacements[kind]  # type: ignore[index]
                parent[key] = copy.deepcopy(new)
                yield f"set {path} to {new!r:.60}", mutated, [path]


def _touches(changed: list[Path], sources: list[Path]) -> bool:
    return any(c[: len(s)] == s or s[: len(c)] == c for c in changed for s in sources)


def _finite(value: Decimal | None) -> bool:
    return value is None or value.is_finite()


def _deliver_args(provider: str, payload: dict[str, Any]) -> tuple[str, bytes, list[Any]]:
    body = json.dumps(payload).encode("utf-8", "surrogatepass")
    if provider == "stripe":
        header = stripe_signature_header(body, STRIPE_SECRET)
        return "/stripe", body, [(b"stripe-signature", header.encode())]
    auth = chargebee_auth_headers(CB_USER, CB_PASSWORD)["Authorization"]
    return "/chargebee", body, [(b"authorization", auth.encode())]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


_FIXTURES = [
    ("stripe", "stripe_alert_triggered"),
    ("stripe", "stripe_alert_triggered_expanded_meter"),
    ("stripe", "stripe_customer_created"),
    ("chargebee", "chargebee_alert_in_alarm"),
    ("chargebee", "chargebee_alert_within_limit"),
    ("chargebee", "chargebee_subscription_created"),
    ("stripe", "stripe_alert_triggered_preview"),
    ("stripe", "stripe_alert_triggered_legacy"),
    ("chargebee", "chargebee_alert_in_alarm_legacy_status"),
    ("chargebee", "chargebee_alert_spend_exceeded"),
    ("chargebee", "chargebee_alert_credit_balance_dropped"),
    ("stripe", "stripe_alert_triggered_credit_balance"),
    ("stripe", "stripe_alert_triggered_spend"),
    ("stripe", "stripe_alert_recovered"),
]


@pytest.mark.parametrize(("provider", "sample"), _FIXTURES)
async def test_every_single_field_mutation_gives_a_whole_event_or_a_logged_ack(
    provider: str, sample: str
) -> None:
    fixture = load_fixture(sample)
    time_field = "created" if provider == "stripe" else "occurred_at"
    fixture[time_field] = int(time.time())
    normalize = stripe_normalize if provider == "stripe" else chargebee_normalize
    try:
        expected: AlertEvent | None = normalize(fixture)
    except NotAnAlert:
        expected = None
    sources = _SOURCES[provider]
    records = _Records()
    logger = logging.getLogger("alerthooks")
    logger.addHandler(records)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    problems: list[str] = []
    count = 0
    try:
        for describe, mutated, touched in _mutations(fixture):
            count += 1
            hooks = AlertHooks(
                providers=[Stripe(STRIPE_SECRET), Chargebee((CB_USER, CB_PASSWORD))],
                store="memory://",
            )
            seen: list[AlertEvent] = []
            hooks.on("*")(seen.append)
            records.messages.clear()
            path, body, headers = _deliver_args(provider, mutated)
            status, answer, _ = await asgi_call(hooks, path=path, headers=headers, chunks=[body])
            if status != 200:
                problems.append(f"{describe}: answered {status} {answer!r}")
                continue
            if not seen:
                logged = " | ".join(records.messages)
                if json.loads(answer) == {"status": "unparsed"}:
                    # An alert it cannot read is kept (with its reason) and logged, not dropped.
                    kept = await hooks.store.events(status="unparsed")
                    if len(kept) != 1 or "kept as unparsed, not dispatched: " not in logged:
                        problems.append(f"{describe}: answered unparsed, not kept: {logged}")
                elif "not an alert" not in logged and "without an id" not in logged:
                    problems.append(f"{describe}: no handler ran and no reason logged: {logged}")
                continue
            if len(seen) != 1:
                problems.append(f"{describe}: handler ran {len(seen)} times")
                continue
            event = seen[0]
            try:
                if AlertEvent.model_validate(event.model_dump()) != event:
                    problems.append(f"{describe}: the event differs from its validated model")
            except ValidationError as exc:
                problems.append(f"{describe}: the event is not a valid model: {exc}")
                continue
            if expected is None:
                # A non-alert fixture can only become an alert by touching its type.
                if not _touches(touched, sources["type"]):
                    problems.append(f"{describe}: a non-alert became an alert")
                continue
            if not (_finite(event.threshold) and _finite(event.value)):
                problems.append(f"{describe}: non-finite number {event.threshold}/{event.value}")
            if event.occurred_at.tzinfo is None:
                problems.append(f"{describe}: naive occurred_at")
            for field in AlertEvent.model_fields:
                if field == "raw":
                    continue
                if _touches(touched, sources.get(field, [])):
                    continue
                if getattr(event, field) != getattr(expected, field):
                    problems.append(
                        f"{describe}: untouched field {field} is {getattr(event, field)!r}, "
                        f"expected {getattr(expected, field)!r}"
                    )
            sent = json.loads(body)
            if json.dumps(event.raw, sort_keys=True) != json.dumps(sent, sort_keys=True):
                problems.append(f"{describe}: raw differs from the delivered payload")
    finally:
        logger.removeHandler(records)
        logger.setLevel(old_level)
    assert count > 50
    assert problems == [], "\n".join(problems[:40])


def test_normalizers_reject_non_finite_numbers() -> None:
    stripe = load_sample("stripe_alert_triggered")
    stripe["data"]["object"]["value"] = math.inf
    with pytest.raises(NotAnAlert, match="value"):
        stripe_normalize(stripe)
    chargebee = load_sample("chargebee_alert_in_alarm")
    chargebee["content"]["alert"]["threshold"]["value"] = math.nan
    with pytest.raises(NotAnAlert, match="value"):
        chargebee_normalize(chargebee)


def test_a_field_the_model_rejects_is_not_an_alert_rather_than_an_error() -> None:
    payload = load_sample("chargebee_alert_in_alarm")
    payload["id"] = "ev_" + "x"  # valid
    event = chargebee_normalize(payload)
    assert event.id == "ev_x"
    from alerthooks.providers import build_event

    with pytest.raises(NotAnAlert, match="type"):
        build_event(**{**event.model_dump(), "type": "alert.exploded"})


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_hostile_ids_and_error_texts_never_fail_a_durable_store(
    backend: str, tmp_path: Any
) -> None:
    """A verified payload whose id or type no database can key on (NUL, lone surrogates, huge)
    is acknowledged as having no usable id, not answered 503 forever; a handler error message
    with such characters is recorded like any other."""
    from .stores import store_url

    async with store_url(backend, tmp_path) as url:
        hooks = AlertHooks(
            providers=[Stripe(STRIPE_SECRET), Chargebee((CB_USER, CB_PASSWORD))], store=url
        )
        calls: list[str] = []

        @hooks.on("*")
        def fails_once(event: AlertEvent) -> None:
            calls.append(event.id)
            if len(calls) == 1:
                raise ValueError("bad \x00 byte and \ud800 surrogate")

        try:
            for key, value in [
                ("id", "evt_\ud800"),
                ("id", "evt_\x00"),
                ("id", "evt_" + "x" * 5000),
                ("id", "evt_é"),
                ("type", "billing.alert.triggered\x00"),
            ]:
                payload = stripe_alert_triggered()
                payload[key] = value
                path, body, headers = _deliver_args("stripe", payload)
                status, answer, _ = await asgi_call(
                    hooks, path=path, headers=headers, chunks=[body]
                )
                assert status == 200, (key, value, answer)
            good = stripe_alert_triggered()
            path, body, headers = _deliver_args("stripe", good)
            status, _, _ = await asgi_call(hooks, path=path, headers=headers, chunks=[body])
            assert status == 500  # the handler failed; its error text was stored
            stored = await hooks.store.get("stripe", good["id"])
            assert stored is not None
            assert stored.outcomes[0].status == "failed"
            assert "bad \\x00 byte" in (stored.outcomes[0].last_error or "")
            status, _, _ = await asgi_call(hooks, path=path, headers=headers, chunks=[body])
            assert status == 200
            assert calls == [good["id"], good["id"]]
        finally:
            await hooks.shutdown()
