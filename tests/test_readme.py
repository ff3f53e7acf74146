"""README.md and the docs site (docs/) tell the truth: each of their Python blocks runs as a
script, in a fresh interpreter, and every ASGI app it builds is served a signed delivery per
configured provider; their shell lines name only commands, options, make targets and extras that
exist; their environment variables are read somewhere; their links lead to files and headings.
README stays a front page of at most 250 lines. The blocks that start with a file name
(`# myapp.py`) are projects run elsewhere: docs/testing.md's as a pytest project in
tests/test_testing_plugin.py, docs/frameworks.md's under real servers in
tests/test_frameworks.py."""

from __future__ import annotations

import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from alerthooks.testing.fakes import FakeAPI, FakeChargebee, FakeMetronome, FakeOrb, FakeStripe

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# What a reader sees: the TODO(lead) comments name commands that other branches are adding.
TEXT = re.sub(r"<!--.*?-->", "", README.read_text(), flags=re.DOTALL)
# The docs site's pages: checked as strictly as README.
DOCS = sorted((ROOT / "docs").rglob("*.md"))
REFERENCE = TEXT + "\n".join(p.read_text() for p in DOCS)
# Links to the repository's own files from docs/ (outside the site) are absolute: to this tree.
REPOSITORY = "https://github.com/alerthooks/alerthooks/blob/main/"
# Pages whose `# file.py` blocks are run by another test module, as a project.
PROJECTS = {"testing.md": "test_testing_plugin.py", "frameworks.md": "test_frameworks.py"}
# A Django project for the README's asgi.py recipe: the least settings Django starts with.
DJANGO_SETTINGS = """
SECRET_KEY = "readme"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "mysite.urls"
USE_TZ = True
"""
CLI = [str(Path(sys.executable).parent / "alerthooks")]
ENV = {
    "STRIPE_WEBHOOK_SECRET": "whsec_readme",
    "CHARGEBEE_WEBHOOK_USERNAME": "readme",
    "CHARGEBEE_WEBHOOK_PASSWORD": "pass:word",
    "ORB_WEBHOOK_SECRET": "orb_readme",
    "METRONOME_WEBHOOK_SECRET": "metronome_readme",
    # The README's own provider: a Standard Webhooks secret (whsec_ and base64).
    "ACME_WEBHOOK_SECRET": "whsec_YWNtZS1yZWFkbWUta2V5LTAxMjM0NTY3",
    "ALERTHOOKS_STORE": "memory://",
    "CONSOLE_PASSWORD": "console-readme",
    "NO_COLOR": "1",
}
# Deliveries for a provider the test kit has no sample of: the README's own Acme example.
OWN_SAMPLES = {
    "acme": {
        "type": "balance.threshold",
        "timestamp": "2026-12-07T10:00:00Z",
        "data": {"alert_id": "al_1", "customer": "cus_1", "threshold": 100, "value": 104},
    }
}

# Serves what a block left at module level: every AlertHooks, and every app that mounts one.
DRIVER = """
import json, runpy, sys
from alerthooks import AlertHooks
from alerthooks.testing import SyncAlertHooksClient, build_sample, default_sample

namespace = runpy.run_path(sys.argv[1], run_name="__main__")
own = json.loads(sys.argv[2])
served = []
for name, app in list(namespace.items()):
    if name.startswith("_") or not callable(app) or isinstance(app, type):
        continue
    try:
        client = SyncAlertHooksClient(app)
    except (LookupError, TypeError, ValueError):
        continue  # not an app with an AlertHooks in it
    with client:
        for provider_name, provider in client.hooks.providers.items():
            if not provider.configured:
                continue
            try:
                payload = build_sample(default_sample(provider_name))
            except ValueError:  # no kit for it (yet): only the README's own provider is sent
                if provider_name not in own:
                    continue
                payload = own[provider_name]
            answer = client.deliver(provider_name, payload)
            served.append(f"{name}:{provider_name}:{answer.status_code}")
print("SERVED", " ".join(served))
"""


def sections() -> Iterator[tuple[str, str]]:
    """(heading, text) of each ``##`` section."""
    parts = re.split(r"^(## .+)$", TEXT, flags=re.MULTILINE)
    yield "", parts[0]
    for i in range(1, len(parts), 2):
        yield parts[i][3:], parts[i + 1]


def python_blocks() -> list[tuple[str, str]]:
    """Every ```python block of README and docs/, except the projects of `# file.py` blocks."""
    found = []
    for heading, text in sections():
        for n, block in enumerate(re.findall(r"```python\n(.*?)```", text, re.DOTALL), 1):
            assert not re.match(r"# [\w/]+\.py\n", block), f"README {heading}: a project block"
            found.append((f"README {heading or 'top'} #{n}", block))
    for path in DOCS:
        page = path.relative_to(ROOT / "docs").as_posix()
        blocks = re.findall(r"```python\n(.*?)```", path.read_text(), re.DOTALL)
        for n, block in enumerate(blocks, 1):
            if re.match(r"# [\w/]+\.py\n", block):
                assert page in PROJECTS, f"{page}: a `# file.py` block that nothing runs"
                continue
            found.append((f"{page} #{n}", block))
    return found


def shell_lines() -> list[str]:
    """Every command of the ```sh blocks, continuation lines joined, comments dropped."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", REFERENCE, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line:
                lines.append(line)
    return lines


@cache
def cli_help(*command: str) -> str:
    done = subprocess.run(
        [*CLI, *command, "--help"], capture_output=True, text=True, timeout=60, env=clean_env()
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "CHARGEBEE_"))}
    return {**env, **ENV}


BLOCKS = python_blocks()


@pytest.mark.parametrize("source", [b for _, b in BLOCKS], ids=[name for name, _ in BLOCKS])
def test_each_python_block_runs_and_its_apps_answer_deliveries(source: str, tmp_path: Path) -> None:
    (tmp_path / "block.py").write_text(source)
    (tmp_path / "driver.py").write_text(DRIVER)
    shutil.copy(ROOT / "examples" / "alerts.toml", tmp_path / "alerts.toml")
    # Stripe's published form of its webhook source addresses, for the allowlist example.
    (tmp_path / "ips_webhooks.json").write_text(json.dumps({"WEBHOOKS": ["3.18.12.63"]}))
    if "mysite.settings" in source:
        (tmp_path / "mysite").mkdir()
        (tmp_path / "mysite" / "__init__.py").write_text("")
        (tmp_path / "mysite" / "settings.py").write_text(DJANGO_SETTINGS)
        (tmp_path / "mysite" / "urls.py").write_text("urlpatterns = []\n")
    env = clean_env()
    fakes: list[FakeAPI] = []
    if "AlertManager" in source:
        fakes = [fake().__enter__() for fake in (FakeStripe, FakeChargebee, FakeOrb, FakeMetronome)]
        for fake in fakes:
            env.update(fake.env())
    try:
        done = subprocess.run(
            [sys.executable, "driver.py", "block.py", json.dumps(OWN_SAMPLES)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        for fake in fakes:
            fake.__exit__(None, None, None)
    assert done.returncode == 0, done.stdout + done.stderr
    served = done.stdout.rsplit("SERVED", 1)[1].split()
    # The allowlist example lets in no address this client comes from: a provider it gives an
    # allowlist refuses before the body; the others answer.
    listed = {
        name.lower() for name in re.findall(r"^\s*([A-Z]\w*)\(.*\ballowed_ips=", source, re.M)
    }
    for entry in served:
        provider = entry.split(":")[1]
        assert entry.endswith(":403" if provider in listed else ":200"), served
    if "AlertHooks(" in source:
        assert served, "a block that builds an AlertHooks was not served"
    if "AlertManager" in source:
        assert "create" in done.stdout and "STRIPE_WEBHOOK_SECRET=whsec_" in done.stdout
        stripe_api = fakes[0]
        assert isinstance(stripe_api, FakeStripe)
        assert stripe_api.alerts(), "apply made no Stripe alert"


def test_the_blocks_cover_quickstart_handlers_lifespan_operations_manager_and_a_provider() -> None:
    joined = "\n".join(source for _, source in BLOCKS)
    for needle in (
        'Mount("/webhooks", app=hooks)',  # quickstart
        '@hooks.on("alert.cleared"',  # handlers
        "async with hooks.lifespan(app)",  # a host app's own lifespan
        "hooks.metrics_app()",  # operations
        'Stripe("whsec_…", allowed_ips=',  # security settings
        "asyncio.run(main())",  # the manager's Python API, as a script
        "class Acme(StandardWebhooksProvider)",  # adding a provider
        'app.mount("/webhooks", hooks)',  # FastAPI
        'asgi("/webhooks", is_mount=True, copy_scope=True)(hooks)',  # Litestar
        "hooks.wrap(get_asgi_application()",  # Django
        "hooks.wrap(app.asgi_app",  # Quart
    ):
        assert needle in joined, needle


def test_shell_lines_name_commands_and_options_that_exist() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = set(pyproject["project"]["optional-dependencies"])
    targets = set(re.findall(r"^([a-z][\w.-]*):", (ROOT / "Makefile").read_text(), re.M))
    checked = 0
    for line in shell_lines():
        argv = shlex.split(line)
        if argv[0] == "make":
            assert set(argv[1:]) <= targets, line
        elif argv[:2] == ["pip", "install"]:
            name, _, rest = argv[2].partition("[")
            assert name == pyproject["project"]["name"], line
            assert set(filter(None, rest.rstrip("]").split(","))) <= extras, line
        elif argv[0].endswith("alerthooks"):
            if argv[1:] == ["--help"] or argv[-1] == "--help":
                done = subprocess.run(
                    [*CLI, *argv[1:]], capture_output=True, text=True, env=clean_env()
                )
                assert done.returncode == 0 and "Usage: alerthooks" in done.stdout, line
            else:
                options = cli_help(argv[1])
                for token in argv[2:]:
                    token = token.strip("[]")  # `[--prune]`: an optional one
                    if token.startswith("--"):
                        assert token.split("=")[0] in options, f"{token} in {line}"
        else:
            raise AssertionError(f"a shell line this test does not know how to check: {line}")
        checked += 1
    assert checked >= 8


def test_every_command_and_option_in_the_text_exists() -> None:
    """`alerthooks CMD [--opt …]` in any code span or table: CMD and each --opt exist."""
    top = cli_help()
    commands = set(re.findall(r"^  ([a-z][a-z-]*)\s", top.split("Commands:")[1], re.M))
    mentioned = 0
    for span in re.findall(r"`(alerthooks [a-z]+[^`]*)`", REFERENCE):
        words = span.split()
        assert words[1] in commands, span
        options = cli_help(words[1])
        for flag in re.findall(r"(--[a-z][a-z-]*)", span):
            assert flag in options, f"{flag} of `{span}`"
        mentioned += 1
    assert mentioned >= 15
    # The flag tables (the manager's, send's, serve's, status'): each `--flag` row is some
    # command's option.
    every = "".join(cli_help(command) for command in sorted(commands))
    for flag in re.findall(r"^\| `(--[a-z-]+)", REFERENCE, re.M):
        assert re.search(rf"{flag}\b", every), flag


def test_environment_variables_are_read_by_the_code() -> None:
    code = "\n".join(
        p.read_text() for p in [*ROOT.glob("src/alerthooks/**/*.py"), ROOT / "Makefile"]
    ) + "\n".join(p.read_text() for p in ROOT.glob("tests/*.py") if p.name != "test_readme.py")
    providers = {
        "STRIPE",
        "CHARGEBEE",
        "ORB",
        "METRONOME",
        "LAGO",
        "OPENMETER",
        "AUTUMN",
        "FLEXPRICE",
    }
    names = set(re.findall(rf"\b((?:ALERTHOOKS|{'|'.join(providers)})_[A-Z_]+)\b", REFERENCE))
    assert len(names) >= 15
    for name in names:
        allowlist = re.fullmatch(r"ALERTHOOKS_([A-Z]+)_ALLOWED_IPS", name)
        if allowlist and allowlist.group(1) in providers:
            assert "_ALLOWED_IPS" in code
        elif name.endswith("_"):  # `CHARGEBEE_WEBHOOK_USERNAME` / `_PASSWORD`, written short
            assert name in code, name
        else:
            assert re.search(rf"\b{name}\b", code), name


@pytest.mark.parametrize(
    "doc", ["README.md", "CHANGELOG.md", *(p.relative_to(ROOT).as_posix() for p in DOCS)]
)
def test_relative_links_lead_to_files(doc: str) -> None:
    path = ROOT / doc
    text = path.read_text()
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert (path.parent / target).exists(), f"{doc}: {target}"
    for target in re.findall(rf"\]\({re.escape(REPOSITORY)}([^)#]+)", text):
        assert (ROOT / target).exists(), f"{doc}: {target}"


def test_readme_is_a_front_page_of_at_most_250_lines() -> None:
    lines = README.read_text().count("\n")
    assert lines <= 250, f"README.md has {lines} lines: move reference detail into docs/"


def test_every_docs_page_is_in_the_site_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text().split("\nnav:\n", 1)[1]
    listed = set(re.findall(r":\s+([\w/.-]+\.md)$", nav, re.M))
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in DOCS}
    assert listed == pages, textwrap.shorten(str(listed ^ pages), 200)


def test_anchors_in_readme_name_its_headings() -> None:
    def anchor(heading: str) -> str:
        return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")

    headings = {anchor(h) for h in re.findall(r"^#+ (.+)$", TEXT, re.M)}
    for target in re.findall(r"\]\(#([^)]+)\)", TEXT):
        assert target in headings, target
    # README's links into a docs page's heading (the site checks its own, with mkdocs --strict).
    for page, target in re.findall(r"\]\((docs/[\w/.-]+\.md)#([^)]+)\)", TEXT):
        text = re.sub(r"```.*?```", "", (ROOT / page).read_text(), flags=re.DOTALL)
        assert target in {anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}, page
    for path in DOCS:
        doc, text = path.name, path.read_text()
        for target in re.findall(r"README\.md#([^)]+)\)", text):
            assert target in headings, f"{doc}: {target}"


def test_every_test_named_in_the_security_map_exists() -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    named = re.findall(r"`(test_\w+\.py)::(test_\w+)`", text)
    assert len(named) >= 30
    for module, test in named:
        source = (ROOT / "tests" / module).read_text()
        assert re.search(rf"^(async )?def {test}\(", source, re.M), f"{module}::{test}"


@pytest.mark.parametrize("page", ["README.md", "docs/index.md"])
def test_the_install_table_lists_every_extra(page: str) -> None:
    extras = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )
    text = (ROOT / page).read_text()
    start = text.index("## Install\n")
    install = text[start : text.index("\n## ", start + 1)]
    cells = re.findall(r"^\| (`[a-z]+`(?:, `[a-z]+`)*) \|", install, re.M)
    listed = {name for cell in cells for name in re.findall(r"`([a-z]+)`", cell)}
    assert listed == extras, textwrap.shorten(str(listed ^ extras), 200)


def test_the_options_table_lists_every_alerthooks_keyword() -> None:
    from alerthooks import AlertHooks

    # **deprecated takes the provider keywords: the table names them in one row, not each.
    parameters = set(inspect.signature(AlertHooks.__init__).parameters) - {"self", "deprecated"}
    parameters |= {"stripe_secret", "chargebee_auth"}
    deployment = (ROOT / "docs" / "deployment.md").read_text()
    start = deployment.index("| option |")
    table = deployment[start : deployment.index("\n\n", start)]
    listed = {
        name
        for row in table.splitlines()[2:]
        for name in re.findall(r"`([a-z_]+)`", row.split(" | ")[0])
    }
    assert listed == parameters
