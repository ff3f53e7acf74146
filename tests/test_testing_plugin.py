"""The pytest plugin as users meet it: the test files of docs/testing.md, copied verbatim, and the
fixtures taken by name, run by pytest in a fresh process (pytester)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTING = Path(__file__).resolve().parent.parent / "docs" / "testing.md"


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # Warnings are errors, so the kit's own deprecations cannot hide; pytest-asyncio only asks
    # for its loop scope to be set, as any project using it does.
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error", *args)


def readme_files() -> dict[str, str]:
    """The ```python blocks of docs/testing.md that start with `# <file>.py`."""
    section = TESTING.read_text()
    files = {}
    for block in re.findall(r"```python\n(.*?)```", section, re.DOTALL):
        first, _, _ = block.partition("\n")
        name = re.fullmatch(r"# (\w+\.py)", first.strip())
        if name:
            files[name.group(1)] = block
    return files


def test_readme_names_an_app_its_conftest_and_tests_for_each_provider_and_queued_mode() -> None:
    files = readme_files()
    assert set(files) == {"myapp.py", "conftest.py", "test_myapp.py", "test_queued.py"}
    assert "send_stripe" in files["test_myapp.py"]
    assert "send_chargebee" in files["test_myapp.py"]
    assert 'mode="queued"' in files["test_queued.py"]


def test_tests_written_as_the_readme_says_pass_and_fixtures_work_by_name(
    pytester: pytest.Pytester,
) -> None:
    for name, source in readme_files().items():
        pytester.makepyfile(**{name.removesuffix(".py"): source})
    pytester.makepyfile(
        test_fixtures="""
        import contextlib

        from starlette.applications import Starlette
        from starlette.routing import Mount

        from alerthooks import AlertHooks
        from alerthooks.providers import Chargebee, Stripe

        hooks = AlertHooks(
            providers=[Stripe("whsec_plugin"), Chargebee(("user", "pass:word"))],
            store="memory://",
            mode="queued",
        )
        phases, seen, ids = [], [], []
        hooks.on("*")(seen.append)


        @contextlib.asynccontextmanager
        async def lifespan(app):
            phases.append("startup")
            async with hooks.lifespan():
                yield
            phases.append("shutdown")


        app = Starlette(routes=[Mount("/in", app=hooks)], lifespan=lifespan)


        def test_first(alerthooks_client, stripe_alert, chargebee_alert, chargebee_alert_cleared):
            client = alerthooks_client(app)
            assert client.prefix == "/in"
            assert phases == ["startup"]
            for payload in (chargebee_alert, chargebee_alert_cleared):
                assert client.send_chargebee(payload).status_code == 200
            # queued mode: the sync client drained the worker before returning
            assert client.send_stripe(stripe_alert).status_code == 200
            assert [e.type for e in seen] == ["alert.triggered", "alert.cleared", "alert.triggered"]
            assert client.send_stripe(stripe_alert, secret="whsec_wrong").status_code == 400
            ids.extend([stripe_alert["id"], chargebee_alert["id"]])


        def test_second(alerthooks_client, stripe_alert, chargebee_alert):
            assert phases == ["startup", "shutdown"]
            assert stripe_alert["id"] not in ids and chargebee_alert["id"] not in ids
            explicit = alerthooks_client(app, hooks=hooks, prefix="/in", drain=False)
            assert explicit.send_stripe(stripe_alert).status_code == 200
            explicit.drain()
            assert seen[-1].id == stripe_alert["id"]
        """
    )
    # One pytest process for both: the README's 4 tests and these 2.
    result = run(pytester)
    result.assert_outcomes(passed=6)


def test_fixtures_are_listed_with_their_docs(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest_inprocess("--fixtures", "-p", "no:cacheprovider")
    for name in (
        "alerthooks_client",
        "alerthooks_sample",
        "stripe_alert",
        "chargebee_alert",
        "chargebee_alert_cleared",
    ):
        result.stdout.fnmatch_lines([f"{name}*alerthooks*pytest_plugin.py*"])


def test_sample_fixtures_come_from_the_registry_and_any_sample_builds_by_name(
    pytester: pytest.Pytester,
) -> None:
    # A provider's kit loaded before the plugin (as `-p` does) gets its fixture by registering.
    pytester.makepyfile(
        toy_kit="""
        import itertools

        from alerthooks.testing import register_sample

        ids = itertools.count(1)
        register_sample(
            "toy_alert",
            provider="toy",
            file="stripe_alert_triggered.json",
            build=lambda: {"id": f"toy_{next(ids)}"},
            doc="A fresh toy alert.",
            fixture="toy_alert",
        )
        """
    )
    pytester.makepyfile(
        test_samples="""
        from alerthooks.testing import sample_names


        def test_registered_fixture(toy_alert):
            assert toy_alert["id"].startswith("toy_")


        def test_any_sample_by_name(alerthooks_sample, stripe_alert):
            assert alerthooks_sample("toy_alert")["id"].startswith("toy_")
            built = alerthooks_sample("chargebee_alert_within_limit")
            assert built["content"]["alert_status"]["alarm_status"] == "within_limit"
            assert alerthooks_sample("stripe_alert_triggered")["id"] != stripe_alert["id"]
            assert "toy_alert" in sample_names()
        """
    )
    result = run(pytester, "-p", "toy_kit")
    result.assert_outcomes(passed=2)
    listed = pytester.runpytest_subprocess("-p", "toy_kit", "--fixtures", "-p", "no:cacheprovider")
    listed.stdout.fnmatch_lines(["toy_alert*pytest_plugin.py*", "*A fresh toy alert.*"])


def test_deliver_through_the_fixture_client(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_deliver="""
        from alerthooks import AlertHooks
        from alerthooks.providers import Chargebee, Stripe
        from alerthooks.testing import default_sample


        def test_deliver(alerthooks_client, alerthooks_sample):
            hooks = AlertHooks(
                providers=[Stripe("whsec_x"), Chargebee(("u", "p"))], store="memory://"
            )
            seen = []
            hooks.on("*")(seen.append)
            client = alerthooks_client(hooks)
            for provider in ("stripe", "chargebee"):
                payload = alerthooks_sample(default_sample(provider))
                assert client.deliver(provider, payload).status_code == 200
            assert [e.provider for e in seen] == ["stripe", "chargebee"]
        """
    )
    run(pytester).assert_outcomes(passed=1)
