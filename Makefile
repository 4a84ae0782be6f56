# Two commands on a fresh machine: `make run` and `make test`. `make help` lists the rest.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
# uv's own version comes from the lock too: one source of exact versions
UV_PIN := $(shell grep -m1 '^uv==' requirements.lock)
# UNIVERSE=sp500: the embedded S&P 500 universe (pipeline.yaml `universe`) on a state of
# its own, so its tickers, days and registered models never mix with the default's: run,
# replay, serve and ui get their own state_dir, AIRFLOW_HOME, Optuna and MLflow stores
# (relative URLs and paths resolve against the project root, see pipeline/config.py)
UNIVERSE ?= default
ifneq ($(UNIVERSE),default)
UNIVERSE_TARGETS := run replay serve ui report
$(UNIVERSE_TARGETS): export PIPELINE__UNIVERSE := $(UNIVERSE)
$(UNIVERSE_TARGETS): export PIPELINE__STATE_DIR := state/$(UNIVERSE)
$(UNIVERSE_TARGETS): export AIRFLOW_HOME := $(CURDIR)/state/$(UNIVERSE)/airflow
$(UNIVERSE_TARGETS): export OPTUNA_STORAGE := sqlite:///state/$(UNIVERSE)/optuna.db
$(UNIVERSE_TARGETS): export MLFLOW_TRACKING_URI := sqlite:///mlruns/$(UNIVERSE)/mlflow.db
$(UNIVERSE_TARGETS): export PIPELINE__TRACKING__ARTIFACT_ROOT := mlruns/$(UNIVERSE)/artifacts
endif
ifeq ($(UNIVERSE),sp500)  # its data: 2013-02-08 .. 2018-02-07
DATE ?= 2018-02-07
FROM ?= 2017-11-01
TO ?= 2018-02-07
endif
DATE ?= 2013-03-01
# Airflow's home and DAGs (the CLI sets the same defaults when run without make; it
# migrates the metadata DB on first use); no recipe below splits these paths on spaces
export AIRFLOW_HOME ?= $(CURDIR)/state/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__EXECUTOR := LocalExecutor
export GX_ANALYTICS_ENABLED := False
export TF_CPP_MIN_LOG_LEVEL := 2
export MLFLOW_DISABLE_TELEMETRY := true

TICKER ?= GOOG
PYTEST_WORKERS ?= 2
.PHONY: help install hooks run replay report serve ui stack stack-down stack-status test backtest bench bench-scaleout browser lint fmt clean

help: ## list targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

# A fresh venv whenever the lock changes, so it holds exactly the lock. uv installs the
# lock about 10x faster than pip (12 s vs 135 s here); pip only bootstraps uv itself.
# Bytecode is compiled at install: where PYTHONDONTWRITEBYTECODE is set, every process
# would otherwise compile MLflow, Airflow and TensorFlow from source on each start
# (importing them took 2-3x as long: 31 s vs 12 s for the tuning step's imports).
$(STAMP): requirements.lock pyproject.toml
	$(PY) -m venv --clear $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(UV_PIN)
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	rm -rf price_pipeline.egg-info  # the build's leftover: from the project root it would register the plugin twice
	touch $@

install: $(STAMP) ## create .venv from requirements.lock (exact versions, via uv)

hooks: $(STAMP) ## install the git pre-commit hook (ruff + mypy, see .pre-commit-config.yaml)
	$(BIN)/pre-commit install

run: $(STAMP) ## one trading day for the embedded universe: daily DAG (+ retrain when needed) (DATE=YYYY-MM-DD; UNIVERSE=sp500)
	$(BIN)/python -m pipeline daily $(DATE)

FROM ?= 2012-12-03
TO ?= 2013-03-01
replay: $(STAMP) ## the schedule day after day on the embedded data (FROM=, TO=; UNIVERSE=sp500; one JSON line)
	$(BIN)/python -m pipeline replay --from $(FROM) --to $(TO)

report: $(STAMP) ## write a day's report page from its stored forecasts (DATE=; UNIVERSE=sp500)
	$(BIN)/python -m pipeline report $(DATE)

WORKERS ?= 1
serve: $(STAMP) ## serve the production model (the universe's, any ticker) over REST (follows the alias; WORKERS=N; UNIVERSE=sp500)
	$(BIN)/python -m pipeline serve --ticker $(TICKER) --workers $(WORKERS)

ui: $(STAMP) ## Airflow UI :8080, MLflow UI :5000, Optuna dashboard :8081 (UNIVERSE=sp500: its stores)
	$(BIN)/python -m pipeline ui

stack: $(STAMP) ## the scale-out here: Airflow on Celery (2 workers), MLflow server with auth, PostgreSQL + Redis
	$(BIN)/python -m pipeline stack up

stack-down: $(STAMP) ## stop every process `make stack` started
	$(BIN)/python -m pipeline stack down

stack-status: $(STAMP) ## which of the stack's processes are up
	$(BIN)/python -m pipeline stack status

bench-scaleout: $(STAMP) ## tuning on the stack with 1 vs 2 Celery workers (JSON under state/bench/)
	mkdir -p state/bench
	$(BIN)/python -m bench.scaleout | tee state/bench/scaleout.json

backtest: $(STAMP) ## walk-forward backtest of the universe vs every baseline (JSON under state/bench/)
	mkdir -p state/bench
	$(BIN)/python -m pipeline backtest | tee state/bench/backtest.json

bench: $(STAMP) ## accuracy, tuning and serving benchmarks (JSON under state/bench/)
	mkdir -p state/bench
	$(BIN)/python -m bench.accuracy | tee state/bench/accuracy.json
	$(BIN)/python -m bench.tuning | tee state/bench/tuning.json
	$(BIN)/python -m bench.serving | tee state/bench/serving.json

test: $(STAMP) browser ## run the whole test suite (two workers; `make test PYTEST_WORKERS=0` runs it in one process)
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The report page's test opens it in Debian's Chromium, installed here where it is missing
APT := $(if $(filter 0,$(shell id -u)),,sudo) apt-get
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { echo "installing Debian's chromium for the report page's browser test"; \
	    $(APT) install -y -qq chromium >/dev/null || \
	    { $(APT) update -qq && $(APT) install -y -qq chromium >/dev/null; } || \
	    { echo "could not install chromium: apt-get install chromium, then make test"; exit 1; }; }

lint: $(STAMP) ## ruff + mypy + the import layers
	$(BIN)/ruff check pipeline dags tests bench
	$(BIN)/ruff format --check pipeline dags tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache  # one-way layers: .importlinter, docs/layout.md

fmt: $(STAMP) ## format the code
	$(BIN)/ruff format pipeline dags tests bench
	$(BIN)/ruff check --fix pipeline dags tests bench

clean: $(STAMP) ## remove run-time state (state/, mlruns/ content, every UNIVERSE's) unless a run holds it; keeps .venv
	$(BIN)/python -m pipeline clean
