# One entry point for people and CI. Every target sets up what it needs on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
EXTRAS ?= dev
PYTEST_ARGS ?=

.PHONY: setup demo test lint typecheck unit clean

# torch goes first so that pip never resolves a CUDA build for the packages that depend on it.
$(VENV)/.ready-$(EXTRAS): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==$(TORCH_VERSION)"
	$(PIP) install -q -e ".[$(EXTRAS)]"
	touch $@

setup: $(VENV)/.ready-$(EXTRAS)

demo: $(VENV)/.ready-$(EXTRAS)
	$(VENV)/bin/stepaudio --help

lint: setup
	$(VENV)/bin/ruff check src tests

typecheck: setup
	$(VENV)/bin/mypy

unit: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

test: lint typecheck unit

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
