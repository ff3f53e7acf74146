# Two commands on a fresh machine: `make run` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
# The store tests run against this machine's PostgreSQL (trust auth); CI starts it if it is down.
ALERTHOOKS_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/test
export ALERTHOOKS_TEST_POSTGRES_URL

.PHONY: run test check lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

run: $(STAMP)
	$(BIN)/python examples/run.py

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

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

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache alerthooks.db*
