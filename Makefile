# The entry points the README starts with: `make run` (the main job), `make test`, and `make lint` (CI runs both).
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: setup system run lint test floors

$(BIN)/newsletter: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/newsletter

system:
	bash scripts/system-packages.sh

# Check every draft, render the sample issue, and send it to the sample lists through the local outbox.
run: setup
	$(BIN)/newsletter check drafts/*.yaml
	$(BIN)/newsletter recipients check
	$(BIN)/newsletter render drafts/2025-09.yaml --out out/2025-09
	$(BIN)/newsletter send drafts/2025-09.yaml

# What CI checks before the tests (versions pinned in pyproject.toml's test extras; settings there too).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: setup system
	$(BIN)/pytest

# The tests again on the lowest versions pyproject.toml allows (.ci/floors.txt), in a venv of their own.
floors: system
	PIP_CONSTRAINT=$(CURDIR)/.ci/floors.txt $(MAKE) test VENV=.venv-floors
