# `make run` trains the default experiment; `make test` runs the suite; `make bench` runs
# every benchmark in quick mode (`make bench FULL=1`: the sizes the README's figures use).
# All set up .venv on first use (torch 2.13.0 CPU build from this machine's disk when present).
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

# quick mode: fewer repetitions and smaller sizes; each benchmark still alternates its two
# sides and ends with its `<what> ratio: <x.xx>` line
QUICK = $(if $(FULL),,1)
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_overhead.py $(if $(QUICK),--reps 3 --epochs 1)
	$(BIN)/python benchmarks/bench_isolation.py $(if $(QUICK),--reps 3 --mb 50)
	$(BIN)/python benchmarks/bench_ppo.py $(if $(QUICK),--reps 1 --steps 10000)
	$(BIN)/python benchmarks/bench_xdist.py $(if $(QUICK),--rounds 1 --sizes ci)
	$(BIN)/python benchmarks/bench_callbacks.py $(if $(QUICK),--reps 3 --epochs 1)
	$(BIN)/python benchmarks/bench_verify.py $(if $(QUICK),--reps 1 --record-reps 1 --epochs 10 --record-epochs 5 --every 5)
