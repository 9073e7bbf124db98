# coda-memory — two commands: `make run` (local stack) and `make test`.
# Everything lives in .venv at the repo root; the model is built once into layers/model/build
# and rebuilt only when its build inputs change.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
LOCK   := requirements.lock
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)
MODEL  := layers/model/build/model/manifest.json
MODEL_INPUTS := layers/model/build.py layers/model/requirements-build.txt

.PHONY: help venv lock layer console run test test-unit test-fast test-ts mcp-ts lint build bench bench-retrieval bench-tenants openapi clean

help:
	@echo "make run    - set up and start the local stack (API on :3000, Lambda invoke on :3001)"
	@echo "make test   - set up and run the whole test suite"
	@echo "make test-unit - the pure tests only (no database, no Redis): seconds"
	@echo "make test-ts - TypeScript client tests (node --test) against a local stack"
	@echo "make layer  - build the int8 ONNX model (cached)"
	@echo "make console - build the web console (console/ -> functions/console/static; cached)"
	@echo "make lock   - re-resolve requirements.lock from pyproject.toml (after adding or changing a dependency)"
	@echo "make lint   - ruff + mypy on the core + the layer contracts (import-linter, pyproject.toml)"
	@echo "make build  - sam build (no container) into .aws-sam/build"
	@echo "make openapi - regenerate openapi.json from the handlers (tests fail when it is stale)"
	@echo "make bench  - latency/throughput/cold-start benchmarks; bench-retrieval - LoCoMo + BEAM recall; bench-tenants - 10,000 users, one search's PostgreSQL cost"

# Every version comes from requirements.lock (pip constraints): the same set on every machine.
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(LOCK) -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

venv: $(STAMP)

# The one lock: every package of pyproject.toml (run time + dev), resolved for every platform and
# Python >= 3.11, and used by make venv, both Lambda layers and the subscriber image. Keeps the
# pinned versions unless a range no longer allows them; `make lock UPGRADE=1` takes the newest.
UPGRADE ?=
lock:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m uv --version >/dev/null 2>&1 || $(PY) -m pip install -q 'uv>=0.5,<1'
	$(PY) -m uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
		--custom-compile-command "make lock" --quiet $(if $(UPGRADE),--upgrade) -o $(LOCK)

$(MODEL): $(MODEL_INPUTS)
	$(PYTHON) layers/model/build.py
	@touch $(MODEL)

layer: $(MODEL)

# The web console: a Vite build of console/ (and the TypeScript client it uses) into
# functions/console/static, which the ConsoleFunction serves; rebuilt when a source changes.
CONSOLE      := functions/console/static/index.html
CONSOLE_DEPS := console/node_modules/.installed
CONSOLE_SRC  := $(shell find console/src clients/typescript/src -type f 2>/dev/null) \
                console/index.html console/vite.config.ts console/tsconfig.json

$(CONSOLE_DEPS): console/package-lock.json
	cd console && npm ci --no-audit --no-fund
	@touch $(CONSOLE_DEPS)

$(CONSOLE): $(CONSOLE_DEPS) $(CONSOLE_SRC)
	cd console && npm run build

console:
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory $(CONSOLE); \
	else \
		echo "WARNING: node/npm not found: the web console is not built (its tests are skipped)"; \
	fi

run: venv layer console
	$(PY) -m local.run

test: venv layer mcp-ts console
	$(PY) -m pytest
	$(MAKE) test-ts

# The official MCP TypeScript SDK, which tests/integration/test_mcp.py drives as a client (pinned in
# tests/mcp_ts/package-lock.json). Without node/npm those tests are skipped with a warning.
MCP_TS_DEPS := tests/mcp_ts/node_modules/.installed

$(MCP_TS_DEPS): tests/mcp_ts/package-lock.json
	cd tests/mcp_ts && npm ci --no-audit --no-fund
	@touch $(MCP_TS_DEPS)

mcp-ts:
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory $(MCP_TS_DEPS); \
	else \
		echo "WARNING: node/npm not found: the TypeScript MCP client tests will be skipped"; \
	fi

# TypeScript client: node's test runner against a local stack the test script starts.
# Needs Node.js >= 18 and npm; without them the TS tests are skipped with a warning.
TS_DEPS := clients/typescript/node_modules/.installed

$(TS_DEPS): clients/typescript/package-lock.json
	cd clients/typescript && npm ci --no-audit --no-fund
	@touch $(TS_DEPS)

test-ts: venv layer
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory $(TS_DEPS) && cd clients/typescript && npm test; \
	else \
		echo "WARNING: node/npm not found: skipping the TypeScript client tests"; \
	fi

test-unit: venv layer
	$(PY) -m pytest tests/unit

test-fast: venv layer mcp-ts
	$(PY) -m pytest -m "not slow"

lint: venv
	$(PY) -m ruff check src functions local tests bench layers/model
	$(PY) -m mypy
	$(VENV)/bin/lint-imports --no-cache

openapi: venv
	$(PY) -m local.openapi

build: venv layer
	$(PY) -m local.sam_build

bench: venv layer
	$(PY) -m bench.run

# LOCOMO_DIR / BEAM_DIR: the development data (not in the repository); --reuse keeps the built
# database (the BEAM chats take minutes to embed), so a second run only searches
bench-retrieval: venv layer
	LOCAL_SCHEDULER=0 $(PY) -m bench.retrieval --reuse

bench-tenants: venv layer
	$(PY) -m bench.tenants

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
