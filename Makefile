# The two commands of the README, and the pieces they are made of.
# `make demo` and `make test` work on a fresh machine: they create .venv and install otsec into it.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed-$(shell cat setup.py | cksum | cut -d' ' -f1)

.PHONY: demo test test-unit test-integration test-e2e lint bench schemas clean flink-cache

$(INSTALLED): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(INSTALLED)
	$(VENV)/bin/otsec demo

# The Flink distribution and the job server's jars, cached outside the repository
# (~/.cache/otsec/flink): downloaded once, reused by every later run.
flink-cache: $(INSTALLED)
	$(VENV)/bin/otsec flink fetch

test: $(INSTALLED) lint flink-cache
	$(PY) -m pytest -q

test-unit: $(INSTALLED)
	$(PY) -m pytest -q tests/unit

test-integration: $(INSTALLED) flink-cache
	$(PY) -m pytest -q -m integration

test-e2e: $(INSTALLED)
	$(PY) -m pytest -q tests/e2e

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(INSTALLED)
	$(VENV)/bin/otsec bench --json bench.json

schemas: $(INSTALLED)
	$(VENV)/bin/otsec schema export schemas/json

clean:
	rm -rf $(VENV) .otsec .pytest_cache .mypy_cache .ruff_cache
