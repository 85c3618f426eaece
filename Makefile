# icds.citus_migration: build, install and test.
#
#   make demo     run the whole migration locally (scripts/demo.sh, else scripts/demo.py)
#   make test     everything: deps venv install, then pytest, sanity, lint, molecule
#
# Other targets: deps venv install pytest sanity lint molecule demo-clean bench clean help.
# Everything is repo-local (.venv, .collections, .cache) except Debian packages and
# ansible-test's own caches under ~/.ansible/test (its sanity venvs, the get-pip stand-in).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
PYTHON ?= python3
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
CACHE := $(ROOT)/.cache
COLLECTIONS_DIR := $(ROOT)/.collections
BUILD_DIR := $(CACHE)/build

# Pinned; `npm view pouchdb-server version` gave 4.2.0 (latest) when this was written.
POUCHDB_SERVER_VERSION := 4.2.0
NODE_PREFIX := $(CACHE)/node

# pytest: 4 xdist workers on 2 cores; each worker starts its own throwaway PostgreSQL (and
# Citus, pouchdb-server) servers. The suite mostly waits on those servers, so 4 beat 2:
# measured on the same tree, 253 tests: -n 4 5m04s, -n 2 8m48s, serial ~17 min (sum of
# durations). Override e.g. `make pytest PYTEST_ARGS="-n 0 -k manifest"`.
PYTEST_ARGS ?= -n 4

# ansible-test sanity: Python version and extra args (e.g. SANITY_ARGS="--test pylint").
SANITY_PYTHON ?= 3.11
SANITY_ARGS ?=

export PATH := $(VENV)/bin:$(PATH)
# For lint/molecule: the installed collection, then community.postgresql from the `ansible`
# package in the venv (evaluated when used, i.e. after the venv exists).
SITE_PACKAGES = $(shell $(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null)
WITH_COLLECTIONS = ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS_DIR):$(SITE_PACKAGES)

VENV_STAMP := $(VENV)/.requirements.stamp
INSTALL_STAMP := $(BUILD_DIR)/.installed.stamp
# Files and directories (so deletions count) that go into the built collection.
COLLECTION_INPUTS := $(ROOT)/galaxy.yml $(ROOT)/README.md \
	$(shell cd $(ROOT) && find plugins roles playbooks meta -not -name '*.pyc' -not -path '*/__pycache__*' 2>/dev/null | sed 's|^|$(ROOT)/|')

.PHONY: help deps venv install test pytest sanity lint molecule demo demo-clean bench faults clean

help:
	@sed -n '1,/^$$/p' $(ROOT)/Makefile | sed 's/^# \{0,1\}//'

## deps: Debian packages (root only, else prints the apt-get command) + pouchdb-server.
deps:
	@POUCHDB_SERVER_VERSION=$(POUCHDB_SERVER_VERSION) NODE_PREFIX=$(NODE_PREFIX) $(ROOT)/tools/deps.sh

## venv: .venv from requirements.txt, redone only when requirements.txt changes.
venv: $(VENV_STAMP)

$(VENV_STAMP): $(ROOT)/requirements.txt
	@test -x $(PY) || { echo "venv: creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "venv: installing requirements.txt"
	@$(PY) -m pip install --disable-pip-version-check --quiet -r $(ROOT)/requirements.txt
	@touch $@

## install: build the collection tarball and install it into .collections.
install: $(INSTALL_STAMP)

$(INSTALL_STAMP): $(VENV_STAMP) $(COLLECTION_INPUTS)
	@rm -rf $(BUILD_DIR) && mkdir -p $(BUILD_DIR)
	@cd $(ROOT) && ansible-galaxy collection build --force --output-path $(BUILD_DIR) . > $(BUILD_DIR)/build.log 2>&1 || { cat $(BUILD_DIR)/build.log; exit 1; }
	@# --no-deps: offline; community.postgresql comes with the `ansible` package in .venv.
	@$(WITH_COLLECTIONS) ansible-galaxy collection install --force --no-deps -p $(COLLECTIONS_DIR) \
		$(BUILD_DIR)/icds-citus_migration-*.tar.gz > $(BUILD_DIR)/install.log 2>&1 || { cat $(BUILD_DIR)/install.log; exit 1; }
	@test -f $(COLLECTIONS_DIR)/ansible_collections/icds/citus_migration/MANIFEST.json
	@$(WITH_COLLECTIONS) ansible-galaxy collection list community.postgresql 2>/dev/null | grep -q community.postgresql \
		|| { echo "install: community.postgresql not found (it ships with the ansible package in .venv)" >&2; exit 1; }
	@echo "install: $$(basename $(BUILD_DIR)/icds-citus_migration-*.tar.gz) -> $(COLLECTIONS_DIR)"
	@touch $@

## test: everything; deps/venv/install must pass, then pytest, sanity, lint and molecule
## all run even if one fails; a timing summary and pytest's summary line close the output.
test:
	@$(ROOT)/tools/run-stages.sh deps venv install -- pytest sanity lint molecule

## pytest: unit + integration tests (pytest.ini testpaths). Log kept in .cache/pytest.log.
## Its summary says how many Citus tests ran or were skipped, and why (tests/citus_summary.py).
## "No tests collected" (pytest's exit 5) fails it, as any other failure does.
pytest: deps venv install
	@mkdir -p $(CACHE)
	@rc=0; cd $(ROOT) && $(PY) -m pytest $(PYTEST_ARGS) 2>&1 | tee $(CACHE)/pytest.log || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests were collected (exit 5): failing" >&2; fi; exit $$rc

## sanity: ansible-test sanity --venv --python $(SANITY_PYTHON) on a copy of the collection.
# Runs every sanity test ansible-test has for a collection; the test venvs are built
# from PyPI (cached in ~/.ansible/test/venv), pip bootstrapped by tools/get_pip_standin.py.
# Not applicable here and reported as skipped by ansible-test itself: pslint (no .ps1
# files; pwsh is not packaged for Debian).
sanity: venv
	@VENV=$(VENV) SANITY_PYTHON=$(SANITY_PYTHON) $(ROOT)/tools/sanity.sh $(SANITY_ARGS)

## lint: ansible-lint (config: .ansible-lint), against the installed collection.
lint: venv install
	@cd $(ROOT) && $(WITH_COLLECTIONS) ansible-lint --nocolor

## molecule: scenarios under extensions/molecule, if any.
molecule: venv install
	@cd $(ROOT); if [ -n "$$(find extensions/molecule -name molecule.yml 2>/dev/null | head -1)" ]; then \
		$(WITH_COLLECTIONS) molecule test --all; \
	else echo "molecule: no molecule scenarios yet (extensions/molecule/*/molecule.yml)"; fi

## demo: the whole migration, locally: scripts/demo.sh if present, else scripts/demo.py
## (`up` starts the local servers under .demo/ and loads data, `run` runs the playbooks).
demo: deps install
	@cd $(ROOT); if [ -f scripts/demo.sh ]; then bash scripts/demo.sh; \
	elif [ -f scripts/demo.py ]; then $(PY) scripts/demo.py up && $(PY) scripts/demo.py run; \
	else echo "demo: neither scripts/demo.sh nor scripts/demo.py exists yet: the local demo has not been written" >&2; exit 1; fi

## demo-clean: stop the demo's servers and remove .demo/.
demo-clean: venv
	@cd $(ROOT); if [ -f scripts/demo.py ]; then $(PY) scripts/demo.py clean; else rm -rf .demo; fi

## bench: benchmarks/run.py, if present.
# Installs the bench-only requirements (matplotlib, py-spy) and Debian's pgcopydb first.
# BENCH_ARGS="--runs 1 --size-mb 150" for a quicker run; see benchmarks/README.md.
bench: deps venv install
	@cd $(ROOT) && $(PY) -m pip install -q --disable-pip-version-check -r benchmarks/requirements.txt
	@command -v pgcopydb >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q pgcopydb >/dev/null; } \
		|| echo "bench: pgcopydb is not installed (apt-get install pgcopydb): its row will be skipped"
	@cd $(ROOT) && $(PY) benchmarks/run.py $(BENCH_ARGS)

## faults: the full fault-injection suite (24 seeded SIGKILLs, server restarts and outages,
## statement_timeout, a full tablespace, 4 concurrent runners); `make test` runs FAULT_RUNS=5.
## Each run's seed and result go to tests/faults/results/faults.jsonl.
faults: deps venv install
	@cd $(ROOT) && FAULT_RUNS=$${FAULT_RUNS:-24} $(PY) -m pytest -n 0 tests/faults

## clean: build/test outputs (keeps .venv and the npm install; `make clean-all` removes them).
clean:
	rm -rf $(BUILD_DIR) $(COLLECTIONS_DIR) $(CACHE)/sanity $(CACHE)/pytest.log $(ROOT)/.pytest_cache $(ROOT)/tests/output
	find $(ROOT) -name __pycache__ -type d -not -path '$(VENV)/*' -prune -exec rm -rf {} +

.PHONY: clean-all
clean-all: clean
	rm -rf $(VENV) $(CACHE)
