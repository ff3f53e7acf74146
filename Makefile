# Two commands on a fresh machine: `make run` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
# The store tests run against this machine's PostgreSQL (trust auth); CI starts it if it is down.
ALERTHOOKS_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/test
export ALERTHOOKS_TEST_POSTGRES_URL

# The console's browser test drives Debian's Chromium: as root, install it when it is missing
# (elsewhere the test says it cannot run, in one line, and skips).
CHROMIUM ?= /usr/bin/chromium

.PHONY: run test check lint typecheck bench clean browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@# The distribution was named alerthooks up to 0.1.0 (now alerthooks-sdk): drop a stale one.
	$(BIN)/python -m pip uninstall -q -y alerthooks 2>/dev/null || true
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

run: $(STAMP)
	$(BIN)/python examples/run.py

test: $(STAMP) browser
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

browser:
	@test -x $(CHROMIUM) || [ "$$(id -u)" != 0 ] || { \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
	  || echo "chromium could not be installed: the console browser test will skip"

$(VENV)/.installed-bench: $(STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,bench]'
	touch $@

bench: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/receiver.py
	$(BIN)/python benchmarks/http_e2e.py
	$(BIN)/python benchmarks/sync.py

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache alerthooks.db*
