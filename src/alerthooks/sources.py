"""Source allowlists: which client addresses may deliver a provider's webhooks.

Both providers publish the addresses their webhooks come from. The lists live in configuration,
not here: a list of CIDRs or addresses, a comma- or space-separated string, or ``@path`` naming a
file (one entry per line, ``#`` comments; or JSON: a list of strings, or an object whose values
are such lists, as in Stripe's ``ips_webhooks.json``).

``X-Forwarded-For`` is honoured only when the direct peer is a trusted proxy; the client is then
the right-most address in the chain that is not itself a trusted proxy.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Networks = str | Sequence[str]
"""An allowlist setting: CIDRs as a list or a comma-separated string; ``@path`` reads a file."""

TRUSTED_PROXIES_ENV = "ALERTHOOKS_TRUSTED_PROXIES"


def allowed_ips_env(provider: str) -> str:
    """The environment variable holding ``provider``'s allowlist, e.g.
    ``ALERTHOOKS_STRIPE_ALLOWED_IPS``."""
    return f"ALERTHOOKS_{provider.upper()}_ALLOWED_IPS"


class SourceConfigError(ValueError):
    """An allowlist or trusted-proxy setting could not be read; the message names the setting."""


def _entries_from_file(path: str, setting: str) -> list[str]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SourceConfigError(
            f"{setting}: cannot read {path}: {exc.strerror or exc.__class__.__name__}"
        ) from None
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            data: Any = json.loads(text)
        except ValueError:
            raise SourceConfigError(f"{setting}: {path} is not valid JSON") from None
        values = data.values() if isinstance(data, dict) else [data]
        entries: list[str] = []
        for value in values:
            items = value if isinstance(value, list) else [value]
            for item in items:
                if not isinstance(item, str):
                    raise SourceConfigError(
                        f"{setting}: {path} holds {item!r}, not an address string"
                    )
                entries.append(item)
        return entries
    return [word for line in text.splitlines() for word in line.split("#", 1)[0].split()]


def parse_networks(value: Networks, *, setting: str) -> tuple[Network, ...]:
    """Read ``value`` (see the module docstring) into networks; raise SourceConfigError naming
    ``setting`` and the entry when one is not an address or CIDR network."""
    raw = re.split(r"[,\s]+", value) if isinstance(value, str) else list(value)
    entries: list[str] = []
    for entry in raw:
        if not isinstance(entry, str):
            raise SourceConfigError(f"{setting}: {entry!r} is not a string")
        entry = entry.strip()
        if entry.startswith("@"):
            entries.extend(_entries_from_file(entry[1:], setting))
        elif entry:
            entries.append(entry)
    networks: list[Network] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise SourceConfigError(
                f"{setting}: {entry!r} is not an IP address or CIDR network"
            ) from None
    return tuple(networks)


def networks_setting(
    value: Networks | None, *, setting: str, env: str
) -> tuple[Network, ...] | None:
    """``value`` parsed, or the environment variable ``env`` when ``value`` is None; None when
    neither is set (no allowlist). An explicit empty list allows nothing."""
    if value is None:
        from_env = os.environ.get(env, "").strip()
        if not from_env:
            return None
        return parse_networks(from_env, setting=env)
    return parse_networks(value, setting=setting)


def networks_from_env(provider: str) -> tuple[Network, ...] | None:
    """``provider``'s allowlist from env ``ALERTHOOKS_{PROVIDER}_ALLOWED_IPS``; None when unset."""
    return networks_setting(None, setting="", env=allowed_ips_env(provider))


def _address(text: str) -> Address | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # [v6]:port
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: Address, networks: Iterable[Network]) -> bool:
    return any(address in network for network in networks)


class SourceFilter:
    """Decides whether a request's source may deliver a provider's webhooks.

    ``allowed`` maps a provider name to its networks; providers not in it are not filtered.
    """

    def __init__(
        self, allowed: Mapping[str, tuple[Network, ...]], trusted_proxies: tuple[Network, ...] = ()
    ) -> None:
        self.allowed = dict(allowed)
        self.trusted_proxies = trusted_proxies

    def __repr__(self) -> str:
        counts = ", ".join(f"{name}=<{len(nets)} networks>" for name, nets in self.allowed.items())
        return f"SourceFilter({counts}, trusted_proxies=<{len(self.trusted_proxies)} networks>)"

    def client_address(self, scope: Mapping[str, Any]) -> Address | None:
        """The delivering client's address: the direct peer, or (behind a trusted proxy) the
        right-most ``X-Forwarded-For`` address that is not a trusted proxy. None if unknown."""
        client = scope.get("client")
        peer = _address(client[0]) if client else None
        if peer is None or not self.trusted_proxies or not _within(peer, self.trusted_proxies):
            return peer
        chain: list[str] = []
        for name, value in scope.get("headers", ()):
            if name.lower() == b"x-forwarded-for":
                chain.extend(value.decode("latin-1").split(","))
        address = peer
        for hop in reversed(chain):
            hop_address = _address(hop)
            if hop_address is None:
                return None
            address = hop_address
            if not _within(address, self.trusted_proxies):
                return address
        return address

    def allows(self, provider: str, scope: Mapping[str, Any]) -> bool:
        """Whether ``scope``'s client may deliver ``provider``'s webhooks (the receiver logs a
        refusal, rate-limited)."""
        networks = self.allowed.get(provider)
        if networks is None:
            return True
        address = self.client_address(scope)
        return address is not None and _within(address, networks)
