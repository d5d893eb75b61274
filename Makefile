# Two commands on a fresh machine: `make up` runs the product, `make test` runs the tests.
# Both create the virtualenv and install the pinned dependencies first (only when needed).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
MARKET ?= sim
STAMP  := $(VENV)/.installed

.PHONY: up test install demo lint faults bench clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/aitrader up --market $(MARKET)

test: $(STAMP)
	$(BIN)/pytest

faults: $(STAMP)
	AITRADER_FAULTS=full $(BIN)/pytest -m faults

demo: $(STAMP)
	$(BIN)/aitrader demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy aitrader shared services
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
