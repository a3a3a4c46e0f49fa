# One entry point for people, hooks and CI. `make help` lists targets.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: help install lint typecheck test bench run

help:
	@echo "install   create $(VENV) and install leadd with test extras"
	@echo "lint      ruff check + format check"
	@echo "typecheck mypy --strict on the package"
	@echo "test      the test suite (the README's command)"
	@echo "bench     start-up, webhook and outreach benchmarks (writes numbers to stdout)"
	@echo "run       leadd run (demo defaults without config.yaml)"

$(PY):
	python3 -m venv $(VENV)

install: $(PY)
	$(VENV)/bin/pip install -e '.[test]'

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck:
	$(VENV)/bin/mypy --strict leadd

test:
	$(VENV)/bin/pytest -q

bench:
	$(PY) bench/startup.py
	$(PY) bench/webhooks.py
	$(PY) bench/outreach.py

run:
	$(VENV)/bin/leadd run
