"""`alerthooks send`: signs samples and files like the providers, against a real loopback server;
every user error is one line and a non-zero exit, never a traceback."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner, Result

from alerthooks import AlertEvent, AlertHooks
from alerthooks.cli import cli
from alerthooks.providers import Chargebee, NotAnAlert, Provider, Rejected, Stripe, build_event
from alerthooks.testing import sample_names, stripe_alert_triggered

from .conftest import CB_PASSWORD, CB_USER, STRIPE_SECRET, free_port

CREDENTIAL_ENV = (
    "STRIPE_WEBHOOK_SECRET",
    "CHARGEBEE_WEBHOOK_USERNAME",
    "CHARGEBEE_WEBHOOK_PASSWORD",
    "NO_COLOR",
    "FORCE_COLOR",
)


class Served:
    """An AlertHooks served by uvicorn on a loopback port, recording the events it dispatches."""

    def __init__(self, hooks: AlertHooks, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.seen: list[AlertEvent] = []
        hooks.on("*")(self.seen.append)


@contextlib.contextmanager
def serving(hooks: AlertHooks) -> Iterator[Served]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(hooks, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield Served(hooks, port)
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def served(hooks: AlertHooks) -> Iterator[Served]:
    with serving(hooks) as running:
        yield running


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CREDENTIAL_ENV:
        monkeypatch.delenv(name, raising=False)


def send(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> Result:
    result = CliRunner().invoke(cli, ["send", *args], env=env, input=stdin)
    assert "Traceback" not in result.output + result.stderr
    return result


def sent_id(result: Result) -> str:
    match = re.search(r"event (\S+)\)", result.stdout)
    assert match, result.stdout
    return match.group(1)


@pytest.mark.parametrize("sample", sample_names("stripe"))
def test_every_stripe_sample_is_delivered_signed(served: Served, sample: str) -> None:
    url = f"{served.base}/stripe"
    result = send("stripe", "--sample", sample, "--url", url, "--secret", STRIPE_SECRET)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"POST {url} (sample {sample}, event {sent_id(result)})"
    assert lines[1] == "200 OK"
    # A thin event is read from Stripe's API, and this receiver has no API key: it is kept.
    answers = {"stripe_customer_created": "ignored", "stripe_thin_alert_triggered": "unparsed"}
    status = answers.get(sample, "accepted")
    assert json.loads(lines[2]) == {"status": status}
    if status == "accepted":
        assert [e.id for e in served.seen] == [sent_id(result)]


@pytest.mark.parametrize("sample", sample_names("chargebee"))
def test_every_chargebee_sample_is_delivered_with_basic_auth(served: Served, sample: str) -> None:
    url = f"{served.base}/chargebee"
    result = send(
        "chargebee", "--sample", sample, "--url", url, "--auth", f"{CB_USER}:{CB_PASSWORD}"
    )
    assert result.exit_code == 0, result.output
    assert "200 OK" in result.stdout
    expected = [] if sample == "chargebee_subscription_created" else [sent_id(result)]
    assert [e.id for e in served.seen] == expected


def test_each_sample_send_has_a_fresh_event_id(served: Served) -> None:
    args = ("stripe", "--url", f"{served.base}/stripe", "--secret", STRIPE_SECRET)
    first, second = send(*args), send(*args)
    assert '"accepted"' in first.stdout and '"accepted"' in second.stdout
    assert sent_id(first) != sent_id(second)
    assert len(served.seen) == 2


def test_a_send_with_an_id_sent_twice_is_a_redelivery(served: Served) -> None:
    args = ("stripe", "--url", f"{served.base}/stripe", "--secret", STRIPE_SECRET)
    first = send(*args, "--id", "evt_redelivered")
    second = send(*args, "--id", "evt_redelivered")
    assert sent_id(first) == sent_id(second) == "evt_redelivered"
    assert json.loads(first.stdout.splitlines()[2]) == {"status": "accepted"}
    assert json.loads(second.stdout.splitlines()[2]) == {"status": "duplicate"}
    assert [e.id for e in served.seen] == ["evt_redelivered"]


def test_credentials_default_to_the_receivers_env_variables(served: Served) -> None:
    env = {
        "STRIPE_WEBHOOK_SECRET": f"whsec_other, {STRIPE_SECRET}",
        "CHARGEBEE_WEBHOOK_USERNAME": CB_USER,
        "CHARGEBEE_WEBHOOK_PASSWORD": CB_PASSWORD,
    }
    # The first of a rotated, comma-separated secret list signs.
    wrong_first = send("stripe", "--url", f"{served.base}/stripe", env=env)
    assert wrong_first.exit_code == 1
    env["STRIPE_WEBHOOK_SECRET"] = f"{STRIPE_SECRET},whsec_other"
    assert send("stripe", "--url", f"{served.base}/stripe", env=env).exit_code == 0
    chargebee = send(
        "chargebee", "--sample", "alert_within_limit", "--url", f"{served.base}/chargebee", env=env
    )
    assert chargebee.exit_code == 0, chargebee.output
    assert [e.type for e in served.seen] == ["alert.triggered", "alert.cleared"]


def test_a_file_is_sent_as_it_is(served: Served, tmp_path: Path) -> None:
    payload = stripe_alert_triggered(id="evt_from_file")
    path = tmp_path / "event.json"
    path.write_text(json.dumps(payload, indent=2))
    result = send("stripe", str(path), "--url", f"{served.base}/stripe", "--secret", STRIPE_SECRET)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"POST {served.base}/stripe ({path}, event evt_from_file)")
    assert served.seen[0].raw == payload
    again = send("stripe", str(path), "--url", f"{served.base}/stripe", "--secret", STRIPE_SECRET)
    assert json.loads(again.stdout.splitlines()[2]) == {"status": "duplicate"}


def test_stdin_is_read_for_dash(served: Served) -> None:
    body = json.dumps(stripe_alert_triggered(id="evt_stdin")).encode()
    url = f"{served.base}/stripe"
    result = send("stripe", "-", "--url", url, "--secret", STRIPE_SECRET, stdin=body)
    assert result.exit_code == 0, result.output
    assert [e.id for e in served.seen] == ["evt_stdin"]


def test_a_non_2xx_answer_prints_it_and_exits_1(served: Served) -> None:
    result = send("stripe", "--url", f"{served.base}/stripe", "--secret", "whsec_wrong")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[1:] == ["400 Bad Request", '{"error":"signature mismatch"}']
    assert result.stderr == f"error: {served.base}/stripe answered 400 Bad Request\n"
    wrong_auth = send("chargebee", "--url", f"{served.base}/chargebee", "--auth", "x:y")
    assert wrong_auth.exit_code == 1
    assert "401 Unauthorized" in wrong_auth.stdout
    assert served.seen == []


def test_connection_refused_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}/webhooks/stripe"
    result = send("stripe", "--url", url, "--secret", "whsec_x")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: cannot reach {url}: ")


def test_no_answer_within_the_timeout_is_one_line() -> None:
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/stripe"
        result = send("stripe", "--url", url, "--secret", "whsec_x", "--timeout", "0.2")
    assert result.exit_code == 1
    assert result.stderr == f"error: no answer from {url} within 0.2s\n"


def test_an_invalid_url_is_one_line() -> None:
    result = send("stripe", "--url", "127.0.0.1:8000/stripe", "--secret", "whsec_x")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: invalid --url '127.0.0.1:8000/stripe': ")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["stripe", "--sample", "nope", "--secret", "s"],
            "--sample 'nope' is not a sample; choose one of stripe_alert_recovered, "
            "stripe_alert_triggered, stripe_alert_triggered_credit_balance, "
            "stripe_alert_triggered_expanded_meter, stripe_alert_triggered_spend, "
            "stripe_customer_created, stripe_thin_alert_triggered",
        ),
        (
            ["stripe", "--sample", "chargebee_alert_in_alarm", "--secret", "s"],
            "--sample 'chargebee_alert_in_alarm' is a chargebee sample; choose one of "
            "stripe_alert_recovered, stripe_alert_triggered, "
            "stripe_alert_triggered_credit_balance, stripe_alert_triggered_expanded_meter, "
            "stripe_alert_triggered_spend, stripe_customer_created, stripe_thin_alert_triggered",
        ),
        (["stripe", "f.json", "--sample", "alert_triggered"], "give a FILE or --sample, not both"),
        (["stripe", "missing.json", "--secret", "s"], "cannot read missing.json: No such file"),
        # Without --secret the credentials come from the env the provider names (env_hint).
        (
            ["stripe"],
            "no stripe credentials to sign with: pass --secret or set STRIPE_WEBHOOK_SECRET",
        ),
        (
            ["chargebee"],
            "no chargebee credentials to sign with: pass --secret or set "
            "CHARGEBEE_WEBHOOK_USERNAME/CHARGEBEE_WEBHOOK_PASSWORD",
        ),
        (["chargebee", "--auth", "userpass"], "--auth: Chargebee credentials take USER:PASS"),
        (["chargebee", "--secret", "s"], "--secret: Chargebee credentials take USER:PASS"),
        (["chargebee", "--secret", "user:"], "--secret: Chargebee credentials take USER:PASS"),
        (["stripe", "--auth", "u:p"], "--auth: a Stripe signing secret (whsec_…) has no ':'"),
        (["stripe", "--secret", " "], "--secret: a Stripe signing secret cannot be empty"),
    ],
)
def test_user_errors_are_one_line_before_anything_is_sent(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = send(*args, "--url", "http://127.0.0.1:9/never-contacted")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {message}")
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""


def test_output_is_plain_without_a_terminal_and_coloured_in_one(served: Served) -> None:
    args = ("stripe", "--url", f"{served.base}/stripe", "--secret", STRIPE_SECRET)
    plain = send(*args)
    assert "\x1b[" not in plain.stdout
    coloured = send(*args, env={"FORCE_COLOR": "1"})
    assert "\x1b[32m200 OK" in coloured.stdout
    no_color = send(*args, env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert "\x1b[" not in no_color.stdout
    assert "200 OK" in no_color.stdout


def test_help_names_every_flag_and_sample() -> None:
    result = send("--help")
    for word in ("--sample", "--url", "--secret", "--auth", "--app", "--timeout", *sample_names()):
        assert word in result.stdout


def test_chargebee_takes_user_pass_as_its_secret(served: Served) -> None:
    url = f"{served.base}/chargebee"
    result = send("chargebee", "--url", url, "--secret", f"{CB_USER}:{CB_PASSWORD}")
    assert result.exit_code == 0, result.output
    assert [e.id for e in served.seen] == [sent_id(result)]


def test_secret_and_auth_together_is_a_usage_error() -> None:
    result = send("chargebee", "--url", "http://127.0.0.1:9/", "--secret", "a:b", "--auth", "a:b")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: give --secret or --auth, not both")
    assert result.stderr.count("\n") == 1


def test_an_unknown_provider_is_a_usage_error_naming_the_built_in_ones() -> None:
    result = send("strip", "--url", "http://127.0.0.1:9/")
    assert result.exit_code == 2
    assert "'strip' is not a built-in provider; choose one of stripe, chargebee" in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("cls", [Stripe, Chargebee])
def test_from_secret_builds_a_provider_that_verifies_what_it_signs(cls: type[Provider]) -> None:
    provider = cls.from_secret("whsec_abc" if cls is Stripe else "user:pa:ss")
    body = json.dumps(stripe_alert_triggered()).encode()
    provider.verify(body, provider.sign(body))
    other = cls.from_secret("whsec_other" if cls is Stripe else "user:other")
    with pytest.raises(Rejected):
        other.verify(body, provider.sign(body))


def test_the_base_provider_has_no_from_secret() -> None:
    with pytest.raises(NotImplementedError):
        Provider.from_secret("anything")


class Toy(Provider):
    """A provider defined here alone: an HMAC-SHA256 of the body in ``X-Toy-Signature``."""

    name = "toy"
    env_hint = "TOY_KEY"
    alert_types = frozenset({"limit.hit"})

    def __init__(self, key: bytes = b"toy-key") -> None:
        self.key = key

    def _mac(self, body: bytes) -> str:
        return hmac.new(self.key, body, hashlib.sha256).hexdigest()

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        if not hmac.compare_digest(headers.get("x-toy-signature", ""), self._mac(body)):
            raise Rejected(401, "bad toy signature")

    def sign(self, body: bytes) -> dict[str, str]:
        return {"x-toy-signature": self._mac(body)}

    def normalize(self, payload: dict[str, Any]) -> AlertEvent:
        if payload.get("type") != "limit.hit":
            raise NotAnAlert("not a limit")
        return build_event(
            id=payload["id"],
            provider=self.name,
            type="alert.triggered",
            alert_id=payload["alert"],
            occurred_at=datetime.now(timezone.utc),
            raw=payload,
        )


def test_an_apps_own_provider_is_signed_by_its_sign_and_listed_by_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = f"sqlite:///{tmp_path / 'toy.db'}"
    toy_hooks = AlertHooks(providers=[Toy()], store=store)
    monkeypatch.setattr(sys.modules[__name__], "toy_hooks", toy_hooks, raising=False)
    app = f"{__name__}:toy_hooks"
    path = tmp_path / "limit.json"
    path.write_text(json.dumps({"id": "toy_1", "type": "limit.hit", "alert": "al_1"}))
    with serving(toy_hooks) as served:
        url = f"{served.base}/toy"
        result = send("toy", str(path), "--app", app, "--url", url)
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[1] == "200 OK"
        builtin_only = send("toy", str(path), "--url", url)
        assert builtin_only.exit_code == 2
        assert "'toy' is not a built-in provider" in builtin_only.stderr
        not_in_app = send("stripe", str(path), "--app", app, "--url", url)
        assert not_in_app.exit_code == 2
        assert f"'stripe' is not a provider of {app}; choose one of toy" in not_in_app.stderr
        no_sample = send("toy", "--app", app, "--url", url)
        assert (no_sample.exit_code, no_sample.stderr) == (
            1,
            "error: no sample for toy: give a FILE (or - for stdin)\n",
        )
        no_secret = send("toy", str(path), "--app", app, "--url", url, "--secret", "k")
        assert (
            no_secret.stderr == "error: --secret: Toy cannot be built from one credential string\n"
        )
        assert [e.id for e in served.seen] == ["toy_1"]
    runner = CliRunner()
    listed = runner.invoke(cli, ["events", "--app", app, "--store", store])
    assert listed.exit_code == 0, listed.output
    (row,) = listed.stdout.splitlines()[1:]
    cells = row.split("\t")
    assert cells[1:5] + cells[6:7] == ["toy", "toy_1", "alert.triggered", "other", "done"]
    # Without the app, nothing here can read a toy body: the provider's own type shows.
    raw = runner.invoke(cli, ["events", "--store", store])
    assert raw.stdout.splitlines()[1].split("\t")[3] == "limit.hit"
