# Template commands; `make help` lists them.

PYTHON ?= python3
VENV ?= .venv
PYTEST_ARGS ?=
# Absolute, because the demo project's make runs from another directory.
VENV_ABS = $(abspath $(VENV))
STAMP = $(VENV)/.template-installed
DEMO = build/demo/recipe-project

.DEFAULT_GOAL := help
.PHONY: help venv test demo lint clean

help: ## List the commands
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# One venv for everything: the tests bake projects and run their suites in it.
$(STAMP): requirements-dev.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --upgrade pip
	$(VENV)/bin/python -m pip install -r requirements-dev.txt
	@touch $@

venv: $(STAMP) ## Create or update the venv from requirements-dev.txt

test: $(STAMP) ## Bake every task and run each baked project's tests (PYTEST_ARGS=...)
	$(VENV)/bin/python -m pytest tests $(PYTEST_ARGS)

# The baked project's stamp lives in our venv: touching it tells its Makefile the deps
# are there, and its Makefile runs the package from src/, so nothing is installed twice.
demo: $(STAMP) ## Bake with the defaults into build/demo and run its make train
	$(VENV)/bin/cookiecutter --no-input --overwrite-if-exists -o build/demo .
	touch $(VENV)/.installed
	$(MAKE) -C $(DEMO) train VENV=$(VENV_ABS)

lint: $(STAMP) ## ruff check + format check on the hooks and tests
	$(VENV)/bin/python -m ruff check $(wildcard hooks tests benchmarks)
	$(VENV)/bin/python -m ruff format --check $(wildcard hooks tests benchmarks)

clean: ## Remove build/ and caches (keeps the venv)
	rm -rf build .pytest_cache .ruff_cache
	find hooks tests -name __pycache__ -prune -exec rm -rf {} +
