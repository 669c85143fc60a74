# The two commands: `make demo` and `make test`. Each installs what is missing (uv, then the locked env).
SHELL := /bin/bash
PY ?= python3
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(PY) -m uv
endif

.PHONY: setup demo test lint bench fuzz faults up down clean

setup:
	@command -v uv >/dev/null 2>&1 || $(PY) -m uv --version >/dev/null 2>&1 || $(PY) -m pip install --quiet uv
	@$(UV) sync --frozen --quiet
	@if command -v npm >/dev/null 2>&1; then (cd web && npm ci --no-audit --no-fund --silent); \
	else echo "note: npm not found: the console page's chart library (web/node_modules) is not installed"; fi

demo: setup            ## the live pipeline on the embedded default (Ctrl-C stops it and prints a summary)
	$(UV) run pulse demo $(ARGS)

# the suite runs on TEST_WORKERS pytest-xdist workers, a module per worker at a time, the Apache Pulsar tier on one
# worker and the fault suite on one (tests/conftest.py); TEST_WORKERS=0: one process
TEST_WORKERS ?= 2

test: setup            ## lint + the whole test suite (real broker, real PostgreSQL, local venues)
	$(UV) run ruff check .
	$(UV) run pytest -n $(TEST_WORKERS) --dist loadgroup $(ARGS)

bench: setup           ## benchmarks: figures and ratios against baselines measured in the same run
	$(UV) run pulse bench $(ARGS)

fuzz: setup           ## every decoder against 1,000,000 mutated inputs (ARGS="--inputs N --only kraken --save")
	$(UV) run python -m bench.fuzz $(ARGS)

faults: setup         ## the fault-injection suite alone (its table at the end)
	$(UV) run pytest -m faults tests/faults $(ARGS)

lint: setup
	$(UV) run ruff check .
	$(UV) run ruff format --check .

up: setup
	$(UV) run pulse up
down: setup
	$(UV) run pulse down

clean:
	-$(UV) run pulse down 2>/dev/null
	rm -rf .pulse
