# The README's commands. Everything installs into .venv from the lock (requirements*.txt).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
export PATH := $(CURDIR)/$(BIN):$(PATH)
# Tests and the stack never need the network beyond loopback.
export NO_PROXY := 127.0.0.1,localhost
export no_proxy := 127.0.0.1,localhost

.PHONY: tools .venv-evidently help install install-dev demo up down status test test-fast test-e2e lint format bench lock clean

help:
	@echo "make demo       build .venv, start the local stack, run the lifecycle story"
	@echo "make test       build .venv with dev tools, run the whole test suite"
	@echo "make test-fast  unit + DAG integrity tests only"
	@echo "make lint       ruff (lint + format check) and mypy"
	@echo "make bench      run the benchmarks (bench/), print a table, write bench/results/"
	@echo "make down       stop the local stack"

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9

$(STAMP): requirements.txt pyproject.toml | $(UV)
	$(UV) pip install --python $(BIN)/python --quiet --compile-bytecode -r requirements.txt
	$(UV) pip install --python $(BIN)/python --quiet --compile-bytecode --no-deps -e .
	touch $@

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(UV) pip install --python $(BIN)/python --quiet --compile-bytecode -r requirements.txt -r requirements-dev.txt
	touch $@

# The reference environment for drift benchmarks/tests: Evidently needs pandas 2.x, so it never
# enters the project's runtime (.venv); tests run it as a separate interpreter.
EVIDENTLY_VENV := .venv-evidently
EVIDENTLY_STAMP := $(EVIDENTLY_VENV)/.installed

$(EVIDENTLY_STAMP): bench/evidently/requirements.txt | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(EVIDENTLY_VENV)
	$(UV) pip install --python $(EVIDENTLY_VENV)/bin/python --quiet --compile-bytecode -r bench/evidently/requirements.txt
	touch $@

.venv-evidently: $(EVIDENTLY_STAMP)

# Debian tools the tests and benchmarks drive: wrk (serving load), docker-compose (static
# validation of docker-compose.yaml). Installed when missing and possible (root + apt).
tools:
	@missing=""; for t in wrk docker-compose; do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing (apt)"; \
	    (apt-get update -qq && apt-get install -y -qq $$missing >/dev/null) || echo "warning: could not install$$missing"; \
	  else echo "warning: please install$$missing (Debian packages)"; fi; \
	fi

install: $(STAMP)
install-dev: $(DEV_STAMP)

lock: | $(UV)
	$(UV) pip compile --python-version 3.11 --upgrade-package dslc requirements.in -o requirements.txt
	$(UV) pip compile --python-version 3.11 requirements-dev.in -o requirements-dev.txt
	$(UV) pip compile --python-version 3.11 bench/evidently/requirements.in -o bench/evidently/requirements.txt

demo: $(STAMP)
	$(BIN)/python -m dslc.dev.demo

up: $(STAMP)
	$(BIN)/dslc up

down:
	@if [ -x $(BIN)/dslc ]; then $(BIN)/dslc down; else echo "nothing to stop (no .venv)"; fi

status: $(STAMP)
	$(BIN)/dslc status

test: $(DEV_STAMP) $(EVIDENTLY_STAMP) tools
	$(BIN)/python -m pytest -p no:cacheprovider tests

test-fast: $(DEV_STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider -m "not integration and not e2e and not s3 and not bench and not distributed" tests

test-e2e: $(DEV_STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider -m e2e tests

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(DEV_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(DEV_STAMP) $(EVIDENTLY_STAMP) tools
	$(BIN)/python -m bench

clean:
	-$(MAKE) down
	rm -rf .dslc
