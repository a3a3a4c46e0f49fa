# One entry point for people, hooks and CI. `make help` lists targets. Every target works from
# a fresh clone: the ones that need the virtualenv create it first.
VENV ?= .venv
PY := $(VENV)/bin/python
# Marks an install of the current pyproject.toml into $(VENV).
INSTALLED := $(VENV)/.installed
# The interpreter the one-file build runs on (its shebang) and must match (same CPython
# version and ABI as $(PY): the compiled dependencies inside are built for it).
DIST_PYTHON ?= /usr/bin/python3
PYZ := dist/leadd.pyz
# Extra arguments for the benchmarks, e.g. `make bench OUTREACH_ARGS="--leads 100"`.
STARTUP_ARGS ?=
WEBHOOK_ARGS ?=
OUTREACH_ARGS ?=
SPEED_ARGS ?=
DISPATCH_ARGS ?=
# Marks an install of the `bench` extra (procrastinate, for the dispatch comparison).
BENCH_INSTALLED := $(VENV)/.bench-installed

.PHONY: help install lint format typecheck test bench run dist clean

help:
	@echo "install   create $(VENV) and install leadd with test extras"
	@echo "lint      ruff check + format check"
	@echo "format    ruff format (rewrites files)"
	@echo "typecheck mypy --strict on the package"
	@echo "test      the test suite (the README's command)"
	@echo "bench     start-up, webhook, outreach, speed-to-lead and dispatch benchmarks (numbers"
	@echo "          to stdout; needs PostgreSQL: \$$LEADD_TEST_DATABASE_URL, else"
	@echo "          postgres@127.0.0.1:5432; installs the bench extra: procrastinate)"
	@echo "run       leadd run (demo defaults without config.yaml)"
	@echo "dist      $(PYZ): one file with every dependency, for $(DIST_PYTHON)"
	@echo "clean     remove build output (dist/, build/), not $(VENV)"

$(PY):
	python3 -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(PY)
	$(VENV)/bin/pip install -e '.[test]'
	touch $@

install: $(INSTALLED)

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: $(INSTALLED)
	$(VENV)/bin/ruff format .

typecheck: $(INSTALLED)
	$(VENV)/bin/mypy --strict leadd

test: $(INSTALLED)
	$(VENV)/bin/pytest -q

# As modules from the repository root: the benchmarks reuse tests/ (fakes, fixtures).
$(BENCH_INSTALLED): pyproject.toml | $(INSTALLED)
	$(VENV)/bin/pip install -e '.[test,bench]'
	touch $@

bench: $(INSTALLED) $(BENCH_INSTALLED)
	$(PY) -m bench.startup $(STARTUP_ARGS)
	$(PY) -m bench.webhooks $(WEBHOOK_ARGS)
	$(PY) -m bench.outreach $(OUTREACH_ARGS)
	$(PY) -m bench.speed_to_lead $(SPEED_ARGS)
	$(PY) -m bench.dispatch_vs_procrastinate $(DISPATCH_ARGS)

run: $(INSTALLED)
	$(VENV)/bin/leadd run

# shiv (a test extra) installs leadd and its dependencies with $(PY)'s pip into one zipapp,
# so $(PY) must be the same CPython as $(DIST_PYTHON); the check says so before building.
dist: $(INSTALLED)
	@$(DIST_PYTHON) -c 'import sys' >/dev/null 2>&1 || { echo "make dist: $(DIST_PYTHON) not found (set DIST_PYTHON=)"; exit 1; }
	@want=$$($(DIST_PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("SOABI"))'); \
	have=$$($(PY) -c 'import sysconfig; print(sysconfig.get_config_var("SOABI"))'); \
	if [ "$$want" != "$$have" ]; then \
		echo "make dist: $(PY) is $$have but $(DIST_PYTHON) is $$want: the compiled"; \
		echo "dependencies would not load. Build from a venv of $(DIST_PYTHON):"; \
		echo "  $(DIST_PYTHON) -m venv .venv-dist && make dist VENV=.venv-dist"; \
		exit 1; fi
	@mkdir -p dist
	rm -rf build  # setuptools would reuse build/lib, shipping modules deleted since
	$(VENV)/bin/shiv --reproducible --console-script leadd --python $(DIST_PYTHON) \
		--output-file $(PYZ).tmp . --quiet
	mv $(PYZ).tmp $(PYZ)
# Smoke test; it unpacks into a scratch SHIV_ROOT, not ~/.shiv (one copy per build).
	@root=$$(mktemp -d) && SHIV_ROOT=$$root $(DIST_PYTHON) $(PYZ) --version; \
	status=$$?; rm -rf $$root; exit $$status

clean:
	rm -rf dist build
