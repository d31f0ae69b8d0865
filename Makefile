# Kundenmanagement — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint squawk unit contract bench clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## make run: install, start the embedded PostgreSQL, migrate, seed demo data, serve on HOST:PORT
run: install
	WEBHOOK_ALLOW_PRIVATE=$${WEBHOOK_ALLOW_PRIVATE:-1} $(BIN)/crm serve --seed

## make test: install and run every check (lint, migrations lint, unit + integration, contract)
test: install lint squawk
	$(BIN)/python -m pytest -q tests contract_tests

lint: install
	$(BIN)/ruff check crm handlers db tests contract_tests bench

## squawk lints each migration; transactional files are linted as running inside a transaction
squawk: install
	@for f in db/migrations/*.sql; do \
	  if grep -q 'transactional: false' $$f; then $(BIN)/squawk $$f || exit 1; \
	  else $(BIN)/squawk --assume-in-transaction $$f || exit 1; fi; \
	done

## make bench: 100k customers, wrk against gunicorn vs pgbench on the same SQL; then events/webhooks;
## then sample-request create and transitions at 8 connections; then Field-Bridge search at
## 10k/100k/1M customers (about 12 minutes cold)
bench: install
	$(BIN)/python -m bench
	$(BIN)/python -m bench.events --rate 50
	$(BIN)/python -m bench.samples
	$(BIN)/python -m bench.fields

clean:
	rm -rf $(VENV) .data .pytest_cache
