# Two commands do all the set-up on a machine with nothing but Python 3.11+:
#   make serve   create .venv, install from the lock file, start the gateway, answer a first request
#   make test    create .venv, install from the lock file, run the checks and the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 4000
CONFIG ?=

.PHONY: serve test lint bench lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/build.lock

$(VENV)/.installed-runtime: $(BIN)/python requirements/runtime.lock pyproject.toml
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/runtime.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python requirements/test.lock requirements/nodeps.lock pyproject.toml
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/test.lock
	$(BIN)/python -m pip install --quiet --no-deps --require-hashes -r requirements/nodeps.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@ $(VENV)/.installed-runtime

serve: $(VENV)/.installed-runtime
	HOST=$(HOST) PORT=$(PORT) CONFIG=$(CONFIG) BIN=$(BIN) bash scripts/serve.sh

test: $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-runtime
	$(BIN)/python bench/run.py

# Re-pin every dependency with hashes (needs the package index).
lock: $(BIN)/python
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --allow-unsafe --generate-hashes --strip-extras --extra postgres --extra redis --extra tokenizer -o requirements/runtime.lock pyproject.toml
	$(BIN)/pip-compile --quiet --allow-unsafe --generate-hashes --strip-extras --extra test -o requirements/test.lock pyproject.toml
	$(BIN)/pip-compile --quiet --allow-unsafe --generate-hashes -o requirements/build.lock requirements/build.in

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
