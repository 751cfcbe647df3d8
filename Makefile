# The two commands a newcomer needs: `make run` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
SHARED_DATA ?= $(abspath ../shared/data)
RUN_BARS ?= 20000

.PHONY: help install dev run test test-fast lint bench soak validate completions clean

help:
	@echo "make run          install and run the engine offline (sim feed, SQLite, no Redis)"
	@echo "make test         install dev extras and run the whole test suite"
	@echo "make install      install the tool at $(BIN)/supreme"
	@echo "make lint         ruff and mypy"
	@echo "make bench        benchmarks; results go to BENCHMARKS.md"
	@echo "make soak         long opt-in soak tests"
	@echo "make validate     the guide's quick validation tier (5 minutes)"
	@echo "make completions  regenerate completions/ for bash, zsh and fish"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

dev: $(STAMP)

run: install
	$(BIN)/supreme run --feed sim --bars $(RUN_BARS) --speed max --seed 7

test: dev
	SUPREME_SHARED_DATA=$(SHARED_DATA) $(BIN)/python -m pytest -q

test-fast: dev
	SUPREME_SHARED_DATA=$(SHARED_DATA) $(BIN)/python -m pytest -q -m "not slow"

lint: dev
	$(BIN)/ruff check engine supreme_cli tests benchmarks
	$(BIN)/mypy

bench: dev
	SUPREME_SHARED_DATA=$(SHARED_DATA) $(BIN)/python benchmarks/run_all.py --write BENCHMARKS.md

validate: install
	SUPREME_SHARED_DATA=$(SHARED_DATA) $(BIN)/supreme validate --profile quick

soak: dev
	SUPREME_SHARED_DATA=$(SHARED_DATA) $(BIN)/python -m pytest -q --soak -m soak

completions: install
	$(BIN)/python -m supreme_cli.completions completions

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
