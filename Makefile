# Two commands: `make demo` and `make test`. Each creates .venv when missing and installs what it needs.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck bench bench-drift bench-llm bench-evals clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tether demo

test: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy
	$(BIN)/pytest -n 2 --dist loadfile --ignore=tests/ui/test_dashboard.py $(PYTEST_ARGS)
	# The browser test (the demo, a real server, Chromium) runs alone: beside it, the latency evidence of the
	# rollout end-to-end tests is judged on a machine it loads unevenly.
	$(BIN)/pytest tests/ui/test_dashboard.py $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

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
