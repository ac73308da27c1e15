# `make run` trains the default experiment; `make test` runs the suite. Both set up
# .venv on first use (torch 2.13.0 CPU build from this machine's disk when present).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

.PHONY: run test bench
run: $(STAMP)
	$(BIN)/python -m nora train $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)
