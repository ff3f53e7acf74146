"""alerts.toml validation: every problem is one line naming the alert's key and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerthooks.manager import (
    ConfigError,
    Credentials,
    chargebee_site_mode,
    load_config,
    parse_config,
    stripe_key_mode,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "alerts.toml"


def _stripe(**fields: object) -> dict[str, object]:
    alert = {"key": "api-100", "title": "API calls", "meter": "mtr_1", "gte": 100}
    alert.update(fields)
    return {"stripe": {"alerts": [alert]}}


def _chargebee(**fields: object) -> dict[str, object]:
    alert: dict[str, object] = {
        "key": "calls-80",
        "name": "Calls at 80%",
        "metered_feature_id": "api-calls",
        "threshold": {"mode": "percentage", "value": 80},
    }
    alert.update(fields)
    return {"chargebee": {"alerts": [alert]}}


def _error(data: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


def test_example_file_covers_every_field_and_is_valid() -> None:
    config = load_config(EXAMPLE)
    assert config.stripe is not None and config.chargebee is not None
    assert config.stripe.webhook_url and config.chargebee.webhook_url
    stripe_fields = set().union(*(a.model_fields_set for a in config.stripe.alerts))
    chargebee_fields = set().union(*(a.model_fields_set for a in config.chargebee.alerts))
    assert stripe_fields == set(type(config.stripe.alerts[0]).model_fields)
    assert chargebee_fields == set(type(config.chargebee.alerts[0]).model_fields)


def test_defaults() -> None:
    config = parse_config(_stripe())
    assert config.stripe is not None
    alert = config.stripe.alerts[0]
    assert alert.enabled is True and alert.customer is None
    assert config.chargebee is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_stripe(gte=1.5), "stripe.alerts[0] (key 'api-100'): gte: "),
        (_stripe(gte=0), "stripe.alerts[0] (key 'api-100'): gte: "),
        (_stripe(gte="100"), "stripe.alerts[0] (key 'api-100'): gte: "),
        (_stripe(title="x" * 250), "stripe.alerts[0] (key 'api-100'): title: at most"),
        (_stripe(meter=""), "stripe.alerts[0] (key 'api-100'): meter: "),
        (_stripe(customer=["cus_1", "cus_2"]), "stripe.alerts[0] (key 'api-100'): customer: "),
        (_stripe(enabled="yes"), "stripe.alerts[0] (key 'api-100'): enabled: "),
        (_stripe(colour="red"), "stripe.alerts[0] (key 'api-100'): colour: unknown field"),
        (
            _stripe(key="has space"),
            "stripe.alerts[0] (key 'has space'): key: must start with a letter or digit",
        ),
        (_stripe(key=None), "stripe.alerts[0]: key: "),
        (_chargebee(name="n" * 51), "chargebee.alerts[0] (key 'calls-80'): name: "),
        (
            _chargebee(metered_feature_id="f" * 51),
            "chargebee.alerts[0] (key 'calls-80'): metered_feature_id: ",
        ),
        (
            _chargebee(subscription_id="s" * 51),
            "chargebee.alerts[0] (key 'calls-80'): subscription_id: ",
        ),
        (
            _chargebee(description="d" * 65_001),
            "chargebee.alerts[0] (key 'calls-80'): description: ",
        ),
        (
            _chargebee(threshold={"mode": "ratio", "value": 1}),
            "chargebee.alerts[0] (key 'calls-80'): threshold.mode: ",
        ),
        (
            _chargebee(threshold={"mode": "absolute", "value": True}),
            "chargebee.alerts[0] (key 'calls-80'): threshold.value: must be a number",
        ),
        (
            _chargebee(threshold={"mode": "absolute", "value": -1}),
            "chargebee.alerts[0] (key 'calls-80'): threshold.value: ",
        ),
        ({"stripe": {"webhook_url": "not a url"}}, "stripe: webhook_url: must be an http"),
        ({"paypal": {}}, "paypal: unknown table"),
    ],
)
def test_invalid_field_is_one_line_naming_key_and_field(
    data: dict[str, object], expected: str
) -> None:
    message = _error(data)
    assert "\n" not in message
    assert message.startswith(f"alerts.toml: {expected}"), message


def test_duplicate_keys_are_rejected_naming_the_entries() -> None:
    data = _stripe()
    data["stripe"]["alerts"].append(dict(data["stripe"]["alerts"][0]))  # type: ignore[index]
    assert _error(data) == (
        'alerts.toml: stripe.alerts[0] and stripe.alerts[1] share key "api-100"'
    )


def test_each_duplicated_key_is_one_line_beside_the_other_problems() -> None:
    entry = {"name": "n", "metered_feature_id": "f", "threshold": {"mode": "absolute", "value": 1}}
    alerts = [
        {"key": "x", **entry},
        {"key": "y", **entry},
        {"key": " x", **entry},  # whitespace is stripped, so this is "x" too
        {"key": "y", **entry, "name": ""},  # and a problem of its own
        {"key": "x", **entry},
    ]
    lines = _error({"chargebee": {"alerts": alerts}}).splitlines()
    assert lines == [
        "alerts.toml: chargebee.alerts[0], chargebee.alerts[2] and chargebee.alerts[4]"
        ' share key "x"',
        'alerts.toml: chargebee.alerts[1] and chargebee.alerts[3] share key "y"',
        "alerts.toml: chargebee.alerts[3] (key 'y'): name: String should have at least 1 character",
    ]


def test_a_duplicate_toml_key_names_the_key_and_its_table(tmp_path: Path) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text(
        '[stripe]\nwebhook_url = "https://a.example"\n\n'
        '[[stripe.alerts]]\nkey = "a"\n\n'
        '[[stripe.alerts]]\nkey = "b"\ngte = 1\n  gte  = 2\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}: invalid TOML: key 'gte' set twice in stripe.alerts[1] (at line 10, column 11)"
    )
    path.write_text('a = 1\n[stripe]\nwebhook_url = "x"\nwebhook_url = "y"\n')
    with pytest.raises(ConfigError, match=r"key 'webhook_url' set twice in stripe \(at line 4"):
        load_config(path)
    path.write_text("a = 1\na = 2\n")
    with pytest.raises(ConfigError, match=r"invalid TOML: key 'a' set twice \(at line 2"):
        load_config(path)


def test_more_than_25_alerts_per_meter_and_customer_are_rejected() -> None:
    alerts = [
        {"key": f"a{i}", "title": "t", "meter": "mtr_1", "gte": i + 1, "customer": "cus_1"}
        for i in range(26)
    ]
    message = _error({"stripe": {"alerts": alerts}})
    assert "26 alerts on meter 'mtr_1' for cus_1" in message
    # 25 for one customer plus more for another is fine.
    alerts[-1]["customer"] = "cus_2"
    parse_config({"stripe": {"alerts": alerts}})


def test_every_problem_gets_its_own_line() -> None:
    data = _stripe(gte=0, meter="")
    lines = _error(data).splitlines()
    assert len(lines) == 2
    assert all("(key 'api-100')" in line for line in lines)


def test_unreadable_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing.toml: no such file$"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[stripe\n")
    with pytest.raises(ConfigError, match=r"bad.toml: invalid TOML: "):
        load_config(bad)


def test_key_modes() -> None:
    assert stripe_key_mode("sk_live_abc") == "live"
    assert stripe_key_mode("rk_live_abc") == "live"
    assert stripe_key_mode("sk_test_abc") == "test"
    assert stripe_key_mode("rk_test_abc") == "test"
    with pytest.raises(ConfigError, match="STRIPE_API_KEY"):
        stripe_key_mode("pk_test_abc")
    assert chargebee_site_mode("acme-test") == "test"
    assert chargebee_site_mode("acme") == "live"


def test_credentials_from_env_never_show_secrets() -> None:
    creds = Credentials.from_env(
        {
            "STRIPE_API_KEY": "sk_test_secret123",
            "CHARGEBEE_API_KEY": "test_cbsecret",
            "CHARGEBEE_SITE": "acme-test",
            "CHARGEBEE_WEBHOOK_PASSWORD": "hunter2",
            "ALERTHOOKS_STRIPE_API_BASE": "",
        }
    )
    assert creds.stripe_api_key == "sk_test_secret123"
    assert creds.stripe_api_base is None
    shown = repr(creds)
    assert "secret123" not in shown and "cbsecret" not in shown and "hunter2" not in shown


def test_a_table_built_in_python_refuses_duplicate_keys_too() -> None:
    from pydantic import ValidationError

    from alerthooks.manager import StripeAlert, StripeConfig

    alert = StripeAlert(key="a", title="t", meter="m", gte=1)
    with pytest.raises(ValidationError, match=r'alerts\[0\] and alerts\[1\] share key "a"'):
        StripeConfig(alerts=[alert, alert])


def test_names_that_moved_to_the_provider_modules_still_import_from_config() -> None:
    import alerthooks.manager.config as config_module
    from alerthooks.manager import chargebee, stripe

    assert config_module.StripeAlert is stripe.StripeAlert
    assert config_module.stripe_key_mode is stripe.stripe_key_mode
    assert config_module.ChargebeeConfig is chargebee.ChargebeeConfig
    assert config_module.STRIPE_TITLE_MAX == 256
    with pytest.raises(AttributeError):
        config_module.NoSuchName  # noqa: B018
