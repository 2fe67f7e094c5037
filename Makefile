# Two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install clean mutation mutation-named histories

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

# Two pytest workers (pytest-xdist), each with its own dev server and database: the suite mostly waits
# on real timers, so two halves run side by side in about half the time on 2 cores (docs/testing.md).
# A test file stays on one worker (--dist loadfile): module fixtures (a module's own database, one case
# the whole permission matrix works on) and the cluster-wide checks of one module are never split.
# PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy .
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile

# Mutation testing of domain/ (docs/testing.md), not part of `make test`: mutmut mutates the functions that
# decide WHEN (escalation planning, agenda, due times, the business calendar) and WHO (owner, role and
# case checks), and the domain tests must kill the mutants. MUTANTS= narrows it, e.g. to one function.
MUTANTS ?= $(foreach f,plan_escalation escalate business add due_for set_due \
	check_owner require_manager check_open_case is_member,'domain.*[ǁ_]$(f)__mutmut_*') 'domain.calendar.*'
mutation: $(STAMP)
	INTAKE_HYPOTHESIS_EXAMPLES=20 $(BIN)/mutmut run $(MUTANTS)
	$(BIN)/mutmut results

# A new set of replay histories of every path (tests/workflows/histories/<set>/), about a minute; older
# sets stay and keep replaying. Needed whenever workflows/ or domain/ changed (test_replay.py says so).
histories: $(STAMP)
	$(BIN)/python -m tests.workflows.record_histories

# The named mutants (the mistakes that matter, made by hand), each killed by the tests named with it.
mutation-named: $(STAMP)
	$(BIN)/python -m tests.mutants.named

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache mutants
