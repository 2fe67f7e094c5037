# Two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install clean histories

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/intake dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy .

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy .
	$(BIN)/python -m pytest

# A new set of replay histories of every path (tests/workflows/histories/<set>/), about a minute; older
# sets stay and keep replaying. Needed whenever workflows/ or domain/ changed (test_replay.py says so).
histories: $(STAMP)
	$(BIN)/python -m tests.workflows.record_histories

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
