"""What a user installs: the distribution's name and extras, and a receiver that runs without
the optional packages (each blocked through ``sys.modules`` in a fresh interpreter, as if its
extra were not installed)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import textwrap
import venv
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
        sys.modules["jwt"] = None
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
        'the jwt signature needs PyJWT[crypto]: pip install "alerthooks-sdk[lago]"'
    )


# The README's quickstart, against the installed wheel: the app it builds answers a delivery the
# kit signs from its packaged samples, and the console renders its packaged templates.
QUICKSTART_DRIVER = """
import json, pathlib, runpy, sys

import alerthooks
from alerthooks.testing import SyncAlertHooksClient, stripe_alert_triggered

namespace = runpy.run_path(sys.argv[1])
with SyncAlertHooksClient(namespace["app"]) as client:
    answer = client.send_stripe(stripe_alert_triggered(), secret="whsec_…")
console = namespace["hooks"].console(auth=("admin", "secret"))
with SyncAlertHooksClient(console, hooks=namespace["hooks"], prefix="") as client:
    page = client.get("/", auth=("admin", "secret"))
print(json.dumps({
    "module": alerthooks.__file__,
    "version": alerthooks.__version__,
    "answer": [answer.status_code, answer.json()],
    "console": page.status_code,
}))
"""


def test_the_wheel_installed_in_a_fresh_venv_serves_the_readme_quickstart(tmp_path: Path) -> None:
    """`make dist` (sdist and wheel, twine-checked) and the wheel alone: a file it lacks (a
    template, a sample, the console script) fails here, as it would for a user."""
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    init = (ROOT / "src" / "alerthooks" / "_version.py").read_text()
    version = re.search(r'^__version__ = "(.+)"$', init, re.M)
    assert version, "alerthooks.__version__ is the one place the version is written"
    wheel = dist / f"alerthooks_sdk-{version.group(1)}-py3-none-any.whl"
    sdist = f"alerthooks_sdk-{version.group(1)}.tar.gz"
    assert {p.name for p in dist.iterdir()} == {wheel.name, sdist}
    checked = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.iterdir())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # A fresh venv with the wheel and no alerthooks else: its dependencies come from this
    # interpreter's site-packages through a .pth line, which does not run the .pth files there
    # (the editable install of the work tree among them).
    fresh = tmp_path / "venv"
    venv.create(fresh, with_pip=False)
    python = fresh / "bin" / "python"
    uv = ROOT / ".uv" / "bin" / "uv"  # make's pinned uv: the project's venv has no pip
    assert uv.exists(), "make creates .uv/ (run the suite with `make test`)"
    installed = subprocess.run(
        [str(uv), "pip", "install", "--quiet", "--python", str(python), "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("\n## Quickstart\n", 1)[1].split("```python\n", 1)[1].split("```")[0]
    (tmp_path / "quickstart.py").write_text(quickstart)
    (tmp_path / "driver.py").write_text(QUICKSTART_DRIVER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "CHARGEBEE_"))}
    env["ALERTHOOKS_STORE"] = "memory://"
    done = subprocess.run(
        [str(python), "driver.py", "quickstart.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["module"].startswith(site), result["module"]
    assert result["version"] == version.group(1)
    assert result["answer"] == [200, {"status": "accepted"}]
    assert result["console"] == 200
    cli = subprocess.run(
        [str(fresh / "bin" / "alerthooks"), "--version"], capture_output=True, text=True, env=env
    )
    assert cli.returncode == 0 and version.group(1) in cli.stdout, cli.stdout + cli.stderr


def test_the_changelog_follows_keep_a_changelog_and_names_this_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    releases = re.findall(r"^## (.+)$", text, re.M)
    assert releases[0] == "[Unreleased]", releases[0]
    for release in releases[1:]:
        assert re.fullmatch(r"\[\d+\.\d+\.\d+\] - \d{4}-\d{2}-\d{2}", release), release
    kinds = set(re.findall(r"^### (.+)$", text, re.M))
    assert kinds <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}, kinds
    # Every release heading has its link, and this version is released or unreleased work.
    for release in releases:
        name = release.split("]")[0] + "]"
        assert re.search(rf"^{re.escape(name)}: https://", text, re.M), name
    versions = [r.split("]")[0][1:] for r in releases[1:]]
    init = (ROOT / "src" / "alerthooks" / "_version.py").read_text()
    assert f'__version__ = "{versions[0]}"' in init, "the newest release is the package's version"


def test_make_run_installs_what_serving_needs_from_its_pins_and_no_dev_tool() -> None:
    """What `make run` installs (requirements/run.txt, no extra) serves, and has no dev tool."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("$(RUN_STAMP): ", 1)[1].split("\n\n", 1)[0]
    assert "$(call install,run)" in recipe, recipe
    text = (ROOT / "requirements" / "run.txt").read_text()
    names = {
        re.split(r"[=;\[ ]", line, maxsplit=1)[0].lower()
        for line in text.splitlines()
        if line and not line.startswith((" ", "#"))
    }
    assert {"starlette", "uvicorn", "pydantic", "httpx"} <= names, names
    assert not names & {"pytest", "mypy", "ruff", "playwright", "hypothesis", "mkdocs"}, names


def test_the_pins_name_no_host_and_fit_pyproject() -> None:
    """requirements/*.txt hold names and versions only, and tools/check_pins.py finds each
    dependency of pyproject.toml pinned at a version it accepts."""
    for path in sorted((ROOT / "requirements").glob("*.txt")):
        assert "://" not in path.read_text(), path
    checked = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "check_pins.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
