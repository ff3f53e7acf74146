"""Source allowlists per provider, trusted proxies and X-Forwarded-For, and their configuration."""

from __future__ import annotations

import ipaddress
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.types import Message

from alerthooks import AlertEvent, AlertHooks
from alerthooks.providers import Chargebee, Stripe
from alerthooks.sources import SourceConfigError, SourceFilter, parse_networks
from alerthooks.testing import (
    chargebee_alert_status_changed,
    chargebee_auth_headers,
    stripe_alert_triggered,
    stripe_signature_header,
)

from .conftest import CB_PASSWORD, CB_USER, STRIPE_SECRET
from .helpers import ServedApp, make_hooks, recorded
from .hostile import asgi_call, examples, read_response

STRIPE_IPS = ["3.18.12.63", "13.235.14.237/32", "2600:1f18::/32"]
PROXIES = ["10.0.0.0/8"]
ALLOWED = "3.18.12.63"
OTHER = "198.51.100.20"


def _hooks(
    *, stripe_ips: Any = None, chargebee_ips: Any = None, **options: Any
) -> tuple[AlertHooks, list[AlertEvent]]:
    """Hooks with Stripe and Chargebee given those allowlists (None: none)."""
    options.setdefault(
        "providers",
        [
            Stripe(STRIPE_SECRET, allowed_ips=stripe_ips),
            Chargebee((CB_USER, CB_PASSWORD), allowed_ips=chargebee_ips),
        ],
    )
    hooks = make_hooks(**options)
    return hooks, recorded(hooks)


def _stripe_request(forwarded: list[str] | None = None) -> dict[str, Any]:
    body = json.dumps(stripe_alert_triggered()).encode()
    headers = [(b"stripe-signature", stripe_signature_header(body, STRIPE_SECRET).encode())]
    for value in forwarded or []:
        headers.append((b"x-forwarded-for", value.encode()))
    return {"path": "/stripe", "headers": headers, "chunks": [body]}


async def _status(hooks: AlertHooks, peer: str | None, forwarded: list[str] | None = None) -> int:
    client = (peer, 443) if peer is not None else None
    status, _, _ = await asgi_call(hooks, client=client, **_stripe_request(forwarded))
    return status


async def test_allowed_source_is_accepted() -> None:
    hooks, seen = _hooks(stripe_ips=STRIPE_IPS)
    assert await _status(hooks, ALLOWED) == 200
    assert await _status(hooks, "13.235.14.237") == 200
    assert len(seen) == 2


async def test_other_source_gets_403_before_the_body_is_read() -> None:
    hooks, seen = _hooks(stripe_ips=STRIPE_IPS)
    status, body, read = await asgi_call(hooks, client=(OTHER, 443), **_stripe_request())
    assert status == 403
    assert json.loads(body) == {"error": "source not allowed"}
    assert read == 0
    assert seen == []


async def test_403_closes_the_connection() -> None:
    hooks, _ = _hooks(stripe_ips=STRIPE_IPS)
    sent: list[Message] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/stripe", "headers": []}
    await hooks({**scope, "client": (OTHER, 1)}, receive, send)
    assert sent[0]["status"] == 403
    assert (b"connection", b"close") in sent[0]["headers"]


async def test_ipv6_and_ipv4_mapped_sources() -> None:
    hooks, _ = _hooks(stripe_ips=STRIPE_IPS)
    assert await _status(hooks, "2600:1f18::5") == 200
    assert await _status(hooks, f"::ffff:{ALLOWED}") == 200
    assert await _status(hooks, "2001:db8::1") == 403


async def test_unknown_or_malformed_peer_is_refused() -> None:
    hooks, _ = _hooks(stripe_ips=STRIPE_IPS)
    assert await _status(hooks, None) == 403
    assert await _status(hooks, "not-an-ip") == 403
    assert await _status(hooks, "") == 403


async def test_provider_without_an_allowlist_is_not_filtered() -> None:
    hooks, seen = _hooks(stripe_ips=STRIPE_IPS)
    body = json.dumps(chargebee_alert_status_changed()).encode()
    auth = chargebee_auth_headers(CB_USER, CB_PASSWORD)["Authorization"].encode()
    status, _, _ = await asgi_call(
        hooks,
        path="/chargebee",
        client=(OTHER, 1),
        headers=[(b"authorization", auth)],
        chunks=[body],
    )
    assert status == 200
    assert len(seen) == 1


async def test_each_provider_has_its_own_list() -> None:
    hooks, _ = _hooks(stripe_ips=STRIPE_IPS, chargebee_ips=[OTHER])
    assert await _status(hooks, ALLOWED) == 200
    assert await _status(hooks, OTHER) == 403
    auth = chargebee_auth_headers(CB_USER, CB_PASSWORD)["Authorization"].encode()
    for peer, expected in [(OTHER, 200), (ALLOWED, 403)]:
        status, _, _ = await asgi_call(
            hooks,
            path="/chargebee",
            client=(peer, 1),
            headers=[(b"authorization", auth)],
            chunks=[json.dumps(chargebee_alert_status_changed()).encode()],
        )
        assert status == expected


async def test_explicit_empty_list_allows_nothing() -> None:
    hooks, _ = _hooks(stripe_ips=[])
    assert await _status(hooks, ALLOWED) == 403


async def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    hooks, seen = _hooks(stripe_ips=STRIPE_IPS, trusted_proxies=PROXIES)
    assert await _status(hooks, OTHER, [ALLOWED]) == 403
    assert seen == []


async def test_forwarded_for_without_trusted_proxies_is_ignored() -> None:
    hooks, _ = _hooks(stripe_ips=STRIPE_IPS)
    assert await _status(hooks, "10.1.2.3", [ALLOWED]) == 403
    assert await _status(hooks, ALLOWED, [OTHER]) == 200


async def test_trusted_proxy_passes_the_client_on() -> None:
    hooks, _ = _hooks(stripe_ips=STRIPE_IPS, trusted_proxies=PROXIES)
    assert await _status(hooks, "10.1.2.3", [ALLOWED]) == 200
    assert await _status(hooks, "10.1.2.3", [OTHER]) == 403


async def test_right_most_untrusted_address_is_the_client() -> None:
    hooks, _ = _hooks(stripe_ips=STRIPE_IPS, trusted_proxies=PROXIES)
    # The client may prepend anything; only what the trusted proxies appended counts.
    assert await _status(hooks, "10.1.2.3", [f"{ALLOWED}, {OTHER}"]) == 403
    assert await _status(hooks, "10.1.2.3", [f"{OTHER}, {ALLOWED}"]) == 200
    assert await _status(hooks, "10.1.2.3", [f"{OTHER}, {ALLOWED}, 10.9.9.9"]) == 200
    assert await _status(hooks, "10.1.2.3", [f"{ALLOWED}, {OTHER}, 10.9.9.9"]) == 403


async def test_several_forwarded_for_headers_form_one_chain() -> None:
    hooks, _ = _hooks(stripe_ips=STRIPE_IPS, trusted_proxies=PROXIES)
    assert await _status(hooks, "10.1.2.3", [OTHER, ALLOWED]) == 200
    assert await _status(hooks, "10.1.2.3", [ALLOWED, OTHER]) == 403


async def test_forwarded_for_with_ports_and_brackets() -> None:
    hooks, _ = _hooks(stripe_ips=STRIPE_IPS, trusted_proxies=PROXIES)
    assert await _status(hooks, "10.1.2.3", [f"{ALLOWED}:443"]) == 200
    assert await _status(hooks, "10.1.2.3", ["[2600:1f18::5]:443"]) == 200


async def test_malformed_forwarded_for_from_a_trusted_proxy_is_refused() -> None:
    hooks, _ = _hooks(stripe_ips=STRIPE_IPS, trusted_proxies=PROXIES)
    assert await _status(hooks, "10.1.2.3", ["garbage"]) == 403
    assert await _status(hooks, "10.1.2.3", [f"{ALLOWED}, "]) == 403
    assert await _status(hooks, "10.1.2.3", ["\xff\xfe"]) == 403


async def test_trusted_proxy_without_forwarded_for_is_itself_the_source() -> None:
    hooks, _ = _hooks(stripe_ips=STRIPE_IPS, trusted_proxies=PROXIES)
    assert await _status(hooks, "10.1.2.3") == 403
    hooks, _ = _hooks(stripe_ips=[*STRIPE_IPS, "10.1.2.3"], trusted_proxies=PROXIES)
    assert await _status(hooks, "10.1.2.3") == 200


async def test_refusal_is_logged_with_the_source(caplog: pytest.LogCaptureFixture) -> None:
    hooks, _ = _hooks(stripe_ips=STRIPE_IPS)
    with caplog.at_level("INFO"):
        assert await _status(hooks, OTHER) == 403
    assert f"source {OTHER} is not in the allowlist" in caplog.text


# -- configuration -------------------------------------------------------------------------------


async def test_lists_load_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTHOOKS_STRIPE_ALLOWED_IPS", f"{ALLOWED}, 13.235.14.237")
    monkeypatch.setenv("ALERTHOOKS_TRUSTED_PROXIES", "10.0.0.0/8")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET)
    hooks, _ = _hooks(providers=[Stripe.from_env()])
    assert await _status(hooks, ALLOWED) == 200
    assert await _status(hooks, "10.1.1.1", ["13.235.14.237"]) == 200
    assert await _status(hooks, OTHER) == 403


async def test_lists_load_from_a_text_file(tmp_path: Path) -> None:
    path = tmp_path / "stripe_ips.txt"
    path.write_text(f"# Stripe webhook sources\n{ALLOWED}\n13.235.14.237  # Mumbai\n\n")
    hooks, _ = _hooks(stripe_ips=f"@{path}")
    assert await _status(hooks, "13.235.14.237") == 200
    assert await _status(hooks, OTHER) == 403


async def test_lists_load_from_a_json_file_shaped_like_stripes(tmp_path: Path) -> None:
    path = tmp_path / "ips_webhooks.json"
    path.write_text(json.dumps({"WEBHOOKS": [ALLOWED, "13.235.14.237"]}))
    hooks, _ = _hooks(stripe_ips=[f"@{path}"])
    assert await _status(hooks, ALLOWED) == 200
    assert await _status(hooks, OTHER) == 403


def test_invalid_entry_names_the_setting_and_the_entry() -> None:
    with pytest.raises(SourceConfigError, match=r"^stripe_allowed_ips: '3\.18\.12' is not"):
        _hooks(stripe_ips=["3.18.12"])
    with pytest.raises(SourceConfigError, match=r"^trusted_proxies: 'proxy' is not"):
        _hooks(stripe_ips=STRIPE_IPS, trusted_proxies="proxy")


def test_invalid_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTHOOKS_CHARGEBEE_ALLOWED_IPS", "1.2.3.4,nope")
    with pytest.raises(SourceConfigError, match=r"^ALERTHOOKS_CHARGEBEE_ALLOWED_IPS: 'nope'"):
        _hooks(providers=[Chargebee.from_env()])


def test_unreadable_or_malformed_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SourceConfigError, match=r"^chargebee_allowed_ips: cannot read"):
        _hooks(chargebee_ips=f"@{tmp_path / 'missing.txt'}")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    with pytest.raises(SourceConfigError, match="not valid JSON"):
        parse_networks(f"@{bad}", setting="x")
    numbers = tmp_path / "numbers.json"
    numbers.write_text("[1, 2]")
    with pytest.raises(SourceConfigError, match="not an address string"):
        parse_networks(f"@{numbers}", setting="x")


def test_repr_shows_counts_not_networks() -> None:
    hooks, _ = _hooks(stripe_ips=STRIPE_IPS, trusted_proxies=PROXIES)
    assert "stripe=<3 networks>" in repr(hooks)
    assert ALLOWED not in repr(hooks)


def test_no_allowlist_means_no_filter() -> None:
    hooks, _ = _hooks(trusted_proxies=PROXIES)
    assert hooks.sources is None


# -- over a real socket ----------------------------------------------------------------------------


def _post_over_socket(port: int, forwarded: str | None) -> int:
    request = _stripe_request([forwarded] if forwarded else None)
    body = request["chunks"][0]
    lines = [
        "POST /stripe HTTP/1.1",
        "Host: 127.0.0.1",
        f"Content-Length: {len(body)}",
        *(f"{k.decode()}: {v.decode()}" for k, v in request["headers"]),
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return int(read_response(sock, 5).split(b" ", 2)[1])


@pytest.mark.parametrize(
    ("settings", "forwarded", "expected"),
    [
        ({"stripe_ips": ["127.0.0.1"]}, None, 200),
        ({"stripe_ips": STRIPE_IPS}, None, 403),
        ({"stripe_ips": STRIPE_IPS}, ALLOWED, 403),
        ({"stripe_ips": STRIPE_IPS, "trusted_proxies": ["127.0.0.1"]}, ALLOWED, 200),
        ({"stripe_ips": STRIPE_IPS, "trusted_proxies": ["127.0.0.1"]}, OTHER, 403),
    ],
    ids=["peer-allowed", "peer-refused", "spoofed", "via-proxy", "via-proxy-refused"],
)
def test_allowlist_over_a_real_server(
    settings: dict[str, Any], forwarded: str, expected: int
) -> None:
    hooks, _ = _hooks(**settings)
    # uvicorn's own proxy-header handling would rewrite the client; alerthooks decides itself.
    with ServedApp(hooks, proxy_headers=False) as server:
        assert _post_over_socket(server.port, forwarded) == expected


# -- properties of the client address ------------------------------------------------------------

_ips = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.sampled_from(["10.0.0.1", "10.2.3.4", ALLOWED, OTHER, "garbage", "", " ", "[::1]:80"]),
)


@settings(max_examples=examples(150), deadline=None)
@given(
    peer=_ips,
    chain=st.lists(_ips, max_size=6),
    split=st.booleans(),
)
def test_client_is_never_chosen_left_of_an_untrusted_hop(
    peer: str, chain: list[str], split: bool
) -> None:
    """Whatever the chain, the chosen client is the peer itself unless the peer is a trusted
    proxy, and every hop to the right of the chosen address is a trusted proxy: an address a
    client prepended can never be chosen over the last untrusted hop."""
    networks = parse_networks(PROXIES, setting="trusted_proxies")
    sources = SourceFilter({"stripe": ()}, networks)
    headers = (
        [(b"x-forwarded-for", hop.encode()) for hop in chain]
        if split
        else [(b"x-forwarded-for", ", ".join(chain).encode())]
    )
    scope = {"client": (peer, 1), "headers": headers if chain else []}
    chosen = sources.client_address(scope)

    def parsed(text: str) -> Any:
        try:
            address = ipaddress.ip_address(text.strip().strip("[]").split("]")[0])
        except ValueError:
            return None
        mapped = getattr(address, "ipv4_mapped", None)
        return mapped or address

    direct = parsed(peer)
    trusted = direct is not None and any(direct in n for n in networks)
    if not trusted or not chain:
        assert chosen == direct
        return
    hops = [parsed(h) for h in ", ".join(chain).split(",")]
    if chosen is None:  # refused: only when an unreadable hop comes before any untrusted one
        stop = next(
            (h for h in reversed(hops) if h is None or not any(h in n for n in networks)),
            "every hop is a readable trusted proxy",
        )
        assert stop is None
        return
    assert chosen in hops
    index = len(hops) - 1 - hops[::-1].index(chosen)
    assert all(h is not None and any(h in n for n in networks) for h in hops[index + 1 :])


@pytest.mark.parametrize(
    ("source", "env", "message"),
    [
        (
            'AlertHooks(store="memory://")',
            {"ALERTHOOKS_STRIPE_ALLOWED_IPS": "1.2.3.4,nope"},
            "ALERTHOOKS_STRIPE_ALLOWED_IPS: 'nope' is not an IP address or CIDR network",
        ),
        (
            'AlertHooks(store="memory://", providers=[Chargebee(verify="fetch")])',
            {"CHARGEBEE_API_KEY": ""},
            "chargebee_verify='fetch' needs chargebee_api_key (or env CHARGEBEE_API_KEY)",
        ),
    ],
    ids=["bad-allowlist-env", "fetch-without-key"],
)
def test_serve_reports_a_hardening_config_error_in_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    env: dict[str, str],
    message: str,
) -> None:
    from click.testing import CliRunner

    from alerthooks.cli import cli

    module = f"hardening_app_{abs(hash(source))}"
    (tmp_path / f"{module}.py").write_text(
        "from alerthooks import AlertHooks\n"
        "from alerthooks.providers import Chargebee\n"
        f"hooks = {source}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["serve", f"{module}:hooks", "--port", "0"])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert message in lines[0]
    assert "Traceback" not in result.output
