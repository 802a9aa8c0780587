# make run   — set up .venv if needed and start gafferd in the foreground on its
#              embedded default (CONFIG=etc/gafferd.yml for the example jobs)
# make test  — set up .venv if needed and run the test suite (both event loops)
# make lint  — ruff (lint + format check) and mypy on lib/
# make bench — gaffer side by side with supervisord and circus (bench/compare.py):
#              one table of ratios (QUICK=1: under 2 minutes); the peers are
#              installed into bench/.venv-peers on first use
# make bench-gaffer — gaffer's own figures on both loops (bench/run.py; QUICK=1)
# make stress — randomized stress test of the Manager, both loops (QUICK=1: 60 s)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
CONFIG ?=

.PHONY: run test lint format bench bench-gaffer stress venv clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m compileall -q lib >/dev/null
	touch $(STAMP)

run: $(STAMP)
	$(PY) ./gafferd $(if $(CONFIG),-c $(CONFIG),)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check lib tests bench gafferd
	$(VENV)/bin/ruff format --check lib tests bench gafferd
	$(VENV)/bin/mypy lib

format: $(STAMP)
	$(VENV)/bin/ruff check --fix lib tests bench gafferd
	$(VENV)/bin/ruff format lib tests bench gafferd

bench: $(STAMP)
	$(PY) bench/compare.py $(if $(QUICK),--quick,)

bench-gaffer: $(STAMP)
	$(PY) bench/run.py $(if $(QUICK),--quick,)

stress: $(STAMP)
	$(PY) bench/stress.py $(if $(QUICK),--budget 60,)

clean:
	rm -rf $(VENV) bench/.venv-peers build *.egg-info lib/*.egg-info
