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

import uvicorn

HOST, PORT = "127.0.0.1", int(os.environ.get("PORT", "8000"))
DEV_CREDENTIALS = {
    "STRIPE_WEBHOOK_SECRET": "whsec_local_development_secret",
    "CHARGEBEE_WEBHOOK_USERNAME": "alerthooks",
    "CHARGEBEE_WEBHOOK_PASSWORD": "local-development-password",
    "ORB_WEBHOOK_SECRET": "orb_local_development_secret",
    "METRONOME_WEBHOOK_SECRET": "metronome_local_development_secret",
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
    orb = os.environ["ORB_WEBHOOK_SECRET"].split(",")[0].strip()
    metronome = os.environ["METRONOME_WEBHOOK_SECRET"].split(",")[0].strip()
    return [
        _send(command, "stripe", "stripe_alert_triggered", base, "--secret", secret),
        _send(command, "chargebee", "chargebee_alert_in_alarm", base, "--auth", auth),
        _send(command, "orb", "orb_subscription_usage_exceeded", base, "--secret", orb),
        _send(
            command, "metronome", "metronome_usage_threshold_reached", base, "--secret", metronome
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
    print(
        f"  Orb:       POST {base}/orb        "
        f"(ORB_WEBHOOK_SECRET={os.environ['ORB_WEBHOOK_SECRET']})"
    )
    print(
        f"  Metronome: POST {base}/metronome  "
        f"(METRONOME_WEBHOOK_SECRET={os.environ['METRONOME_WEBHOOK_SECRET']})"
    )
    store = os.environ.get("ALERTHOOKS_STORE", "sqlite:///alerthooks.db")
    print(f"  Store:     {store}  (ALERTHOOKS_STORE; inspect with `alerthooks events`)")
    print("Send it a signed sample from another shell in this directory:")
    for line in send_lines(base):
        print(f"  {line}")
    print(f"Other samples (--sample): {', '.join(sample_names())}")
    sys.stdout.flush()
    from alerthooks.cli.serving import server_settings

    # As `alerthooks serve` does: headers bounded in size and time, connections in number.
    uvicorn.run("examples.app:app", host=HOST, port=PORT, log_level="info", **server_settings())


if __name__ == "__main__":
    main()
