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
from alerthooks.manager.config import Config, ConfigError, Credentials, load_config, parse_config
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
