"""A provider is one module and one registry entry: a toy provider defined in this file alone
is validated, planned and applied by the unchanged config, plan and apply."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from pydantic import Field

from alerthooks.manager import (
    PROVIDERS,
    AlertEntry,
    AlertManager,
    ConfigError,
    CreatedEndpoint,
    Credentials,
    ProviderCredentials,
    ProviderSpec,
    ProviderTable,
    RemoteAlert,
    RemoteEndpoint,
    RetryPolicy,
    parse_config,
    provider_spec,
    register,
)
from alerthooks.manager.api import Mode
from alerthooks.marker import mark, split_marker


class ToyAlert(AlertEntry):
    name: str = Field(min_length=1)
    limit: int = Field(gt=0)


class ToyTable(ProviderTable):
    alerts: list[ToyAlert] = Field(default_factory=list)


@dataclasses.dataclass(frozen=True, repr=False)
class ToyCredentials(ProviderCredentials):
    token: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ToyCredentials:
        return cls(token=env.get("TOY_TOKEN") or None)


class ToyAPI:
    """The toy provider's whole remote state, in memory."""

    name = "toy"
    updatable: frozenset[str] = frozenset({"limit"})
    event = "limit.reached"
    endpoint_api_version: str | None = "2"
    endpoint_version_in_place = False
    removed = "retired"

    def __init__(self, token: str) -> None:
        self.mode: Mode = "live" if token.startswith("live_") else "test"
        self.account = f"{self.mode} mode"
        self.alerts: dict[str, dict[str, Any]] = {}
        self.endpoints: list[RemoteEndpoint] = []

    def key_of(self, alert: ToyAlert) -> str:
        return alert.key

    def desired_spec(self, alert: ToyAlert) -> dict[str, Any]:
        return {"name": alert.name, "limit": alert.limit}

    def check_limits(self, desired: list[Any], kept_remote: list[RemoteAlert]) -> list[str]:
        return []

    def replace_removes_first(
        self, alert: Any, old: RemoteAlert, desired: list[Any], kept: list[RemoteAlert]
    ) -> bool:
        return False

    def _remote(self, id: str) -> RemoteAlert:
        obj = self.alerts[id]
        name, key = split_marker(obj["name"])
        return RemoteAlert("toy", id, key, obj["on"], {"name": name, "limit": obj["limit"]})

    async def list_alerts(self) -> list[RemoteAlert]:
        return [self._remote(id) for id in self.alerts]

    async def list_endpoints(self) -> list[RemoteEndpoint]:
        return list(self.endpoints)

    async def create_alert(self, alert: ToyAlert, idempotency_key: str) -> RemoteAlert:
        id = f"t{len(self.alerts) + 1}"
        self.alerts[id] = {"name": mark(alert.name, alert.key), "limit": alert.limit, "on": True}
        return self._remote(id)

    async def update_alert(self, alert_id: str, alert: ToyAlert, idempotency_key: str) -> None:
        self.alerts[alert_id].update(limit=alert.limit, on=alert.enabled)

    async def set_enabled(self, alert_id: str, enabled: bool, idempotency_key: str) -> None:
        self.alerts[alert_id]["on"] = enabled

    async def remove_alert(self, alert_id: str, idempotency_key: str) -> None:
        del self.alerts[alert_id]

    async def create_endpoint(self, url: str, idempotency_key: str) -> CreatedEndpoint:
        self.endpoints.append(RemoteEndpoint("toy", "ep1", url, (self.event,), True, "2"))
        return CreatedEndpoint("ep1", secret="toysecret")

    async def fix_endpoint(self, endpoint: RemoteEndpoint, idempotency_key: str) -> None:
        raise AssertionError("not planned here")

    async def aclose(self) -> None:
        pass


class ToySpec(ProviderSpec[ToyTable, ToyCredentials]):
    name = "toy"
    table = ToyTable
    credentials = ToyCredentials
    endpoint_secret_env = "TOY_WEBHOOK_SECRET"
    api: ToyAPI | None = None

    def check_credentials(self, credentials: ToyCredentials, table: ToyTable) -> list[str]:
        return [] if credentials.token else ["TOY_TOKEN: not set ([toy] is configured)"]

    def mode(self, credentials: ToyCredentials) -> Mode:
        return "live" if (credentials.token or "").startswith("live_") else "test"

    def make_api(
        self,
        credentials: ToyCredentials,
        table: ToyTable,
        *,
        concurrency: int,
        retry: RetryPolicy | None,
    ) -> ToyAPI:
        assert credentials.token
        if self.api is None:  # one remote account for the whole test
            self.api = ToyAPI(credentials.token)
        return self.api


@pytest.fixture
def toy() -> Iterator[ToySpec]:
    spec = ToySpec()
    register(spec)
    try:
        yield spec
    finally:
        PROVIDERS.pop("toy")


def test_the_table_is_validated_with_the_same_one_line_errors(toy: ToySpec) -> None:
    config = parse_config({"toy": {"alerts": [{"key": "a", "name": "A", "limit": 3}]}})
    assert list(config.tables) == ["toy"] and config.toy is not None
    assert config.toy.alerts[0].limit == 3 and config.stripe is None
    with pytest.raises(ConfigError) as info:
        parse_config({"toy": {"alerts": [{"key": "a", "name": "A", "limit": 0}, {"key": "a"}]}})
    assert str(info.value).splitlines() == [
        'alerts.toml: toy.alerts[0] and toy.alerts[1] share key "a"',
        "alerts.toml: toy.alerts[0] (key 'a'): limit: Input should be greater than 0",
        "alerts.toml: toy.alerts[1] (key 'a'): name: Field required",
        "alerts.toml: toy.alerts[1] (key 'a'): limit: Field required",
    ]


def test_credentials_come_from_the_spec(toy: ToySpec) -> None:
    creds = Credentials.from_env({"TOY_TOKEN": "tok_secret", "STRIPE_API_KEY": "sk_test_x"})
    assert creds.toy_token == "tok_secret" and creds.stripe_api_key == "sk_test_x"
    assert creds.of("toy") == ToyCredentials("tok_secret")
    assert "tok_secret" not in repr(creds) and "toy=ToyCredentials(token=set)" in repr(creds)
    assert Credentials(toy_token="t").of("toy") == ToyCredentials("t")
    with pytest.raises(TypeError, match="toy_colour"):
        Credentials(toy_colour="red")
    config = parse_config({"toy": {}})
    with pytest.raises(ConfigError, match=r"^TOY_TOKEN: not set \(\[toy\] is configured\)$"):
        AlertManager(config, Credentials())
    assert provider_spec("toy") is toy
    with pytest.raises(KeyError, match="unknown provider 'nope'"):
        provider_spec("nope")


async def test_planned_and_applied_like_the_builtin_ones(toy: ToySpec) -> None:
    data = {
        "toy": {
            "webhook_url": "https://h.example/toy",
            "alerts": [
                {"key": "a", "name": "A", "limit": 3},
                {"key": "b", "name": "B", "limit": 5, "enabled": False},
            ],
        }
    }
    creds = Credentials.from_env({"TOY_TOKEN": "test_tok"})
    async with AlertManager(parse_config(data), creds) as manager:
        plan = await manager.plan()
        assert [(c.provider, c.kind.value, c.key) for c in plan.changes] == [
            ("toy", "create", "a"),
            ("toy", "create", "b"),
            ("toy", "create endpoint", "https://h.example/toy"),
        ]
        assert plan.changes[1].detail == "name='B', limit=5; created disabled"
        result = await manager.apply(plan)
        assert result.ok
        (secret,) = result.secrets
        assert (secret.provider, secret.env, secret.secret) == (
            "toy",
            "TOY_WEBHOOK_SECRET",
            "toysecret",
        )
        assert toy.api is not None
        assert {o["name"]: o["on"] for o in toy.api.alerts.values()} == {
            "A [alerthooks:a]": True,
            "B [alerthooks:b]": False,
        }
        assert not (await manager.plan()).has_changes
        data["toy"]["alerts"] = data["toy"]["alerts"][:1]  # type: ignore[index]
    async with AlertManager(parse_config(data), creds) as manager:
        result = await manager.apply(await manager.plan(prune=True))
        assert [o.message for o in result.outcomes] == ["retired t2"]
        assert manager.live_providers() == []


def test_importing_one_piece_of_the_manager_imports_no_plan_or_apply() -> None:
    """The package imports its names on first use: the registry (or one provider's module)
    comes without the plan, apply and rendering code."""
    code = (
        "import sys\n"
        "import alerthooks.manager.registry\n"
        "from alerthooks.manager import provider_spec\n"
        "print(sorted(m for m in sys.modules if m.startswith('alerthooks.manager.')))\n"
        "from alerthooks.manager import AlertManager\n"
        "print(AlertManager.__module__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    first, second = done.stdout.splitlines()
    assert "alerthooks.manager.plan" not in first and "alerthooks.manager.apply" not in first
    assert "alerthooks.manager.registry" in first
    assert second == "alerthooks.manager.apply"
