"""The alert manager: alerts declared in ``alerts.toml``, planned and applied to each
registered provider (Stripe, Chargebee, Orb, Metronome), webhook endpoints included where the
provider's API has them (Stripe, Chargebee).

Each provider is one module (``manager/stripe.py``, ``manager/chargebee.py``, ``manager/orb.py``,
``manager/metronome.py``: its table, its credentials, its API client), listed in
:mod:`alerthooks.manager.registry`.

```python
from alerthooks.manager import AlertManager, Credentials, load_config

async with AlertManager(load_config("alerts.toml"), Credentials.from_env()) as manager:
    plan = await manager.plan(prune=False)
    result = await manager.apply(plan)
```
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Imported on first use (PEP 562), so importing one piece of the manager (its registry, one
# provider's module) does not import plan, apply and rich with it.
_LAZY: dict[str, str] = {
    "CreatedEndpoint": "alerthooks.manager.api",
    "ProviderAPI": "alerthooks.manager.api",
    "ProviderError": "alerthooks.manager.api",
    "RemoteAlert": "alerthooks.manager.api",
    "RemoteEndpoint": "alerthooks.manager.api",
    "RetryPolicy": "alerthooks.manager.api",
    "AlertManager": "alerthooks.manager.apply",
    "ApplyResult": "alerthooks.manager.apply",
    "NewEndpointSecret": "alerthooks.manager.apply",
    "Outcome": "alerthooks.manager.apply",
    "apply_plan": "alerthooks.manager.apply",
    "close_apis": "alerthooks.manager.apply",
    "idempotency_key": "alerthooks.manager.apply",
    "make_apis": "alerthooks.manager.apply",
    "ChargebeeAPI": "alerthooks.manager.chargebee",
    "ChargebeeAlert": "alerthooks.manager.chargebee",
    "ChargebeeConfig": "alerthooks.manager.chargebee",
    "ChargebeeCredentials": "alerthooks.manager.chargebee",
    "Threshold": "alerthooks.manager.chargebee",
    "chargebee_site_mode": "alerthooks.manager.chargebee",
    "Config": "alerthooks.manager.config",
    "ConfigError": "alerthooks.manager.config",
    "Credentials": "alerthooks.manager.config",
    "load_config": "alerthooks.manager.config",
    "parse_config": "alerthooks.manager.config",
    "Change": "alerthooks.manager.plan",
    "ChangeKind": "alerthooks.manager.plan",
    "Plan": "alerthooks.manager.plan",
    "PlanError": "alerthooks.manager.plan",
    "ProviderPlan": "alerthooks.manager.plan",
    "build_plan": "alerthooks.manager.plan",
    "diff_alerts": "alerthooks.manager.plan",
    "diff_endpoint": "alerthooks.manager.plan",
    "render_plan": "alerthooks.manager.plan",
    "PROVIDERS": "alerthooks.manager.registry",
    "provider_spec": "alerthooks.manager.registry",
    "register": "alerthooks.manager.registry",
    "AlertEntry": "alerthooks.manager.spec",
    "ProviderCredentials": "alerthooks.manager.spec",
    "ProviderSpec": "alerthooks.manager.spec",
    "ProviderTable": "alerthooks.manager.spec",
    "StripeAPI": "alerthooks.manager.stripe",
    "StripeAlert": "alerthooks.manager.stripe",
    "StripeConfig": "alerthooks.manager.stripe",
    "StripeCredentials": "alerthooks.manager.stripe",
    "stripe_key_mode": "alerthooks.manager.stripe",
    "mark": "alerthooks.marker",
    "split_marker": "alerthooks.marker",
}

if TYPE_CHECKING:
    from alerthooks.manager.api import (
        CreatedEndpoint,
        ProviderAPI,
        ProviderError,
        RemoteAlert,
        RemoteEndpoint,
        RetryPolicy,
    )
    from alerthooks.manager.apply import (
        AlertManager,
        ApplyResult,
        NewEndpointSecret,
        Outcome,
        apply_plan,
        close_apis,
        idempotency_key,
        make_apis,
    )
    from alerthooks.manager.chargebee import (
        ChargebeeAlert,
        ChargebeeAPI,
        ChargebeeConfig,
        ChargebeeCredentials,
        Threshold,
        chargebee_site_mode,
    )
    from alerthooks.manager.config import (
        Config,
        ConfigError,
        Credentials,
        load_config,
        parse_config,
    )
    from alerthooks.manager.plan import (
        Change,
        ChangeKind,
        Plan,
        PlanError,
        ProviderPlan,
        build_plan,
        diff_alerts,
        diff_endpoint,
        render_plan,
    )
    from alerthooks.manager.registry import PROVIDERS, provider_spec, register
    from alerthooks.manager.spec import (
        AlertEntry,
        ProviderCredentials,
        ProviderSpec,
        ProviderTable,
    )
    from alerthooks.manager.stripe import (
        StripeAlert,
        StripeAPI,
        StripeConfig,
        StripeCredentials,
        stripe_key_mode,
    )
    from alerthooks.marker import mark, split_marker


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
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
]
