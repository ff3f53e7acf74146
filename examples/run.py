"""What `make run` does: serve examples/app.py on 127.0.0.1:8000 (env PORT overrides) with local
development credentials, and print ready-to-paste `alerthooks send` lines that deliver a signed
sample to it; the example's handlers print what they received."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import sys
from pathlib import Path

HOST, PORT = "127.0.0.1", int(os.environ.get("PORT", "8000"))
DEV_CREDENTIALS = {
    "STRIPE_WEBHOOK_SECRET": "whsec_local_development_secret",
    "CHARGEBEE_WEBHOOK_USERNAME": "alerthooks",
    "CHARGEBEE_WEBHOOK_PASSWORD": "local-development-password",
    "ORB_WEBHOOK_SECRET": "orb_local_development_secret",
    "METRONOME_WEBHOOK_SECRET": "metronome_local_development_secret",
    "LAGO_WEBHOOK_SECRET": "lago_local_development_hmac_token",
    # Standard Webhooks secrets are whsec_ and base64.
    "OPENMETER_WEBHOOK_SECRET": "whsec_b3Blbm1ldGVyLWxvY2FsLWRldmVsb3BtZW50",
    "AUTUMN_WEBHOOK_SECRET": "whsec_YXV0dW1uLWxvY2FsLWRldmVsb3BtZW50LS0t",
    "FLEXPRICE_WEBHOOK_SECRET": "whsec_ZmxleHByaWNlLWxvY2FsLWRldmVsb3BtZW50",
}
# The provider whose `alerthooks send` line each credential belongs to, and its default sample.
SECRET_PROVIDERS = {
    "ORB_WEBHOOK_SECRET": ("orb", "orb_subscription_usage_exceeded"),
    "METRONOME_WEBHOOK_SECRET": ("metronome", "metronome_usage_threshold_reached"),
    "LAGO_WEBHOOK_SECRET": ("lago", "lago_alert_triggered"),
    "OPENMETER_WEBHOOK_SECRET": ("openmeter", "openmeter_balance_threshold"),
    "AUTUMN_WEBHOOK_SECRET": ("autumn", "autumn_usage_alert_triggered"),
    "FLEXPRICE_WEBHOOK_SECRET": ("flexprice", "flexprice_subscription_spend_threshold_reached"),
}


def alerthooks_command() -> str:
    """The `alerthooks` script beside this Python (.venv/bin/alerthooks under `make run`)."""
    script = Path(sys.executable).parent / "alerthooks"
    if script.exists():
        relative = os.path.relpath(script)
        return relative if relative.startswith(".") else os.path.join(".", relative)
    return shutil.which("alerthooks") or "alerthooks"


def send_lines(base: str) -> list[str]:
    """One `alerthooks send` line per provider, with the credentials this server accepts."""
    command = alerthooks_command()
    secret = os.environ["STRIPE_WEBHOOK_SECRET"].split(",")[0].strip()
    auth = f"{os.environ['CHARGEBEE_WEBHOOK_USERNAME']}:{os.environ['CHARGEBEE_WEBHOOK_PASSWORD']}"
    return [
        _send(command, "stripe", "stripe_alert_triggered", base, "--secret", secret),
        _send(command, "chargebee", "chargebee_alert_in_alarm", base, "--auth", auth),
        *(
            _send(command, name, sample, base, "--secret", os.environ[env].split(",")[0].strip())
            for env, (name, sample) in SECRET_PROVIDERS.items()
        ),
    ]


def _send(command: str, provider: str, sample: str, base: str, option: str, value: str) -> str:
    argv = [command, "send", provider, "--sample", sample, "--url", f"{base}/{provider}"]
    return shlex.join([*argv, option, value])


def main() -> None:
    for name, value in DEV_CREDENTIALS.items():
        os.environ.setdefault(name, value)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    # The receiver logs each delivery's outcome (accepted, duplicate, not an alert, rejected).
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    from alerthooks.testing import sample_names

    base = f"http://{HOST}:{PORT}/webhooks"
    print(f"alerthooks example on http://{HOST}:{PORT}")
    print(
        f"  Stripe:    POST {base}/stripe     "
        f"(STRIPE_WEBHOOK_SECRET={os.environ['STRIPE_WEBHOOK_SECRET']})"
    )
    print(
        f"  Chargebee: POST {base}/chargebee  (Basic {os.environ['CHARGEBEE_WEBHOOK_USERNAME']}:"
        f"{os.environ['CHARGEBEE_WEBHOOK_PASSWORD']})"
    )
    for env, (name, _) in SECRET_PROVIDERS.items():
        print(f"  {name + ':':<11}POST {base}/{name:<10} ({env}={os.environ[env]})")
    store = os.environ.get("ALERTHOOKS_STORE", "sqlite:///alerthooks.db")
    print(f"  Store:     {store}  (ALERTHOOKS_STORE; inspect with `alerthooks events`)")
    print("Send it a signed sample from another shell in this directory:")
    for line in send_lines(base):
        print(f"  {line}")
    print(f"Other samples (--sample): {', '.join(sample_names())}")
    sys.stdout.flush()
    from alerthooks.cli.serving import run, server_settings

    # As `alerthooks serve` does: headers bounded in size and time, connections in number.
    run("examples.app:app", host=HOST, port=PORT, log_level="info", **server_settings())


if __name__ == "__main__":
    main()
