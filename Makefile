# Two commands matter: `make dev` (the UI on the embedded local workspace) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# uv from PATH, else the one pip installs for $(PYTHON) (run as `python -m uv`, wherever pip put it).
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(PYTHON) -m uv
endif
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export DBX_LOCAL_STATE_DIR ?= $(CURDIR)/.local_workspace

.PHONY: setup bytecode delta-jars dev stop browser postgres demo check test bench requirements clean dagster-home dbt-manifest uv

# Concurrent Databricks runs from this Dagster instance (the `databricks` pool). 1 for the demo:
# runs for different days rewrite the same tables, and a laptop runs one Spark cluster well.
# Change it later with `dagster instance concurrency set databricks N`.
POOL_LIMIT ?= 1

setup: $(STAMP) bytecode delta-jars dbt-manifest

uv:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv || $(PYTHON) -m pip install --quiet --user uv

$(STAMP): requirements/dev.txt pyproject.toml | uv
	test -d $(VENV) || $(UV) venv --python $(PYTHON) $(VENV)
	$(UV) pip sync --compile-bytecode --python $(BIN)/python requirements/dev.txt
	$(UV) pip install --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

# Bytecode for our own modules, rewritten only where a source changed. Installed packages get theirs
# at install (--compile-bytecode above). Without .pyc files every Python process (each Dagster
# process, run worker, Spark driver, dbt command) compiles its imports again wherever
# PYTHONDONTWRITEBYTECODE is set, as on our CI image: about 5 s of CPU per process.
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q -j 0 dbx_assets bench tests

# Delta Lake's jars for the local clusters, fetched once per machine from Maven Central (checksums
# pinned in runtime/delta_jars.py) so a cluster start does no network I/O; a no-op once cached.
# DBX_DELTA_JARS_DIR names a folder of the jars instead, where Maven Central is out of reach.
delta-jars: $(STAMP)
	@$(BIN)/python -m dbx_assets.local_workspace delta-jars

# dbt's own parser writes dbt_project/target/manifest.json; a no-op while it is current.
dbt-manifest: $(STAMP)
	$(BIN)/python -m dbx_assets.integration.dbt prepare --project-dir dbt_project --if-stale

# Re-pin after editing dependencies in pyproject.toml (hashes, no index address recorded).
requirements: | uv
	$(UV) pip compile --quiet --generate-hashes -p 3.11 pyproject.toml -o requirements/base.txt
	$(UV) pip compile --quiet --generate-hashes -p 3.11 pyproject.toml --override requirements/overrides.txt --extra local --extra postgres --extra test -o requirements/dev.txt

dagster-home:
	mkdir -p $(DAGSTER_HOME)
	test -f $(DAGSTER_HOME)/dagster.yaml || printf 'telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: $(POOL_LIMIT)\n' > $(DAGSTER_HOME)/dagster.yaml

# The launcher lands the demo data, runs `dagster dev` in a process group of its own and, on
# Ctrl-C or `make stop`, stops it and the local workspace with its clusters within seconds.
dev: setup dagster-home
	$(BIN)/python -m dbx_assets.demo dev --pool-limit $(POOL_LIMIT)

# Stops a running `make dev` from another shell (state in DAGSTER_HOME and the workspace is kept).
stop:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m dbx_assets.demo stop; else echo "nothing to stop (no $(VENV))"; fi

demo: setup dagster-home
	$(BIN)/python -m dbx_assets.demo seed
	$(BIN)/python -m dbx_assets.demo run

# Debian's chromium for the browser test (driven by the playwright package, no `playwright install`).
browser:
	@test -x /usr/bin/chromium || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium || \
	  { $$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }; }

# PostgreSQL's server binaries (Debian's postgresql, any version) for the production-storage test, which
# starts its own server with initdb + pg_ctl; a no-op where they are installed.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql || \
	  { $$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; }; }

# Lint, format and types on the whole tree (settings in pyproject.toml); seconds, so `make test` runs it first.
check: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Three pytest workers on two cores: the Spark-bound modules spend most of their time waiting on
# JVMs and processes. Whole modules go to one worker (their fixtures share a cluster or a server), in
# collection order: tests/conftest.py puts the slowest modules first, so none of them is the tail.
# `make check` runs alongside (its output printed at the end): either failing fails `make test`.
TEST_WORKERS ?= 3
CHECK_LOG := $(VENV)/check.log
test: setup browser postgres
	@$(MAKE) --no-print-directory check >$(CHECK_LOG) 2>&1 & check=$$!; \
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS); \
	tests=$$?; wait $$check; checked=$$?; \
	echo "--- make check (lint, format, types)"; cat $(CHECK_LOG); \
	if [ $$checked -ne 0 ]; then echo "make check failed"; exit $$checked; fi; exit $$tests

bench: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m bench

clean:
	-$(BIN)/python -m dbx_assets.demo stop
	-$(BIN)/python -m dbx_assets.local_workspace stop --state-dir $(DBX_LOCAL_STATE_DIR)
	rm -rf $(VENV) $(DAGSTER_HOME) $(DBX_LOCAL_STATE_DIR)
