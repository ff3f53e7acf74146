"""The public surface of each package, pinned (as httpx's tests/test_exported_members.py does):
``__all__`` is exactly the list below, every name in it exists and is documented, and nothing
else the package defines is public by accident. Changing a list here is changing the public API:
say so in CHANGELOG.md."""

from __future__ import annotations

import ast
import importlib
import inspect
import itertools
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

PINNED: dict[str, list[str]] = {
    "alerthooks": ["AlertEvent", "AlertHooks", "AlertState", "Dispatcher"],
    "alerthooks.providers": [
        "BUILTIN",
        "Autumn",
        "Chargebee",
        "EventsAPI",
        "Flexprice",
        "Lago",
        "Metronome",
        "MissingCredentials",
        "NotAnAlert",
        "OpenMeter",
        "Orb",
        "Provider",
        "Rejected",
        "RemoteStatus",
        "SecretProvider",
        "StandardWebhooksProvider",
        "StatusAPI",
        "Stripe",
        "Subject",
        "Unavailable",
        "build_event",
        "builtin_providers",
        "checked_event",
    ],
    "alerthooks.testing": [
        "AlertHooksClient",
        "FakeAPI",
        "FakeChargebee",
        "FakeLago",
        "FakeMetronome",
        "FakeOpenMeter",
        "FakeOrb",
        "FakeStripe",
        "Fault",
        "SyncAlertHooksClient",
        "autumn_event",
        "build_sample",
        "chargebee_alert_status_changed",
        "chargebee_auth_headers",
        "chargebee_subscription_created",
        "default_sample",
        "find_hooks",
        "flexprice_event",
        "lago_event",
        "load_sample",
        "metronome_event",
        "openmeter_event",
        "orb_event",
        "register_sample",
        "register_samples",
        "sample_names",
        "stripe_alert_recovered",
        "stripe_alert_triggered",
        "stripe_customer_created",
        "stripe_signature_header",
        "stripe_thin_event",
    ],
    "alerthooks.manager": [
        "PROVIDERS",
        "AlertEntry",
        "AlertManager",
        "ApplyResult",
        "Change",
        "ChangeKind",
        "ChargebeeAPI",
        "ChargebeeAlert",
        "ChargebeeConfig",
        "ChargebeeCredentials",
        "Config",
        "ConfigError",
        "CreatedEndpoint",
        "Credentials",
        "NewEndpointSecret",
        "Outcome",
        "Plan",
        "PlanError",
        "ProviderAPI",
        "ProviderCredentials",
        "ProviderError",
        "ProviderPlan",
        "ProviderSpec",
        "ProviderTable",
        "RemoteAlert",
        "RemoteEndpoint",
        "RetryPolicy",
        "StripeAPI",
        "StripeAlert",
        "StripeConfig",
        "StripeCredentials",
        "Threshold",
        "apply_plan",
        "build_plan",
        "chargebee_site_mode",
        "close_apis",
        "diff_alerts",
        "diff_endpoint",
        "idempotency_key",
        "load_config",
        "make_apis",
        "mark",
        "parse_config",
        "provider_spec",
        "register",
        "render_plan",
        "split_marker",
        "stripe_key_mode",
    ],
}

# Internal field readers for normalizers: importable from providers.base, not public.
FIELD_READERS = ("text", "mapping", "number", "decimal", "timestamp", "clean_key")


def _documented_data(module: ModuleType, name: str) -> bool:
    """Whether ``name``, a constant, has an attribute docstring (or a ``#:`` comment) where it
    is assigned, in this module or the one it is imported from."""
    source = inspect.getsource(module)
    lines = source.splitlines()
    body = ast.parse(source).body
    for node, following in itertools.pairwise(body):
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            if node.lineno > 1 and lines[node.lineno - 2].lstrip().startswith("#:"):
                return True
            return (
                isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            )
    lazy: dict[str, str] = getattr(module, "_LAZY", {})  # a package importing on first use
    if name in lazy:
        return _documented_data(importlib.import_module(lazy[name]), name)
    for node in body:
        if isinstance(node, ast.ImportFrom) and any(a.name == name for a in node.names):
            return _documented_data(importlib.import_module(node.module or ""), name)
    return False


def _is_documented(module: ModuleType, name: str, value: Any) -> bool:
    if inspect.isclass(value):
        return bool((vars(value).get("__doc__") or "").strip())
    if callable(value):
        return bool((getattr(value, "__doc__", None) or "").strip())
    return _documented_data(module, name)


@pytest.mark.parametrize("name", list(PINNED))
def test_all_is_the_pinned_surface(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__all__ == PINNED[name]


@pytest.mark.parametrize("name", list(PINNED))
def test_every_exported_name_exists_and_is_documented(name: str) -> None:
    module = importlib.import_module(name)
    undocumented = [
        member
        for member in module.__all__
        if not _is_documented(module, member, getattr(module, member))
    ]
    assert undocumented == []


@pytest.mark.parametrize("name", list(PINNED))
def test_nothing_the_package_defines_is_public_by_accident(name: str) -> None:
    module = importlib.import_module(name)
    for member in module.__all__:  # a lazy package (manager) imports on first access
        getattr(module, member)
    public = {
        member
        for member, value in vars(module).items()
        if not member.startswith("_")
        and not inspect.ismodule(value)
        and (getattr(value, "__module__", None) or "").startswith("alerthooks")
    }
    assert sorted(public - set(module.__all__)) == []


def test_field_readers_are_importable_from_providers_base_only() -> None:
    import alerthooks.providers
    import alerthooks.providers.base

    for reader in FIELD_READERS:
        assert callable(getattr(alerthooks.providers.base, reader))
        assert not hasattr(alerthooks.providers, reader), reader
