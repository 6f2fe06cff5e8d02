# Two commands set everything up on a fresh machine:
#   make demo   serves the demo app on http://127.0.0.1:6543 (SQLite store)
#   make test   lints, type-checks and runs the whole test suite
# and, for a release or a docs change:
#   make docs         builds the docs site into docs/_build/html (warnings are errors)
#   make wheel-smoke  builds the sdist and the wheel, checks them, installs the
#                     wheel into a fresh venv and runs a smoke test outside the tree
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo demo-toolbar test lint typecheck pytest docs dist wheel-smoke bench hot load scale clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The library and the demo (its own project in demo/, never in the library's
# wheel), both editable: tests/test_demo.py imports the demo.
$(STAMP): pyproject.toml demo/pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[all,test,dev]' -e ./demo
	touch $@

demo: $(STAMP)
	mkdir -p demo/var
	$(BIN)/pserve demo/development.ini

demo-toolbar: $(STAMP)
	mkdir -p demo/var
	$(BIN)/pserve demo/toolbar.ini

lint: $(STAMP)
	$(BIN)/ruff check src tests demo bench .ci/wheel_smoke.py docs/conf.py
	$(BIN)/ruff format --check src tests demo bench .ci/wheel_smoke.py docs/conf.py

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

$(VENV)/.docs-installed: $(STAMP)
	$(BIN)/pip install -q -e '.[docs]'
	touch $@

# -W: a warning fails the build; -n: every cross-reference (API names, links
# between pages, heading anchors) must resolve. No network is used.
docs: $(VENV)/.docs-installed
	rm -rf docs/_build/html
	$(BIN)/sphinx-build -q -W --keep-going -n -b html docs docs/_build/html

dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

wheel-smoke: dist
	$(BIN)/python .ci/wheel_smoke.py dist

$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	touch $@

# bench: the per-request cost of every store and peer, then the hot session.
bench: $(VENV)/.bench-installed
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.hot

# Parallel writers of one session on a two-process server (ours and the peers).
hot: $(VENV)/.bench-installed
	$(BIN)/python -m bench.hot

load: $(VENV)/.bench-installed
	$(BIN)/python -m bench.load

scale: $(VENV)/.bench-installed
	$(BIN)/python -m bench.scale

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo/var docs/_build dist
