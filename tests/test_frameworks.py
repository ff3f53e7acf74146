"""The framework recipes of docs/frameworks.md, each served as written by a real uvicorn server
on loopback behind a ``root_path`` (as behind a proxy that strips a prefix): a signed delivery of
every provider is answered 200 by the mounted hooks, the handler runs on the worker the app's
lifespan started, the framework's own route still answers, and the test kit finds the hooks in
each app.

The five servers run in threads of this process, started at once in one module-scoped fixture,
so the frameworks are imported once and the recipes cost about one server's start-up."""

from __future__ import annotations

import importlib
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import uvicorn

from alerthooks.providers import Chargebee, Metronome, Orb, Provider, Stripe
from alerthooks.testing import SyncAlertHooksClient, build_sample, default_sample

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
MODULES = {target.split(":")[0].split(".")[0] for _, target in APPS.values()}
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
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def base(self) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"


def wait_for(capsys: pytest.CaptureFixture[str], pattern: str, seen: list[str]) -> None:
    """Poll what the handlers printed (kept in ``seen``) for ``pattern``, with a deadline."""
    deadline = time.monotonic() + 20
    while not re.search(pattern, "".join(seen), re.MULTILINE):
        assert time.monotonic() < deadline, f"no {pattern!r} in:\n{''.join(seen)}"
        time.sleep(0.02)
        seen.append(capsys.readouterr().out)


def import_recipe(project: Path, name: str) -> Any:
    """The recipe's app, imported afresh (its hooks read the environment when built)."""
    module_name, attribute = APPS[name][1].split(":")
    for loaded in [m for m in sys.modules if m.split(".")[0] in ("mysite", module_name)]:
        del sys.modules[loaded]
    module: ModuleType = importlib.import_module(module_name)
    return getattr(module, attribute)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The recipes written out as files, with the Django project around mysite/asgi.py, on
    sys.path, and the providers' credentials in the environment."""
    where = tmp_path_factory.mktemp("frameworks")
    for name, source in {**recipes(), **DJANGO_FILES}.items():
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        (where / name).write_text(source)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in ENV.items():
            patch.setenv(key, value)
        patch.setenv("ALERTHOOKS_STORE", "memory://")
        patch.syspath_prepend(str(where))
        yield where
        for loaded in [m for m in sys.modules if m.split(".")[0] in ("mysite", *MODULES)]:
            del sys.modules[loaded]


@pytest.fixture(scope="module")
def servers(project: Path) -> Iterator[dict[str, Served]]:
    running: dict[str, Served] = {}
    try:
        for name, (framework, _) in APPS.items():
            config = uvicorn.Config(
                import_recipe(project, name),
                host="127.0.0.1",
                port=0,
                root_path=ROOT_PATH,
                lifespan="on",
                log_level="warning",
            )
            server = uvicorn.Server(config)
            thread = threading.Thread(target=server.run, name=f"uvicorn {framework}")
            thread.start()
            running[name] = Served(framework, server, thread)
        deadline = time.monotonic() + 30
        for served in running.values():
            while not served.server.started:
                assert served.thread.is_alive(), f"{served.framework} did not start"
                assert time.monotonic() < deadline, f"{served.framework} did not start in time"
                time.sleep(0.02)
        yield running
    finally:
        for served in running.values():
            served.server.should_exit = True
        for served in running.values():
            served.thread.join(10)


def test_the_page_has_a_recipe_for_each_framework() -> None:
    assert set(recipes()) == set(APPS)


@pytest.mark.parametrize("name", list(APPS), ids=[f for f, _ in APPS.values()])
def test_a_recipe_served_answers_every_provider_and_runs_its_handler_on_the_worker(
    servers: dict[str, Served],
    name: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    served, printed = servers[name], [capsys.readouterr().out]
    with httpx.Client(base_url=served.base, timeout=10) as client:
        for provider in PROVIDERS:
            payload = build_sample(default_sample(provider.name))
            body = httpx.Request("POST", "/", json=payload).content
            answer = client.post(
                f"/webhooks/{provider.name}",
                content=body,
                headers={"content-type": "application/json", **provider.sign(body)},
            )
            assert answer.status_code == 200, (provider.name, answer.text)
            assert answer.json() == {"status": "accepted"}
            wait_for(capsys, rf"^handled {provider.name} {re.escape(payload['id'])}$", printed)
            unsigned = client.post(f"/webhooks/{provider.name}", content=body)
            assert unsigned.status_code in (400, 401), unsigned.text
        assert client.get("/").text.strip('"') == "home"
    # The worker was started by the app's lifespan, not by the first delivery.
    assert NO_LIFESPAN not in caplog.text


@pytest.mark.parametrize("name", list(APPS), ids=[f for f, _ in APPS.values()])
def test_the_test_kit_finds_the_hooks_in_each_recipe(project: Path, name: str) -> None:
    app = import_recipe(project, name)
    with SyncAlertHooksClient(app) as client:
        assert client.prefix == "/webhooks"
        for provider in PROVIDERS:
            payload = build_sample(default_sample(provider.name))
            assert client.deliver(provider.name, payload).status_code == 200
        client.drain()
        assert client.get("/").text.strip('"') == "home"
