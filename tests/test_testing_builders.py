"""alerthooks.testing's payload builders and the sample registry: realistic, fresh ids,
overrides, named samples per provider, defaults, and a new provider's own samples."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest

from alerthooks.providers import BUILTIN, NotAnAlert, Provider, chargebee, stripe
from alerthooks.testing import (
    build_sample,
    chargebee_alert_status_changed,
    chargebee_subscription_created,
    default_sample,
    load_sample,
    register_sample,
    sample_names,
    samples,
    stripe_alert_triggered,
    stripe_customer_created,
)
from alerthooks.testing.samples import merge_overrides

BUILDERS = [
    stripe_alert_triggered,
    stripe_customer_created,
    chargebee_alert_status_changed,
    chargebee_subscription_created,
]


@pytest.mark.parametrize("builder", BUILDERS)
def test_every_call_gets_a_fresh_event_id_unless_given_one(builder: object) -> None:
    assert callable(builder)
    first, second = builder(), builder()
    assert first["id"] != second["id"]
    assert builder(id="evt_given")["id"] == "evt_given"


def test_stripe_alert_fields_normalize_as_given() -> None:
    event = stripe.normalize(
        stripe_alert_triggered(
            alert_id="alrt_1",
            title="Calls",
            meter="mtr_1",
            gte=10,
            customer="cus_1",
            value=12,
            created=1_700_000_000,
            livemode=True,
        )
    )
    assert (event.alert_id, event.alert_name, event.meter_id, event.customer_id) == (
        "alrt_1",
        "Calls",
        "mtr_1",
        "cus_1",
    )
    assert (event.threshold, event.value, event.livemode) == (Decimal(10), Decimal(12), True)
    assert event.occurred_at.timestamp() == 1_700_000_000


def test_stripe_alert_is_recent_so_it_reads_as_a_fresh_delivery() -> None:
    assert abs(stripe_alert_triggered()["created"] - time.time()) < 5


def test_expanded_meter_and_recursive_overrides() -> None:
    payload = stripe_alert_triggered(expanded_meter=True, data={"object": {"value": 7}})
    assert isinstance(payload["data"]["object"]["alert"]["usage_threshold"]["meter"], dict)
    event = stripe.normalize(payload)
    assert event.value == Decimal(7)
    assert event.customer_id == payload["data"]["object"]["customer"]


@pytest.mark.parametrize(
    ("alarm", "event_type"), [("in_alarm", "alert.triggered"), ("within_limit", "alert.cleared")]
)
def test_chargebee_alarm_status_picks_the_event_type(alarm: str, event_type: str) -> None:
    event = chargebee.normalize(
        chargebee_alert_status_changed(
            alarm,  # type: ignore[arg-type]
            alert_id="alert_1",
            name="Storage",
            metered_feature_id="storage",
            subscription_id="sub_1",
            threshold={"value": 90},
        )
    )
    assert (event.type, event.alert_id, event.alert_name) == (event_type, "alert_1", "Storage")
    assert (event.meter_id, event.subscription_id, event.threshold) == (
        "storage",
        "sub_1",
        Decimal(90),
    )


@pytest.mark.parametrize("builder", [stripe_customer_created, chargebee_subscription_created])
def test_non_alert_events_are_not_alerts(builder: object) -> None:
    assert callable(builder)
    normalize = stripe.normalize if builder is stripe_customer_created else chargebee.normalize
    with pytest.raises(NotAnAlert):
        normalize(builder())


@pytest.mark.parametrize("name", sample_names())
def test_build_sample_is_the_named_sample_with_a_fresh_id(name: str) -> None:
    built, stored = build_sample(name), load_sample(name)
    [sample] = [s for s in samples.samples() if s.name == name]
    kit = next(cls for cls in BUILTIN if cls.name == sample.provider)()
    assert kit.event_type(built) == kit.event_type(stored)
    if kit.event_id(stored) is None:
        # Lago, Autumn, Flexprice: the id is the delivery's header, fresh on every sign().
        assert kit.event_id(built) is None
        return
    assert built["id"] != stored["id"]
    assert build_sample(name)["id"] != built["id"]


def test_sample_names_by_provider() -> None:
    assert sample_names("stripe") == [
        "stripe_alert_recovered",
        "stripe_alert_triggered",
        "stripe_alert_triggered_credit_balance",
        "stripe_alert_triggered_expanded_meter",
        "stripe_alert_triggered_spend",
        "stripe_customer_created",
        "stripe_thin_alert_triggered",
    ]
    assert sample_names("chargebee") == [
        "chargebee_alert_credit_balance_dropped",
        "chargebee_alert_in_alarm",
        "chargebee_alert_spend_exceeded",
        "chargebee_alert_within_limit",
        "chargebee_subscription_created",
    ]
    providers = {s.provider for s in samples.samples()}
    assert {"stripe", "chargebee"} <= providers
    assert sorted(n for p in providers for n in sample_names(p)) == sample_names()


@pytest.mark.parametrize(
    ("provider", "name"),
    [("stripe", "stripe_alert_triggered"), ("chargebee", "chargebee_alert_in_alarm")],
)
def test_default_sample_is_the_providers_alert(provider: str, name: str) -> None:
    assert default_sample(provider) == name
    assert name in sample_names(provider)


def test_every_provider_with_samples_has_a_default_that_normalizes_as_an_alert() -> None:
    for provider in {s.provider for s in samples.samples()}:
        cls = next((c for c in BUILTIN if c.name == provider), None)
        if cls is None:
            continue
        event = cls().normalize(build_sample(default_sample(provider)))
        assert (event.provider, event.type) == (provider, "alert.triggered")


def test_default_sample_of_a_provider_without_samples_names_those_with() -> None:
    with pytest.raises(ValueError, match=r"no samples for provider 'nope'; .*chargebee, .*stripe"):
        default_sample("nope")


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by the test are forgotten after it."""
    monkeypatch.setattr(samples, "_REGISTRY", dict(samples._REGISTRY))


@pytest.mark.usefixtures("registry")
def test_a_new_provider_registers_its_samples_by_itself(tmp_path: Path) -> None:
    stored = tmp_path / "toy_alert.json"
    stored.write_text('{"id": "toy_stored", "type": "usage.alert"}')
    counter = iter(range(1, 100))

    def build() -> dict[str, object]:
        return merge_overrides(load_sample("toy_alert"), {"id": f"toy_{next(counter)}"})

    register_sample("toy_ping", provider="toy", file=stored, build=build)
    register_sample("toy_alert", provider="toy", file=stored, build=build, default=True)
    assert sample_names("toy") == ["toy_alert", "toy_ping"]
    assert "toy_alert" in sample_names()
    assert default_sample("toy") == "toy_alert"
    assert load_sample("toy_alert") == {"id": "toy_stored", "type": "usage.alert"}
    assert [build_sample("toy_alert")["id"], build_sample("toy_ping")["id"]] == ["toy_1", "toy_2"]


@pytest.mark.usefixtures("registry")
def test_without_a_default_the_first_sample_by_name_is_the_default(tmp_path: Path) -> None:
    (tmp_path / "b.json").write_text("{}")
    for name in ("toy_b", "toy_a"):
        register_sample(name, provider="toy", file=tmp_path / "b.json", build=dict)
    assert default_sample("toy") == "toy_a"


@pytest.mark.usefixtures("registry")
def test_a_sample_name_is_registered_once() -> None:
    with pytest.raises(ValueError, match="sample 'stripe_alert_triggered' is already registered"):
        register_sample("stripe_alert_triggered", provider="toy", file="x.json", build=dict)
    assert sample_names("toy") == []


def test_relative_sample_files_are_in_the_kits_fixtures_dir() -> None:
    sample = next(s for s in samples.samples("stripe") if s.name == "stripe_alert_triggered")
    assert sample.path == samples.fixtures_dir() / "stripe_alert_triggered.json"
    assert sample.path.is_file()


def test_merge_overrides_merges_dicts_and_replaces_the_rest() -> None:
    given = {"a": {"b": 1, "c": [1]}, "d": 1}
    nested = {"x": 1}
    merged = merge_overrides(given, {"a": {"c": [2], "n": nested}, "d": {"e": 2}})
    assert merged is given
    assert merged == {"a": {"b": 1, "c": [2], "n": {"x": 1}}, "d": {"e": 2}}
    nested["x"] = 2
    assert merged["a"]["n"] == {"x": 1}  # values are copied, not shared


@pytest.mark.parametrize("load", [build_sample, load_sample])
def test_unknown_sample_names_the_choices(load: object) -> None:
    assert callable(load)
    with pytest.raises(ValueError, match="unknown sample 'nope'; choose one of autumn_"):
        load("nope")


@pytest.mark.parametrize(
    ("cls", "name"), [(cls, name) for cls in BUILTIN for name in sample_names(cls.name)]
)
def test_each_sample_of_a_builtin_provider_normalizes_as_its_type_says(
    cls: type[Provider], name: str
) -> None:
    kit, provider = cls(), cls.name
    payload = build_sample(name)
    if kit.event_type(payload) in kit.alert_types:
        assert kit.normalize(payload).provider == provider
    else:
        with pytest.raises(NotAnAlert):
            kit.normalize(payload)
