# Two commands: `make demo` and `make test`. Each creates .venv when missing and installs what it needs.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
# Run alone, after the parallel suite: the rollouts whose latency evidence is judged with real processes (an
# identical candidate must reach 100%), and the browser test (the demo, a server and Chromium). Beside the
# other worker's bursts of load (the hostile-request sweep, the demo) an identical canary was rolled back.
# The soak too: its p99 drift is a measure of tether, not of the test beside it.
SERIAL := tests/serving/test_e2e_evidence.py tests/cli/test_demo.py tests/ui/test_dashboard.py tests/soak/test_soak.py

.PHONY: demo test soak lint typecheck advisories bench bench-drift bench-llm bench-evals clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tether demo

test: $(STAMP)
	$(BIN)/ruff check src tests bench examples tools
	$(BIN)/mypy
	$(BIN)/python tools/advisories.py --floors pyproject.toml
	$(BIN)/pytest -n 2 --dist loadfile $(addprefix --ignore=,$(SERIAL)) $(PYTEST_ARGS)
	$(BIN)/pytest $(SERIAL) $(PYTEST_ARGS)

# The long form of tests/soak: ten minutes at a steady rate, its figures printed (`make test` runs 45 s of it).
soak: $(STAMP)
	TETHER_SOAK_SECONDS=$${TETHER_SOAK_SECONDS:-600} $(BIN)/pytest -s tests/soak

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples tools
	$(BIN)/ruff format --check src tests bench examples tools

# Known vulnerabilities in the installed set and in pyproject's floors, from OSV records on disk (make test runs it).
advisories: $(STAMP)
	$(BIN)/python tools/advisories.py --floors pyproject.toml

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/hashing.py

bench/.venv-drift/.installed: bench/requirements-drift.txt
	$(PYTHON) -m venv bench/.venv-drift
	bench/.venv-drift/bin/pip install --quiet -r bench/requirements-drift.txt
	touch $@

bench-drift: $(STAMP) bench/.venv-drift/.installed
	$(BIN)/python bench/drift.py

bench-evals: $(STAMP) bench/.venv-drift/.installed
	$(BIN)/python bench/llm_evals.py --others-python bench/.venv-drift/bin/python

bench/.venv-llm/.installed: bench/requirements-llm.txt pyproject.toml
	$(PYTHON) -m venv bench/.venv-llm
	bench/.venv-llm/bin/pip install --quiet torch==2.13.0
	bench/.venv-llm/bin/pip install --quiet -r bench/requirements-llm.txt
	touch $@

bench-llm: $(STAMP) bench/.venv-llm/.installed
	$(BIN)/python bench/prefix.py
	bench/.venv-llm/bin/python bench/llm_cache.py
	bench/.venv-llm/bin/python bench/llm_gateway.py

clean:
	rm -rf $(VENV) bench/.venv-drift bench/.venv-llm .tether .pytest_cache .mypy_cache .ruff_cache
