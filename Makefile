# prep - two commands on a fresh clone: `make run` and `make test`. `make help` lists the rest.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Stamps record what has been installed, so `make run` / `make test` install only when needed.
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP     := $(VENV)/.dev-installed

.DEFAULT_GOAL := help
.PHONY: help install install-dev run test test-fast bench bench-scale dist clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(RUNTIME_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): $(RUNTIME_STAMP)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(RUNTIME_STAMP) ## create .venv/ and install prep with its runtime dependencies (no TensorFlow)

install-dev: $(DEV_STAMP) ## add the test dependencies (pytest, TensorFlow, hypothesis)

run: $(RUNTIME_STAMP) ## convert the embedded demo (scikit-learn digits) into TFRecord shards under outputs/digits/
	$(VENV)/bin/prep $(ARGS)

test: $(DEV_STAMP) ## run the whole test suite, slow tests included
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(DEV_STAMP) ## run the suite without the slow end-to-end tests
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(DEV_STAMP) ## speed, memory, start-up and resize against the seed methods and the copy floor (~15 min)
	$(PY) benchmarks/bench.py $(ARGS)

bench-scale: $(DEV_STAMP) ## 100,000 and 1,000,000 small images against the copy floor (~5 min, 5 GB of memory)
	$(PY) benchmarks/bench_scale.py $(ARGS)

dist: $(RUNTIME_STAMP) ## build dist/prep_records-<version>-py3-none-any.whl: `pip install dist/prep_records-*.whl` works anywhere
	rm -rf build dist
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir dist .
	@ls dist/*.whl

clean: ## remove the virtualenv, generated outputs and built wheels
	rm -rf $(VENV) outputs/*/ multirun .pytest_cache build dist *.egg-info
