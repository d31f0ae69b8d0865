# Kundenmanagement — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint squawk unit contract bench clean promtool rules loadtest

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
test: install lint squawk rules
	$(BIN)/python -m pytest -q tests contract_tests

lint: install
	$(BIN)/ruff check crm handlers db tests contract_tests bench

## squawk lints each migration; transactional files are linted as running inside a transaction
squawk: install
	@for f in db/migrations/*.sql; do \
	  if grep -q 'transactional: false' $$f; then $(BIN)/squawk $$f || exit 1; \
	  else $(BIN)/squawk --assume-in-transaction $$f || exit 1; fi; \
	done

## promtool (from the Debian package prometheus) checks and unit-tests the alerting rules. Used from
## PATH when there; else the package is fetched with apt and only promtool is unpacked into .venv/bin
## (no Prometheus service is installed or started).
promtool: install
	@command -v promtool >/dev/null 2>&1 || test -x $(BIN)/promtool || { \
	  tmp=$$(mktemp -d) && cd $$tmp && \
	  { apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get download prometheus; }; } && \
	  dpkg-deb -x prometheus_*.deb root && install -m 0755 root/usr/bin/promtool $(CURDIR)/$(BIN)/promtool && \
	  cd $(CURDIR) && rm -rf $$tmp; }

## rules: the Prometheus recording and alerting rules (ops/prometheus) are valid and their unit tests pass
rules: promtool
	PATH="$(CURDIR)/$(BIN):$$PATH" promtool check rules ops/prometheus/alerts.yml
	PATH="$(CURDIR)/$(BIN):$$PATH" promtool test rules ops/prometheus/alerts_test.yml

## make loadtest: the SLOs (p95 < 200 ms per operation, errors < 0.5 %) under a realistic open-loop mix,
## against `crm serve --seed` started as `make run` starts it; LOADTEST_ARGS="--url ... --token ..."
## drives a running server instead (see bench/loadtest.py)
LOADTEST_ARGS ?= --rate 40 --duration 60
loadtest: install
	$(BIN)/python -m bench.loadtest $(LOADTEST_ARGS)

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
