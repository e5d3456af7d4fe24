# asyncflow developer commands. `make test` is the one CI runs (via .ci/run);
# `make help` lists them all.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTO_SRC := proto/asyncflow/v1/task_service.proto
# The contract as shipped in 0.1 (main at 09322e4, before the operator RPCs), built
# with `buf build '.git#ref=09322e40fb37f19e851ae8919ce7540c81a8a70d'
# --exclude-source-info -o $(BUF_BASELINE)`. A committed image, not a git ref, so the
# check works in any checkout (shallow clones and worktrees included).
BUF_BASELINE := proto/baseline/asyncflow-v1-0.1.binpb
PROTOC = PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m grpc_tools.protoc -Iproto
NODE_EXAMPLE := examples/node
NODE_STAMP := $(NODE_EXAMPLE)/node_modules/.package-lock.json

.PHONY: help install proto proto-check breaking clients lint format typecheck hooks node-deps unit \
	test bench serve screenshots clean

install: $(STAMP) ## Create .venv and install asyncflow with its dev tools

help: ## List the targets, one line each
	@awk -F ':.*## ' '/^[a-z][a-z-]*:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Regenerate generated/ from proto/ (python, grpc, and typed .pyi stubs).
proto: $(STAMP) ## Regenerate generated/ (Python) from proto/
	rm -rf generated/asyncflow
	mkdir -p generated
	$(PROTOC) --python_out=generated --grpc_python_out=generated \
		--mypy_out=generated --mypy_grpc_out=generated $(PROTO_SRC)
	printf '"""Code generated from proto/asyncflow/v1 by `make proto`; do not edit."""\n' \
		> generated/asyncflow/v1/__init__.py

# Fails when generated/ is not what `make proto` would write now.
proto-check: $(STAMP) ## Fail if generated/ is stale
	rm -rf $(VENV)/proto-check && mkdir -p $(VENV)/proto-check
	$(PROTOC) --python_out=$(VENV)/proto-check --grpc_python_out=$(VENV)/proto-check \
		--mypy_out=$(VENV)/proto-check --mypy_grpc_out=$(VENV)/proto-check $(PROTO_SRC) >/dev/null
	cp generated/asyncflow/v1/__init__.py $(VENV)/proto-check/asyncflow/v1/__init__.py
	diff -r generated/asyncflow $(VENV)/proto-check/asyncflow \
		|| (echo "generated/ is stale: run 'make proto' and commit the result" >&2; exit 1)

# Additions (fields, messages, RPCs, enum values) pass; removing, renumbering or
# retyping anything a shipped client may use fails.
breaking: $(STAMP) ## Fail if proto/ breaks the shipped contract (buf breaking)
	$(BIN)/buf breaking --against $(BUF_BASELINE)

# buf.gen.yaml uses Buf's hosted plugins: this needs network access to buf.build.
clients: $(STAMP) ## Go, Java, C# and TypeScript code into build/gen/ (buf generate)
	$(BIN)/buf generate

lint: $(STAMP) ## ruff check, ruff format --check, buf lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/buf lint

format: $(STAMP) ## Fix what ruff can
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP) ## mypy --strict on asyncflow/
	$(BIN)/mypy

hooks: $(STAMP) ## Install the git pre-commit hook (.pre-commit-config.yaml)
	$(BIN)/pre-commit install

node-deps: $(NODE_STAMP) ## npm ci for the Node.js example (its committed lock file)

$(NODE_STAMP): $(NODE_EXAMPLE)/package.json $(NODE_EXAMPLE)/package-lock.json
	cd $(NODE_EXAMPLE) && npm ci

# The unit tier: the core's rules, the stream session and governance over fakes of
# the core's ports. Needs no MariaDB or Redis.
unit: $(STAMP) ## The unit tier (tests/unit): seconds, no MariaDB or Redis
	$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)

# The whole suite: static checks first, then every test (MariaDB/Redis ones included).
test: proto-check breaking lint typecheck node-deps ## Static checks, then the whole pytest suite
	$(BIN)/pytest -q $(PYTEST_ARGS)

# Issue 9's targets 1-7 (docs/benchmarks.md); BENCH_ARGS="--quick" for a smoke run,
# BENCH_ARGS="4 --backend mysql" for one item.
bench: $(STAMP) ## Every throughput/latency/memory target (python -m bench; ~10 min)
	$(BIN)/python -m bench $(BENCH_ARGS)

serve: $(STAMP) ## Run `asyncflow serve` on ./config.toml (SQLite; gRPC 50051, dashboard 8080)
	$(BIN)/asyncflow serve

# Needs /usr/bin/chromium (apt-get install chromium); the PNGs are committed.
screenshots: $(STAMP) ## Dashboard screenshots into docs/img/ (headless Chromium)
	PYTHONPATH=tests $(BIN)/python docs/screenshots.py

clean: ## Remove .venv, build output, node_modules and tool caches
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache $(NODE_EXAMPLE)/node_modules
