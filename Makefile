# Kundenmanagement — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint squawk unit contract bench clean node chromium tools spec speclint postman sdk newman promtool rules loadtest

NODE_STAMP := node_modules/.installed
SPEC_JSON  := build/openapi.json
NODE_ENV   := REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_UPDATE_NOTIFIER=1 SCARF_ANALYTICS=false

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## make node: the Node tools of the checks, pinned in package.json + package-lock.json: newman,
## Redocly CLI, Spectral, openapi-typescript, tsc, playwright-core
$(NODE_STAMP): package.json package-lock.json
	$(NODE_ENV) npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

node: $(NODE_STAMP)

## make chromium: Debian's chromium for the docs-page test (apt, once; skipped when installed)
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; }

tools: node chromium

## make run: install, start the embedded PostgreSQL, migrate, seed demo data, serve on HOST:PORT
run: install
	WEBHOOK_ALLOW_PRIVATE=$${WEBHOOK_ALLOW_PRIVATE:-1} $(BIN)/crm serve --seed

## make test: install and run every check (lint, migrations lint, spec lint, unit + integration,
## contract; newman, the generated SDKs and the docs page in Chromium against a live server)
test: install tools lint squawk speclint rules
	CRM_REQUIRE_TOOLS=1 $(BIN)/python -m pytest -q tests contract_tests

lint: install
	$(BIN)/ruff check crm handlers db tests contract_tests bench postman

## squawk lints each migration; transactional files are linted as running inside a transaction
squawk: install
	@for f in db/migrations/*.sql; do \
	  if grep -q 'transactional: false' $$f; then $(BIN)/squawk $$f || exit 1; \
	  else $(BIN)/squawk --assume-in-transaction $$f || exit 1; fi; \
	done

## make spec: the served document (assembled from specs/, as /api/v1/openapi.json) → build/openapi.json
spec: install
	@mkdir -p build
	$(BIN)/python -c 'import json, crm.spec; print(json.dumps(crm.spec.bundle(), indent=2, ensure_ascii=False))' > $(SPEC_JSON)

## make speclint: Redocly (redocly.yaml) and Spectral (.spectral.yaml, DESIGN.md §2 as rules) over the
## served document and every domain document; the root specs/openapi.yaml is linted assembled
## (Spectral's 3.1 schema check misreads path items that are references to other files)
speclint: spec node
	$(NODE_ENV) node_modules/.bin/redocly lint $(SPEC_JSON) specs/*.yaml --format=summary
	$(NODE_ENV) node_modules/.bin/spectral lint --fail-severity=error $(SPEC_JSON) \
	  $$(ls specs/*.yaml | grep -v '^specs/openapi.yaml$$')

## make postman: regenerate the Postman collection + environments from the served spec and
## postman/scenarios.py (run it after adding or changing an operation; commit the JSON)
postman: install
	$(BIN)/python postman/build.py

## make sdk: a Python client (openapi-python-client) and TypeScript types (openapi-typescript) from
## the served spec into build/sdk/; sdk/ts/usage.ts is type-checked against the types
sdk: spec node
	rm -rf build/sdk/python
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/openapi-python-client generate --path $(SPEC_JSON) \
	  --output-path build/sdk/python/kundenmanagement_client --meta none --config sdk/openapi-python-client.yaml
	$(NODE_ENV) node_modules/.bin/openapi-typescript --redocly sdk/ts/redocly.yaml --default-non-nullable false
	node_modules/.bin/tsc -p sdk/ts

## make newman: run the Postman collection against `make run` (BASE_URL, tokens from crm token)
BASE_URL ?= http://127.0.0.1:8080
newman: install node
	$(NODE_ENV) node_modules/.bin/newman run postman/CRM_CustomerManagement.postman_collection.json \
	  -e postman/environments/local.postman_environment.json --env-var base_url=$(BASE_URL) \
	  --env-var admin_token=$$($(BIN)/crm token --sub postman-admin --role admin) \
	  --env-var sales_manager_token=$$($(BIN)/crm token --sub mia --role sales_manager) \
	  --env-var sales_rep_token=$$($(BIN)/crm token --sub anna --role sales_rep) \
	  --env-var integration_token=$$($(BIN)/crm token --sub fulfilment-partner --role integration) \
	  --env-var chain_manager_token=$$($(BIN)/crm token --sub cm --role chain_manager \
	    --chain 00000000-0000-4000-8000-000000000001)

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
	rm -rf $(VENV) .data .pytest_cache node_modules build
