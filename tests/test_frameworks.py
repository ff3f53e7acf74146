"""The framework recipes of docs/frameworks.md, each served as written by a real uvicorn behind a
``--root-path`` (as behind a proxy that strips a prefix): a signed delivery of every provider is
answered 200 by the mounted hooks, the handler runs on the worker the app's lifespan started,
the framework's own route still answers, and the test kit finds the hooks in each app.

The five servers start at once in one module-scoped fixture, so the recipes cost one server's
start-up, not five."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from alerthooks.providers import Chargebee, Metronome, Orb, Provider, Stripe
from alerthooks.testing import SyncAlertHooksClient, build_sample, default_sample

from .conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "frameworks.md"
ROOT_PATH = "/billing"
ENV = {
    "STRIPE_WEBHOOK_SECRET": "whsec_frameworks",
    "CHARGEBEE_WEBHOOK_USERNAME": "frameworks",
    "CHARGEBEE_WEBHOOK_PASSWORD": "pass:word",
    "ORB_WEBHOOK_SECRET": "orb_frameworks",
    "METRONOME_WEBHOOK_SECRET": "metronome_frameworks",
}
PROVIDERS: list[Provider] = [
    Stripe(ENV["STRIPE_WEBHOOK_SECRET"]),
    Chargebee((ENV["CHARGEBEE_WEBHOOK_USERNAME"], ENV["CHARGEBEE_WEBHOOK_PASSWORD"])),
    Orb(ENV["ORB_WEBHOOK_SECRET"]),
    Metronome(ENV["METRONOME_WEBHOOK_SECRET"]),
]
# The least a Django project has beside the recipe's asgi.py: settings and a view of its own.
DJANGO_FILES = {
    "mysite/__init__.py": "",
    "mysite/settings.py": (
        'SECRET_KEY = "frameworks"\nALLOWED_HOSTS = ["*"]\nROOT_URLCONF = "mysite.urls"\n'
        "USE_TZ = True\n"
    ),
    "mysite/urls.py": (
        "from django.http import HttpResponse\nfrom django.urls import path\n\n"
        'urlpatterns = [path("", lambda request: HttpResponse("home"))]\n'
    ),
}
# Which framework each recipe is, and the ASGI app it serves.
APPS = {
    "starlette_app.py": ("Starlette", "starlette_app:app"),
    "fastapi_app.py": ("FastAPI", "fastapi_app:app"),
    "litestar_app.py": ("Litestar", "litestar_app:app"),
    "mysite/asgi.py": ("Django", "mysite.asgi:application"),
    "quart_app.py": ("Quart", "quart_app:app"),
}
NO_LIFESPAN = "the worker is started by the first delivery"


def recipes() -> dict[str, str]:
    """The page's ```python blocks that start with `# <file>.py`, by file name."""
    found = {}
    for block in re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL):
        name = re.match(r"# ([\w/]+\.py)\n", block)
        if name:
            found[name.group(1)] = block
    return found


@dataclass
class Served:
    framework: str
    target: str
    port: int
    log: Path
    popen: subprocess.Popen[bytes]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, pattern: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.output(), re.MULTILINE):
            assert self.popen.poll() is None, f"{self.framework} exited:\n{self.output()}"
            assert time.monotonic() < deadline, f"no {pattern!r} in:\n{self.output()}"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recipes written out as files, with the Django project around mysite/asgi.py."""
    where = tmp_path_factory.mktemp("frameworks")
    for name, source in {**recipes(), **DJANGO_FILES}.items():
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        (where / name).write_text(source)
    return where


@pytest.fixture(scope="module")
def servers(project: Path) -> Iterator[dict[str, Served]]:
    running: dict[str, Served] = {}
    env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(ENV))}
    try:
        for name, (framework, target) in APPS.items():
            port, log = free_port(), project / f"{framework}.log"
            server = ["uvicorn", target, "--host", "127.0.0.1", "--port", str(port)]
            popen = subprocess.Popen(
                [sys.executable, "-m", *server, "--root-path", ROOT_PATH, "--lifespan", "on"],
                cwd=project,
                env={
                    **env,
                    **ENV,
                    "ALERTHOOKS_STORE": f"sqlite:///{project / framework}.db",
                    "PYTHONUNBUFFERED": "1",
                },
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
            )
            running[name] = Served(framework, target, port, log, popen)
        for served in running.values():
            served.wait_for("Application startup complete")
        yield running
    finally:
        for served in running.values():
            served.stop()


def test_the_page_has_a_recipe_for_each_framework() -> None:
    assert set(recipes()) == set(APPS)


@pytest.mark.parametrize("name", list(APPS), ids=[f for f, _ in APPS.values()])
def test_a_recipe_served_answers_every_provider_and_runs_its_handler_on_the_worker(
    servers: dict[str, Served], name: str
) -> None:
    served = servers[name]
    with httpx.Client(base_url=served.base, timeout=10) as client:
        for provider in PROVIDERS:
            payload = build_sample(default_sample(provider.name))
            body = httpx.Request("POST", "/", json=payload).content
            answer = client.post(
                f"/webhooks/{provider.name}",
                content=body,
                headers={"content-type": "application/json", **provider.sign(body)},
            )
            assert answer.status_code == 200, (provider.name, answer.text, served.output())
            assert answer.json() == {"status": "accepted"}
            served.wait_for(rf"^handled {provider.name} {re.escape(payload['id'])}$")
            unsigned = client.post(f"/webhooks/{provider.name}", content=body)
            assert unsigned.status_code in (400, 401), unsigned.text
        assert client.get("/").text.strip('"') == "home"
    # The worker was started by the app's lifespan, not by the first delivery.
    assert NO_LIFESPAN not in served.output()


@pytest.mark.parametrize("name", list(APPS), ids=[f for f, _ in APPS.values()])
def test_the_test_kit_finds_the_hooks_in_each_recipe(
    project: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ALERTHOOKS_STORE", "memory://")
    monkeypatch.syspath_prepend(str(project))
    module_name, attribute = APPS[name][1].split(":")
    for loaded in [m for m in sys.modules if m.split(".")[0] in ("mysite", module_name)]:
        monkeypatch.delitem(sys.modules, loaded)
    app = getattr(importlib.import_module(module_name), attribute)
    with SyncAlertHooksClient(app) as client:
        assert client.prefix == "/webhooks"
        for provider in PROVIDERS:
            payload = build_sample(default_sample(provider.name))
            assert client.deliver(provider.name, payload).status_code == 200
        client.drain()
        assert client.get("/").text.strip('"') == "home"
