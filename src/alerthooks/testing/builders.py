"""Realistic provider payloads built from the samples in ``fixtures/``.

Every builder returns a fresh dict with a new event id unless one is given.
"""

from __future__ import annotations

import copy
import json
import secrets
import time
from collections.abc import Callable
from functools import cache, partial
from importlib import resources
from pathlib import Path
from typing import Any, Literal

_SAMPLES = {
    "stripe_alert_triggered": "stripe_alert_triggered.json",
    "stripe_alert_triggered_expanded_meter": "stripe_alert_triggered_expanded_meter.json",
    "stripe_customer_created": "stripe_customer_created.json",
    "chargebee_alert_in_alarm": "chargebee_alert_in_alarm.json",
    "chargebee_alert_within_limit": "chargebee_alert_within_limit.json",
    "chargebee_subscription_created": "chargebee_subscription_created.json",
}


def sample_names(provider: str | None = None) -> list[str]:
    """Names accepted by :func:`load_sample`, :func:`build_sample` and ``alerthooks send
    --sample``; with ``provider`` (``"stripe"`` or ``"chargebee"``), only that provider's."""
    return sorted(n for n in _SAMPLES if provider is None or n.startswith(provider + "_"))


_DEFAULT_SAMPLES = {"stripe": "stripe_alert_triggered", "chargebee": "chargebee_alert_in_alarm"}


def default_sample(provider: str) -> str:
    """The sample ``alerthooks send PROVIDER`` sends without ``--sample``: the provider's alert.
    Raises ``LookupError`` for a provider without samples."""
    try:
        return _DEFAULT_SAMPLES[provider]
    except KeyError:
        raise LookupError(f"no samples for provider {provider!r}") from None


def _fixtures_dir() -> Path:
    packaged = resources.files("alerthooks.testing") / "fixtures"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[3] / "fixtures"


@cache
def _sample_text(name: str) -> str:
    try:
        filename = _SAMPLES[name]
    except KeyError:
        raise ValueError(
            f"unknown sample {name!r}; choose one of {', '.join(sample_names())}"
        ) from None
    return (_fixtures_dir() / filename).read_text()


def load_sample(name: str) -> dict[str, Any]:
    """A deep copy of the named sample payload, exactly as stored."""
    result: dict[str, Any] = json.loads(_sample_text(name))
    return result


def _stripe_id() -> str:
    return "evt_" + secrets.token_hex(12)


def _chargebee_id() -> str:
    return "ev_" + secrets.token_hex(8)


def _merge(target: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def stripe_alert_triggered(
    *,
    id: str | None = None,
    alert_id: str | None = None,
    title: str | None = None,
    meter: str | dict[str, Any] | None = None,
    gte: int | None = None,
    customer: str | None = None,
    value: int | float | None = None,
    created: int | None = None,
    livemode: bool | None = None,
    expanded_meter: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """A ``billing.alert.triggered`` event. Keyword arguments set the named fields;
    ``overrides`` are merged into the event dict recursively (e.g. ``data={"object": {...}}``).
    """
    payload = load_sample(
        "stripe_alert_triggered_expanded_meter" if expanded_meter else "stripe_alert_triggered"
    )
    payload["id"] = id or _stripe_id()
    payload["created"] = int(time.time()) if created is None else created
    obj = payload["data"]["object"]
    alert = obj["alert"]
    threshold = alert["usage_threshold"]
    if alert_id is not None:
        alert["id"] = alert_id
    if title is not None:
        alert["title"] = title
    if meter is not None:
        threshold["meter"] = meter
    if gte is not None:
        threshold["gte"] = gte
    if customer is not None:
        obj["customer"] = customer
        if threshold.get("filters"):
            threshold["filters"][0]["customer"] = customer
    if value is not None:
        obj["value"] = value
    if livemode is not None:
        payload["livemode"] = obj["livemode"] = alert["livemode"] = livemode
    return _merge(payload, overrides)


def stripe_customer_created(*, id: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A ``customer.created`` event: verified and acknowledged, never an alert."""
    payload = load_sample("stripe_customer_created")
    payload["id"] = id or _stripe_id()
    payload["created"] = int(time.time())
    return _merge(payload, overrides)


def chargebee_alert_status_changed(
    alarm_status: Literal["in_alarm", "within_limit"] = "in_alarm",
    *,
    id: str | None = None,
    alert_id: str | None = None,
    name: str | None = None,
    metered_feature_id: str | None = None,
    subscription_id: str | None = None,
    threshold: dict[str, Any] | None = None,
    occurred_at: int | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """An ``alert_status_changed`` event; ``in_alarm`` normalizes to ``alert.triggered`` and
    ``within_limit`` to ``alert.cleared``. ``overrides`` merge recursively into the event."""
    sample = (
        "chargebee_alert_in_alarm" if alarm_status == "in_alarm" else "chargebee_alert_within_limit"
    )
    payload = load_sample(sample)
    payload["id"] = id or _chargebee_id()
    payload["occurred_at"] = int(time.time()) if occurred_at is None else occurred_at
    content = payload["content"]
    alert, status = content["alert"], content["alert_status"]
    status["alarm_status"] = alarm_status
    if alert_id is not None:
        alert["id"] = status["alert_id"] = alert_id
    if name is not None:
        alert["name"] = name
    if metered_feature_id is not None:
        alert["metered_feature_id"] = metered_feature_id
    if subscription_id is not None:
        status["subscription_id"] = subscription_id
    if threshold is not None:
        alert["threshold"] = {**alert["threshold"], **threshold}
    return _merge(payload, overrides)


def chargebee_subscription_created(*, id: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A ``subscription_created`` event: verified and acknowledged, never an alert."""
    payload = load_sample("chargebee_subscription_created")
    payload["id"] = id or _chargebee_id()
    payload["occurred_at"] = int(time.time())
    return _merge(payload, overrides)


def build_sample(name: str) -> dict[str, Any]:
    """The named sample as a fresh delivery: a new event id and the current time.

    ``stripe_alert_triggered_expanded_meter`` is :func:`stripe_alert_triggered` with an expanded
    meter, the ``chargebee_alert_*`` samples are :func:`chargebee_alert_status_changed`, and so on.
    """
    builders: dict[str, Callable[[], dict[str, Any]]] = {
        "stripe_alert_triggered": stripe_alert_triggered,
        "stripe_alert_triggered_expanded_meter": partial(
            stripe_alert_triggered, expanded_meter=True
        ),
        "stripe_customer_created": stripe_customer_created,
        "chargebee_alert_in_alarm": partial(chargebee_alert_status_changed, "in_alarm"),
        "chargebee_alert_within_limit": partial(chargebee_alert_status_changed, "within_limit"),
        "chargebee_subscription_created": chargebee_subscription_created,
    }
    if name not in builders:
        raise ValueError(f"unknown sample {name!r}; choose one of {', '.join(sample_names())}")
    return builders[name]()
