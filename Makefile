# Two commands on a fresh machine: `make up` runs the product, `make test` runs the tests.
# Both create the virtualenv and install the pinned dependencies first (only when needed):
# `make up` / `make install` only what the product runs on, `make test` / `make lint` the
# `[test]` extra too. One stamp each, so `make up` after `make test` installs nothing.

PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
MARKET  ?= sim
RUNTIME := $(VENV)/.installed-runtime
STAMP   := $(VENV)/.installed

.PHONY: up test install demo lint faults bench clean

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUNTIME): pyproject.toml constraints.txt | $(VENV)/bin/python
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $(RUNTIME)

$(STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	touch $(RUNTIME) $(STAMP)

install: $(RUNTIME)

up: $(RUNTIME)
	$(BIN)/aitrader up --market $(MARKET)

# Test files run side by side in TEST_WORKERS processes (pytest-xdist; each worker starts its
# own embedded PostgreSQL and nats-server; a file stays in one worker, so its module fixtures
# are shared as before). The tests mostly wait on servers and subprocesses, so 3 workers on
# 2 cores about halve the wall time. TEST_WORKERS=0 runs them in this one process.
TEST_WORKERS ?= 3

test: $(STAMP)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

faults: $(STAMP)
	AITRADER_FAULTS=full $(BIN)/pytest -m faults

demo: $(RUNTIME)
	$(BIN)/aitrader demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy aitrader shared services
	$(BIN)/lint-imports

# The console's pages and event stream (benchmarks/console_pages.py; figures in
# docs/performance.md). Embedded PostgreSQL and nats-server unless AITRADER_DATABASE_URL /
# AITRADER_NATS_URL are set.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.console_pages

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
