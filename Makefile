# Two commands set everything up on a fresh machine:
#   make demo   serves the demo app on http://127.0.0.1:6543 (SQLite store)
#   make test   lints, type-checks and runs the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench load scale clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[all,test,dev,demo]'
	touch $@

demo: $(STAMP)
	mkdir -p demo/var
	$(BIN)/pserve demo/development.ini

lint: $(STAMP)
	$(BIN)/ruff check src tests demo bench
	$(BIN)/ruff format --check src tests demo bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	touch $@

bench: $(VENV)/.bench-installed
	$(BIN)/python -m bench.run

load: $(VENV)/.bench-installed
	$(BIN)/python -m bench.load

scale: $(VENV)/.bench-installed
	$(BIN)/python -m bench.scale

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo/var
