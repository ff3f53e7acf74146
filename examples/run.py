"""What `make run` does: serve examples/app.py on 127.0.0.1:8000 with local development
credentials, and print how to send it a signed sample."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import uvicorn

HOST, PORT = "127.0.0.1", int(os.environ.get("PORT", "8000"))
DEV_CREDENTIALS = {
    "STRIPE_WEBHOOK_SECRET": "whsec_local_development_secret",
    "CHARGEBEE_WEBHOOK_USERNAME": "alerthooks",
    "CHARGEBEE_WEBHOOK_PASSWORD": "local-development-password",
}


def main() -> None:
    for name, value in DEV_CREDENTIALS.items():
        os.environ.setdefault(name, value)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
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
    sys.stdout.flush()
    uvicorn.run("examples.app:app", host=HOST, port=PORT, log_level="info")


if __name__ == "__main__":
    main()
