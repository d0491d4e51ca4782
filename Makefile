# Two commands on a fresh machine:
#   make run   - set up, then run the main job on the embedded default (synthetic logs)
#   make test  - set up, then run the test suite (make test-fast: without the slow tests)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The caller's own DAGSTER_HOME (empty: none), which `make ui` honours; every other target runs
# on the project's.
CALLER_DAGSTER_HOME := $(DAGSTER_HOME)
export DAGSTER_HOME := $(CURDIR)/dagster_home

.PHONY: setup run test test-fast ui lint clean postgres-binaries

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: pip takes the local CPU build instead of a multi-GB CUDA one.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

run: setup
	$(BIN)/python -m cli.demo

# Every test, in two processes (pytest-xdist): much of the suite waits on servers, subprocesses
# and daemons rather than computing. Each module runs whole in one process, the longest first
# (tests/conftest.py XDIST_*); `$(BIN)/python -m pytest -q` alone runs the same tests in one.
test: setup postgres-binaries
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The inner loop: the suite without the tests marked slow (tests/conftest.py SLOW: each over
# ~20 s, real deployments, servers and killed processes). `make test` runs them all, as CI does.
test-fast: setup postgres-binaries
	$(BIN)/python -m pytest -q -m "not slow"

# The tests start a real PostgreSQL server of their own (tests/postgres_support.py) from Debian's
# binaries; installed here where missing (CI runs as root on a clean Debian machine).
postgres-binaries:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then \
		echo "installing the PostgreSQL server binaries (apt-get install postgresql-15)"; \
		apt-get update -qq && { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 \
		|| DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }; fi

# `recs ui` (cli/main.py): the instance's storage created first by one process
# (assets/platform/instance.py says why), the demo's settings when no deployment is configured (no
# recs.toml, RECS_CONFIG, RECS_LANDING_ROOT or RECS_WAREHOUSE), the caller's DAGSTER_HOME and
# RECS_DATA_ROOT honoured, and a free port (said) when UI_PORT (3000) is taken.
UI_PORT ?= 3000
ui: setup
	DAGSTER_HOME="$(CALLER_DAGSTER_HOME)" $(BIN)/recs ui --port $(UI_PORT)

# The documentation site (mkdocs.yml): regenerate the pages code produces, then build strictly
# into site/ (what tests/test_docs.py checks); `$(BIN)/mkdocs serve` browses it.
.PHONY: docs
docs: setup
	$(BIN)/python -m docsgen
	$(BIN)/mkdocs build --strict --site-dir site

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf data dagster_home/history dagster_home/storage dagster_home/schedules dagster_home/logs
