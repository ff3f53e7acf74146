"""The alert manager: alerts declared in ``alerts.toml``, planned and applied to Stripe and
Chargebee, webhook endpoints included.

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
from alerthooks.manager.chargebee import ChargebeeAPI
from alerthooks.manager.config import (
    ChargebeeAlert,
    ChargebeeConfig,
    Config,
    ConfigError,
    Credentials,
    StripeAlert,
    StripeConfig,
    Threshold,
    chargebee_site_mode,
    load_config,
    parse_config,
    stripe_key_mode,
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
from alerthooks.manager.stripe import StripeAPI

__all__ = [
    "AlertManager",
    "ApplyResult",
    "Change",
    "ChangeKind",
    "ChargebeeAPI",
    "ChargebeeAlert",
    "ChargebeeConfig",
    "Config",
    "ConfigError",
    "CreatedEndpoint",
    "Credentials",
    "NewEndpointSecret",
    "Outcome",
    "Plan",
    "PlanError",
    "ProviderAPI",
    "ProviderError",
    "ProviderPlan",
    "RemoteAlert",
    "RemoteEndpoint",
    "RetryPolicy",
    "StripeAPI",
    "StripeAlert",
    "StripeConfig",
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
    "parse_config",
    "render_plan",
    "stripe_key_mode",
]
