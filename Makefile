# IntelGraph Maestro Conductor — developer commands. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --warn-undefined-variables --no-builtin-rules

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.8
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Generated code lives under gen/ with gen/ as the import root.
PROTOS = $(shell find proto -name '*.proto' | LC_ALL=C sort)
BUF_BASELINE := buf.baseline.binpb
GRAPHQL_SCHEMA := graphql/schema.graphql
SDK_DIR := clients/intelgraph/sdk

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z][a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml uv.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || $(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) sync --frozen --compile-bytecode --python $(PY)
	@touch $@

.PHONY: install
install: $(VENV)/.installed ## Create .venv and install the project with its dev tools (locked versions)

.PHONY: lock
lock: ## Re-resolve uv.lock after changing dependencies in pyproject.toml
	@test -x $(UV) || { $(PYTHON) -m venv $(VENV) && $(PY) -m pip install --quiet uv==$(UV_VERSION); }
	$(UV) lock

.PHONY: gen
gen: install ## Regenerate gen/ from proto/ (pinned grpcio-tools), the SDK's clients, graphql/schema.graphql, the SLO alert rules, the reference docs
	rm -rf gen/intelgraph
	$(call protoc,gen)
	$(call sdk,$(SDK_DIR))
	$(PY) -m servers.graphql_schema > $(GRAPHQL_SCHEMA)
	$(PY) -m deploy.prometheus.generate
	$(PY) -m servers.reference

# $(call sdk,DIR): write the SDK's generated modules into DIR, formatted as the rest of the code.
sdk = files=$$($(PY) clients/generate.py proto $(1)) \
	&& $(VENV)/bin/ruff check --config pyproject.toml --select I,RUF022 --fix --quiet $$files \
	&& $(VENV)/bin/ruff format --config pyproject.toml --quiet $$files

# $(call protoc,OUTDIR): generate messages, services and their mypy stubs into OUTDIR.
protoc = mkdir -p $(1)/intelgraph && $(PY) -m grpc_tools.protoc -I proto \
	--plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy \
	--plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc \
	--python_out=$(1) --grpc_python_out=$(1) --mypy_out=quiet:$(1) --mypy_grpc_out=quiet:$(1) \
	--include_source_info --descriptor_set_out=$(1)/intelgraph/descriptors.binpb \
	$(PROTOS) >/dev/null

.PHONY: checkgenerate
checkgenerate: install ## Fail if gen/, the GraphQL schema, the SLO alert rules or the reference docs differ from what generates them
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(call protoc,$$tmp); \
	if ! diff -r "$$tmp/intelgraph" gen/intelgraph; then \
	  echo "gen/ is stale: run 'make gen' and commit the result" >&2; exit 1; fi; \
	if ! $(PY) -m servers.graphql_schema | diff - $(GRAPHQL_SCHEMA); then \
	  echo "$(GRAPHQL_SCHEMA) is stale: run 'make gen' and commit the result" >&2; exit 1; fi; \
	$(PY) -m deploy.prometheus.generate --check; \
	$(PY) -m servers.reference --check; \
	mkdir "$$tmp/sdk"; $(call sdk,$$tmp/sdk); \
	for file in "$$tmp"/sdk/*.py; do \
	  if ! diff "$$file" $(SDK_DIR)/$$(basename "$$file"); then \
	    echo "$(SDK_DIR)/$$(basename "$$file") is stale: run 'make gen' and commit the result" >&2; \
	    exit 1; fi; done

.PHONY: lint
lint: install ## ruff (lint + format check), the layering contracts (.importlinter), buf lint and buf format
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache --no-logo
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/buf lint
	$(VENV)/bin/buf format --diff --exit-code

.PHONY: fmt
fmt: install ## Format Python and proto sources in place
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	$(VENV)/bin/buf format -w

.PHONY: typecheck
typecheck: install ## mypy, strict on core, servers, interceptors, clients, tests and benchmarks
	$(VENV)/bin/mypy

.PHONY: breaking
breaking: install ## Fail on contract changes that break the recorded baseline
	$(VENV)/bin/buf breaking --against $(BUF_BASELINE)

.PHONY: baseline
baseline: install ## Record the current contracts as the breaking-change baseline (needs an ADR)
	$(VENV)/bin/buf build -o $(BUF_BASELINE)

.PHONY: pytest
pytest: install ## Run the test suite only
	$(PY) -m pytest $(PYTEST_ARGS)
PYTEST_ARGS ?=

.PHONY: test-fast
test-fast: install ## The inner loop (< 60 s): the layering, then unit, contract and SQLite integration tests, no slow ones
	$(VENV)/bin/lint-imports --no-cache --no-logo
	$(PY) -m pytest tests/unit tests/contract tests/integration -q -n 2 -m "$(FAST_MARKERS)" $(PYTEST_ARGS)
FAST_MARKERS := not slow and not postgres and not redis

.PHONY: test
test: install checkgenerate lint breaking typecheck pytest ## Everything CI checks

.PHONY: run
run: install ## Serve the platform on the embedded SQLite default
	$(VENV)/bin/conductor serve

.PHONY: bench
bench: install ## Run every benchmark in quick mode
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b --quick; done

.PHONY: load
load: install ## The seed's load mix on 1 and then 2 replicas over PostgreSQL and Redis (minutes)
	$(PY) bench/load.py

.PHONY: load-quick
load-quick: install ## The load mix on 2 replicas for 20 s, failing on an SLO or a loss (CI)
	$(PY) bench/load.py --quick

.PHONY: chaos
chaos: install ## Every chaos case under the load mix for CHAOS_SECONDS each; table in test-artifacts/chaos/
	CONDUCTOR_CHAOS_SECONDS=$(CHAOS_SECONDS) $(PY) -m pytest tests/chaos -v $(PYTEST_ARGS)
CHAOS_SECONDS ?= 40

.PHONY: evidence
evidence: install ## Run every acceptance pack on an ephemeral deployment; a signed evidence bundle in test-artifacts/evidence/, verified
	rm -rf $(EVIDENCE_DIR) && mkdir -p $(dir $(EVIDENCE_DIR))
	status=0; $(VENV)/bin/conductor evidence build --out $(EVIDENCE_DIR) $(EVIDENCE_FLAGS) || status=$$?; \
	  $(VENV)/bin/conductor evidence jwks > $(EVIDENCE_DIR).jwks.json \
	  && $(VENV)/bin/conductor evidence verify $(EVIDENCE_DIR) --jwks $(EVIDENCE_DIR).jwks.json \
	  && $(MAKE) --no-print-directory evidence-tampered \
	  && $(PY) -m tests.support.index_screenshot $(EVIDENCE_DIR) $(EVIDENCE_DIR)-index.png \
	  && exit $$status

# A copy of the bundle with one byte of index.html flipped must not verify.
.PHONY: evidence-tampered
evidence-tampered:
	rm -rf $(EVIDENCE_DIR).tampered && cp -r $(EVIDENCE_DIR) $(EVIDENCE_DIR).tampered
	$(PY) -c 'import sys; p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[0] ^= 1; open(p, "wb").write(b)' \
	  $(EVIDENCE_DIR).tampered/index.html
	! $(VENV)/bin/conductor evidence verify $(EVIDENCE_DIR).tampered --jwks $(EVIDENCE_DIR).jwks.json
	rm -rf $(EVIDENCE_DIR).tampered

.PHONY: evidence-quick
evidence-quick: EVIDENCE_FLAGS := --quick
evidence-quick: evidence ## The same with the packs' quick samples (CI)
EVIDENCE_DIR ?= test-artifacts/evidence/bundle
EVIDENCE_FLAGS ?=

.PHONY: clean
clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
