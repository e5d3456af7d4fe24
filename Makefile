# asyncflow developer commands. `make test` is the one CI runs (via .ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTO_SRC := proto/asyncflow/v1/task_service.proto
PROTOC = PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m grpc_tools.protoc -Iproto

.PHONY: install proto proto-check lint format typecheck unit test bench serve clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Regenerate generated/ from proto/ (python, grpc, and typed .pyi stubs).
proto: $(STAMP)
	rm -rf generated/asyncflow
	mkdir -p generated
	$(PROTOC) --python_out=generated --grpc_python_out=generated \
		--mypy_out=generated --mypy_grpc_out=generated $(PROTO_SRC)
	printf '"""Code generated from proto/asyncflow/v1 by `make proto`; do not edit."""\n' \
		> generated/asyncflow/v1/__init__.py

# Fails when generated/ is not what `make proto` would write now.
proto-check: $(STAMP)
	rm -rf $(VENV)/proto-check && mkdir -p $(VENV)/proto-check
	$(PROTOC) --python_out=$(VENV)/proto-check --grpc_python_out=$(VENV)/proto-check \
		--mypy_out=$(VENV)/proto-check --mypy_grpc_out=$(VENV)/proto-check $(PROTO_SRC) >/dev/null
	cp generated/asyncflow/v1/__init__.py $(VENV)/proto-check/asyncflow/v1/__init__.py
	diff -r generated/asyncflow $(VENV)/proto-check/asyncflow \
		|| (echo "generated/ is stale: run 'make proto' and commit the result" >&2; exit 1)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/buf lint

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP)
	$(BIN)/mypy

# The unit tier: the core's rules, the stream session and governance over fakes of
# the core's ports. Needs no MariaDB or Redis; runs in seconds.
unit: $(STAMP)
	$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)

# The whole suite: static checks first, then every test (MariaDB/Redis ones included).
test: proto-check lint typecheck
	$(BIN)/pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.stream
	$(BIN)/python -m bench.governance

serve: $(STAMP)
	$(BIN)/asyncflow serve

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
