"""Lago's ``jwt`` signature per delivery: ``Lago.verify`` (PyJWT, RS256 only, issuer and data
checks) against the floor of one RSA-PKCS1v15-SHA256 verification by ``cryptography`` alone on
the same token, and Lago's ``hmac`` scheme, measured in the same run (min of 7 rounds).
``python benchmarks/lago_jwt.py``
"""

from __future__ import annotations

import argparse
import base64
import json
import timeit

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from alerthooks.providers.lago import Lago, jwt_headers

BODY = json.dumps(
    {"webhook_type": "alert.triggered", "object_type": "triggered_alert", "x": "y" * 900}
).encode()


def per_call(call: object, number: int, rounds: int) -> float:
    """Microseconds per call, the minimum over the rounds."""
    return min(timeit.repeat(call, number=number, repeat=rounds)) / number * 1e6  # type: ignore[arg-type]


def main() -> None:
    """Measure each and print the ratios to the floor."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=2_000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    headers = {k.lower(): v for k, v in jwt_headers(BODY, key).items()}
    token = headers["x-lago-signature"].encode()
    signing_input, _, sig = token.rpartition(b".")
    raw_sig = base64.urlsafe_b64decode(sig + b"=" * (-len(sig) % 4))

    def floor() -> None:
        public.verify(raw_sig, signing_input, padding.PKCS1v15(), hashes.SHA256())

    base = per_call(floor, args.number, args.rounds)
    print(f"{'cryptography RSA verify alone (floor)':44} {base:7.2f} us  1.00x")
    lago = Lago("hmac-token", public_key=pem)
    cost = per_call(lambda: lago.verify(BODY, headers), args.number, args.rounds)
    label = f"Lago.verify jwt (PyJWT {jwt.__version__})"
    print(f"{label:44} {cost:7.2f} us  {cost / base:.2f}x")
    hmac_headers = {k.lower(): v for k, v in lago.sign(BODY).items()}
    cost = per_call(lambda: lago.verify(BODY, hmac_headers), args.number, args.rounds)
    print(f"{'Lago.verify hmac':44} {cost:7.2f} us  {cost / base:.2f}x")


if __name__ == "__main__":
    main()
