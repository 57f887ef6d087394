# Two entry points on a fresh machine: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test test-slow test-all setup clean bench

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel setuptools
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	$(BIN)/python -c "import torch, torchaudio, braindecode, mne, moabb, webdataset, lightning"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/neurofm quickstart

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest -m "not gpu" $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python scripts/bench_prepare.py

clean:
	rm -rf runs .pytest_cache
