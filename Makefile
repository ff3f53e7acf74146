# Two commands on a fresh machine: `make run` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
# `make run` installs the package alone (what serving needs); `make test` adds [dev]. Every
# version, the tools' and the test dependencies' included, is pinned in requirements/*.txt,
# compiled from pyproject.toml by `make lock` (package names and versions only); uv itself is
# pinned here and kept in .uv/, outside the project's environment.
RUN_STAMP := $(VENV)/.installed-run
UV_VERSION := 0.13.10
UV := .uv/bin/uv
# Install the pinned set of one requirements file, then the project itself without resolving.
define install
	$(UV) pip install --quiet --python $(BIN)/python -r requirements/$(1).txt
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
endef
COMPILE := $(UV) pip compile pyproject.toml --python-version 3.11 --quiet
# The store tests run against this machine's PostgreSQL (trust auth); CI starts it if it is down.
ALERTHOOKS_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/test
export ALERTHOOKS_TEST_POSTGRES_URL

# The console's browser test drives Debian's Chromium: as root, install it when it is missing
# (elsewhere the test says it cannot run, in one line, and skips).
CHROMIUM ?= /usr/bin/chromium

.PHONY: run test check lint typecheck bench clean browser docs dist lock

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)

$(RUN_STAMP): pyproject.toml requirements/run.txt | $(UV)
	test -x $(BIN)/python || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	@# The distribution was named alerthooks up to 0.1.0 (now alerthooks-sdk): drop a stale one.
	$(UV) pip uninstall --quiet --python $(BIN)/python alerthooks 2>/dev/null || true
	$(call install,run)
	touch $@

$(STAMP): pyproject.toml requirements/dev.txt | $(UV)
	test -x $(BIN)/python || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	$(UV) pip uninstall --quiet --python $(BIN)/python alerthooks 2>/dev/null || true
	$(call install,dev)
	touch $@

# After a change to the dependencies in pyproject.toml: resolve again and rewrite the pins
# (the versions already pinned are kept where they still fit).
lock: | $(UV)
	$(COMPILE) -o requirements/run.txt
	$(COMPILE) --extra dev -o requirements/dev.txt
	$(COMPILE) --extra docs -o requirements/docs.txt
	$(COMPILE) --extra dev --extra bench -o requirements/bench.txt

run: $(RUN_STAMP)
	$(BIN)/python examples/run.py

test: $(STAMP) browser
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

browser:
	@test -x $(CHROMIUM) || [ "$$(id -u)" != 0 ] || { \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
	  || echo "chromium could not be installed: the console browser test will skip"

$(VENV)/.installed-bench: $(STAMP) requirements/bench.txt
	$(call install,bench)
	touch $@

bench: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/receiver.py
	$(BIN)/python benchmarks/http_e2e.py
	$(BIN)/python benchmarks/sync.py

$(VENV)/.installed-docs: $(RUN_STAMP) requirements/docs.txt
	$(call install,docs)
	touch $@

# The site from docs/ into site/: a broken link or anchor, a page not in the navigation or an
# API reference that does not resolve fails the build.
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The sdist and the wheel, built without network from the pinned build tools, checked by twine.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .
	$(BIN)/twine check --strict dist/*

check: $(STAMP)
	@# The pins must be what pyproject.toml asks for, or make would install stale versions.
	@$(BIN)/python tools/check_pins.py || { echo "requirements/*.txt is out of date with pyproject.toml: run make lock" >&2; exit 1; }
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .uv .pytest_cache .mypy_cache .ruff_cache alerthooks.db* site dist
