"""``alerthooks send``: a signed delivery from the shell, as the provider would send it.

Any provider works: a built-in one (credentials from ``--secret`` or its environment) or one
of an app's (``--app MODULE:ATTR``, signing with that app's provider object). Signing is always
:meth:`Provider.sign`; samples come from :mod:`alerthooks.testing`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from alerthooks import __version__
from alerthooks.cli import core
from alerthooks.cli.core import cli, fail, load_hooks
from alerthooks.providers import BUILTIN, Provider


def _builtin() -> dict[str, type[Provider]]:
    return {cls.name: cls for cls in BUILTIN}


def _provider(
    name: str, target: str | None, secret: str | None, option: str
) -> tuple[Provider, Mapping[str, Any]]:
    """The provider that signs, and every provider known here by name (for sample hints)."""
    if target is not None:
        known: Mapping[str, Any] = load_hooks(target).providers
        if name not in known:
            raise click.BadParameter(
                f"{name!r} is not a provider of {target}; choose one of {', '.join(known)}",
                param_hint="PROVIDER",
            )
        found: Provider = known[name]
        if secret is None:
            return found, known
        cls: type[Provider] = type(found)
    else:
        known = _builtin()
        if name not in known:
            raise click.BadParameter(
                f"{name!r} is not a built-in provider; choose one of {', '.join(known)} "
                "(or give --app MODULE:ATTR)",
                param_hint="PROVIDER",
            )
        cls = known[name]
        if secret is None:
            try:
                return cls.from_env(), known
            except ValueError as exc:
                fail(f"{name} settings: {exc}", cause=exc)
    try:
        return cls.from_secret(secret), known
    except NotImplementedError as exc:
        fail(f"{option}: {cls.__name__} cannot be built from one credential string", cause=exc)
    except ValueError as exc:
        fail(f"{option}: {exc}", cause=exc)


def _body(
    provider: str, known: Mapping[str, Any], file: str | None, sample: str | None
) -> tuple[bytes, str]:
    """The bytes to send and a label saying where they came from."""
    from alerthooks.testing import build_sample, default_sample, sample_names

    if file is not None and sample is not None:
        fail("give a FILE or --sample, not both")
    if file is not None:
        try:
            body = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
        except OSError as exc:
            fail(f"cannot read {file}: {exc.strerror or exc}", cause=exc)
        return body, "stdin" if file == "-" else file
    choices = sample_names(provider)
    if sample is None:
        try:
            name = default_sample(provider)
        except (LookupError, ValueError) as exc:
            fail(f"no sample for {provider}: give a FILE (or - for stdin)", cause=exc)
    else:
        name = sample
        if name not in choices and f"{provider}_{name}" in choices:
            name = f"{provider}_{name}"
    if name not in choices:
        other = next((p for p in known if p != provider and name in sample_names(p)), None)
        what = f"a {other} sample" if other else "not a sample"
        listed = ", ".join(choices) or "(none: give a FILE)"
        fail(f"--sample {name!r} is {what}; choose one of {listed}")
    return json.dumps(build_sample(name)).encode(), f"sample {name}"


def _with_id(body: bytes, event_id: str, signer: Provider) -> bytes:
    """``body`` carrying ``event_id`` as its event id (``--id``), so sending it twice is a
    redelivery."""
    try:
        payload = json.loads(body)
    except ValueError as exc:
        fail("--id: the body is not JSON", cause=exc)
    if not isinstance(payload, dict):
        fail("--id: the body is not a JSON object")
    payload["id"] = event_id
    if signer.event_id(payload) != event_id:
        fail(f'--id: {signer.name} does not read its event id from "id"; edit the FILE instead')
    return json.dumps(payload).encode()


def _event_id(provider: Provider, body: bytes, headers: Mapping[str, str]) -> str | None:
    """The id the receiver will store the delivery under: the payload's, else the delivery's
    (a header such as ``webhook-id`` or ``X-Lago-Unique-Key``)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    return provider.event_id(payload) or provider.delivery_id(
        {name.lower(): value for name, value in headers.items()}
    )


class _SendCommand(click.Command):
    """``send --help`` ends with the providers and samples there are (read when shown)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from alerthooks.testing import sample_names

        super().format_epilog(ctx, formatter)
        with formatter.section("Built-in providers"):
            formatter.write_text(", ".join(_builtin()))
        with formatter.section("Samples (the provider prefix may be left off)"):
            formatter.write_text(", ".join(sample_names()))


@cli.command("send", cls=_SendCommand)
@click.argument("provider", metavar="PROVIDER")
@click.argument("file", required=False, metavar="[FILE]")
@click.option(
    "--sample",
    metavar="NAME",
    help="A sample (listed below), sent with a fresh event id; default: the provider's alert.",
)
@click.option(
    "--id",
    "event_id",
    metavar="EVENT_ID",
    help="Send with this event id instead of a fresh one: sending it again is a redelivery.",
)
@click.option(
    "--url",
    required=True,
    metavar="URL",
    help="The endpoint, e.g. http://127.0.0.1:8000/webhooks/stripe.",
)
@click.option(
    "--secret",
    metavar="SECRET",
    help="The credential to sign with (Stripe: the whsec_… secret; Chargebee: USER:PASS); "
    "default: the provider's env variables (STRIPE_WEBHOOK_SECRET, …).",
)
@click.option("--auth", metavar="USER:PASS", help="The same as --secret (for Chargebee).")
@click.option(
    "--app",
    "target",
    metavar="MODULE:ATTR",
    default=None,
    help="Sign with this AlertHooks' provider PROVIDER (any provider it has, built-in or not).",
)
@click.option(
    "--timeout",
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    type=click.FloatRange(min=0, min_open=True),
    help="How long to wait for the answer.",
)
def send_command(
    provider: str,
    file: str | None,
    sample: str | None,
    event_id: str | None,
    url: str,
    secret: str | None,
    auth: str | None,
    target: str | None,
    timeout: float,
) -> None:
    """Sign a sample (or FILE, `-` for stdin) as PROVIDER would and POST it to --url; print
    the answer. Exits 1 when the answer is not 2xx or nothing answers."""
    import httpx

    if secret is not None and auth is not None:
        raise click.UsageError("give --secret or --auth, not both")
    option = "--auth" if auth is not None else "--secret"
    signer, known = _provider(provider, target, secret if auth is None else auth, option)
    body, source = _body(provider, known, file, sample)
    if event_id is not None:
        body = _with_id(body, event_id, signer)
    try:
        signed = signer.sign(body)
    except ValueError as exc:
        if target is not None and secret is None and auth is None:
            fail(f"{target}'s {provider} provider cannot sign: {exc}", cause=exc)
        hint = f" or set {signer.env_hint}" if signer.env_hint else ""
        fail(f"no {provider} credentials to sign with: pass --secret{hint}", cause=exc)
    headers = {
        "content-type": "application/json",
        "user-agent": f"alerthooks-send/{__version__}",
        **signed,
    }
    event_id = _event_id(signer, body, signed)
    out = core.console(highlight=False, soft_wrap=True)
    out.print(f"POST {url} ({source}" + (f", event {event_id})" if event_id else ")"), markup=False)
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=timeout)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        fail(f"invalid --url {url!r}: {exc}", cause=exc)
    except httpx.TimeoutException as exc:
        fail(f"no answer from {url} within {timeout:g}s", cause=exc)
    except httpx.HTTPError as exc:
        fail(f"cannot reach {url}: {exc or type(exc).__name__}", cause=exc)
    ok = response.is_success
    out.print(
        f"{response.status_code} {response.reason_phrase}".rstrip(),
        style="green" if ok else "red",
        markup=False,
    )
    if response.content:
        out.print(response.text, markup=False, highlight=True)
    if not ok:
        fail(f"{url} answered {response.status_code} {response.reason_phrase}".rstrip())
