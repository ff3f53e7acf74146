"""What a user installs: the distribution's name and extras, and a receiver that runs without
the optional packages (each blocked through ``sys.modules`` in a fresh interpreter, as if its
extra were not installed)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
POSTGRES_HINT = 'pip install "alerthooks-sdk[postgres]"'


def run_python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_distribution_is_alerthooks_sdk_with_postgres_as_an_extra() -> None:
    assert PROJECT["name"] == "alerthooks-sdk"
    required = " ".join(PROJECT["dependencies"])
    assert "asyncpg" not in required
    assert any(d.startswith("asyncpg") for d in PROJECT["optional-dependencies"]["postgres"])
    assert set(PROJECT["urls"]) == {"Homepage", "Repository", "Changelog", "Issues"}
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert PROJECT["license"] == "MIT"


def test_a_receiver_on_sqlite_runs_without_asyncpg(tmp_path: Path) -> None:
    done = run_python(
        """
        import asyncio, json, sys
        sys.modules["asyncpg"] = None  # as if the postgres extra were not installed
        from alerthooks import AlertHooks
        from alerthooks.providers import Stripe
        from alerthooks.testing import stripe_alert_triggered, stripe_signature_header

        hooks = AlertHooks(providers=[Stripe("whsec_x")], store="sqlite:///" + sys.argv[1])
        seen = []
        hooks.on("alert.triggered")(seen.append)
        body = json.dumps(stripe_alert_triggered()).encode()
        headers = {"stripe-signature": stripe_signature_header(body, "whsec_x")}

        async def main():
            async with hooks.lifespan():
                return await hooks.receive(hooks.stripe, body, headers)

        print(asyncio.run(main())[0], len(seen))
        """,
        str(tmp_path / "events.db"),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["200", "1"]


def test_a_postgres_store_without_asyncpg_names_the_extra_in_one_line() -> None:
    done = run_python(
        """
        import sys
        sys.modules["asyncpg"] = None
        from alerthooks import AlertHooks
        try:
            AlertHooks(store="postgresql://postgres@127.0.0.1:5432/test")
        except ImportError as exc:
            print(exc)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"a postgresql:// store needs asyncpg: {POSTGRES_HINT}\n"


def test_the_cli_store_option_without_asyncpg_is_one_error_line() -> None:
    done = run_python(
        """
        import sys
        sys.modules["asyncpg"] = None
        from alerthooks.cli import main
        sys.argv = ["alerthooks", *sys.argv[1:]]
        main()
        """,
        "events",
        "--store",
        "postgresql://postgres@127.0.0.1:5432/test",
    )
    assert done.returncode == 1
    assert done.stderr == f"error: a postgresql:// store needs asyncpg: {POSTGRES_HINT}\n"


def test_lago_hmac_runs_without_cryptography_and_jwt_names_the_extra() -> None:
    done = run_python(
        """
        import sys
        sys.modules["cryptography"] = None  # as if the lago extra were not installed
        from alerthooks import AlertHooks
        from alerthooks.providers import Lago

        lago = Lago("token")
        lago.verify(b"{}", {k.lower(): v for k, v in lago.sign(b"{}").items()})
        AlertHooks(providers=[lago], store="memory://")
        try:
            Lago(public_key="-----BEGIN PUBLIC KEY-----")
        except ImportError as exc:
            print(exc)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        'the jwt signature needs cryptography: pip install "alerthooks-sdk[lago]"'
    )
