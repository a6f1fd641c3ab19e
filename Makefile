# Two commands matter: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip

.PHONY: demo test lint faults long bench up clean lock

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "python3 >= 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Every install comes from the committed lock (requirements/*.txt, with hashes);
# the project itself is then added without resolving anything again.
$(VENV)/.installed: requirements/main.txt pyproject.toml | $(BIN)/python
	$(PIP) install --quiet --require-hashes -r requirements/main.txt
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	@touch $@

$(VENV)/.installed-dev: requirements/dev.txt pyproject.toml | $(BIN)/python
	$(PIP) install --quiet --require-hashes -r requirements/dev.txt
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	@touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/startproc demo

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(BIN)/python -m benchmarks.run_all $(BENCH_ARGS)

faults: $(VENV)/.installed-dev
	$(BIN)/python -m pytest tests/faults -m faults_long $(PYTEST_ARGS)

# The long runs CI adds to `make test`: the 2,000-job fault run and a 10,000-row batch.
long: faults
	STARTPROC_BATCH_E2E_ROWS=10000 $(BIN)/python -m pytest tests/integration/test_batch_e2e.py \
		-k large_file $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check worker tests benchmarks
	$(BIN)/mypy

up: $(VENV)/.installed
	$(BIN)/startproc up

# Refresh the lock after changing a dependency range in pyproject.toml, or to
# take newer releases on purpose (then run `make test` before committing).
# KEEP_PINS=1: keep every version already pinned, resolve only what changed.
lock:
	bash requirements/compile.sh $(if $(KEEP_PINS),--keep-pins)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
