# stream-app: `make help` lists the targets. `make run` and `make test` each do their own set-up.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APP := $(BIN)/stream-app

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

.PHONY: lock
lock: venv ## pin the runtime dependencies again (requirements.lock, used by make venv and the image)
	$(BIN)/uv pip compile pyproject.toml --upgrade --python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-header --annotation-style line -o requirements.lock

.PHONY: venv
venv: $(STAMP) ## create .venv and install stream-app with its dev dependencies

.PHONY: services
services: venv ## fetch the server jars (once) and start Kafka and Cassandra on 127.0.0.1
	$(APP) services up

.PHONY: registry
registry: venv ## the local schema registry (Apicurio, built with Maven once) on 127.0.0.1:8081, for the wire-format tests
	$(APP) services up registry

.PHONY: services-down
services-down: ## stop the Kafka, Cassandra (and registry) that `make services` (and `make registry`) started
	@if [ -x $(APP) ]; then $(APP) services down; fi

# The local replicated cluster: three brokers and three Cassandra nodes (deploy/cluster.env).
CLUSTER_ENV := deploy/cluster.env
WITH_CLUSTER := set -a && . ./$(CLUSTER_ENV) && set +a &&

.PHONY: services-cluster
services-cluster: venv ## three Kafka brokers and three Cassandra nodes (deploy/cluster.env) beside the single-node services, then their topics and keyspace (replication 3)
	$(WITH_CLUSTER) $(APP) services up
	$(WITH_CLUSTER) $(APP) init

.PHONY: services-cluster-down
services-cluster-down: ## stop the cluster that `make services-cluster` started
	@if [ -x $(APP) ]; then $(WITH_CLUSTER) $(APP) services down; fi

.PHONY: status
status: venv ## show pid, port and readiness of the local services
	$(APP) services status

.PHONY: init
init: services ## create the topics and the Cassandra keyspace (idempotent)
	$(APP) init

.PHONY: bootstrap
bootstrap: init ## a first champion model (simulated history + train) if there is none
	$(APP) bootstrap

.PHONY: run
run: bootstrap ## all set-up (services, topics, keyspace, a model), then the worker (Ctrl-C stops it)
	$(APP) worker

.PHONY: demo
demo: bootstrap ## `run` plus the simulator (its world drifts at 120 s: watch the orchestrator retrain and promote); Ctrl-C stops both
	bash scripts/demo.sh

.PHONY: bench
bench: services ## the benchmarks (JSON): decode, simulation, e2e
	$(APP) bench decode
	$(APP) bench simulation
	$(APP) init
	$(APP) bench e2e

FUZZ_SECONDS ?= 300
.PHONY: fuzz
fuzz: venv ## coverage-guided fuzzing of every decoder with atheris for FUZZ_SECONDS (default 300); findings saved as fuzz/crash-*
	mkdir -p fuzz/corpus
	$(BIN)/python tests/fuzz/fuzz_decoders.py -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10 -max_len=80000 -artifact_prefix=fuzz/ -print_final_stats=1 fuzz/corpus

CHAOS_REPEAT ?= 1
CHAOS_GUARANTEE ?= at_least_once
.PHONY: chaos
chaos: services ## faults under load (kill -9 x5, rebalance, Cassandra 30 s down, Kafka restarts), CHAOS_REPEAT times, workers in CHAOS_GUARANTEE (at_least_once or exactly_once): JSON with lost == 0 per run
	$(BIN)/stream-app bench chaos --repeat $(CHAOS_REPEAT) --guarantee $(CHAOS_GUARANTEE) --json chaos.json

.PHONY: chaos-cluster
chaos-cluster: services-cluster ## on the local cluster: the leading broker and a Cassandra node killed, a rolling restart, each under load (CHAOS_GUARANTEE): JSON with lost == 0 and pauses < 15 s
	$(WITH_CLUSTER) $(APP) bench chaos --repeat $(CHAOS_REPEAT) --guarantee $(CHAOS_GUARANTEE) --json chaos-cluster.json

.PHONY: chaos-eos
chaos-eos: services ## `chaos` with the workers in exactly-once mode: JSON with lost == 0 and duplicates == 0 per run
	$(BIN)/stream-app bench chaos --repeat $(CHAOS_REPEAT) --guarantee exactly_once --json chaos-eos.json

.PHONY: browser

browser: ## Debian's chromium for the dashboard test (installed with apt-get when missing)
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

.PHONY: kcat
kcat: ## Debian's kcat, the Kafka client the README's walks produce with (apt-get when missing)
	@command -v kcat >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null)

# The deploy/k8s checks render with kustomize: kubectl's own when kubectl is installed,
# otherwise kustomize built with Go into .stream-app/bin (about a minute, once).
KUSTOMIZE_VERSION ?= v5.7.1
KUSTOMIZE_BIN := .stream-app/bin/kustomize
KUSTOMIZE ?= $(if $(shell command -v kubectl),kubectl kustomize,$(KUSTOMIZE_BIN) build)
.PHONY: kustomize
kustomize:
	@if [ "$(KUSTOMIZE)" = "$(KUSTOMIZE_BIN) build" ] && [ ! -x $(KUSTOMIZE_BIN) ]; then \
		GOBIN=$(CURDIR)/.stream-app/bin go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION); fi

# make test runs its test files on TEST_WORKERS processes (pytest-xdist, a file per process at
# a time): most of an end-to-end test is waiting for a worker, a group or a label, and every
# test owns its topics, keyspace and ports, so two files side by side share the servers safely.
# Tests marked `serial` (a model's whole life inside 65 s of traffic) need the machine alone:
# `make test-lifecycle` runs them (and .ci/run after make test), which keeps make test in 15 min.
TEST_WORKERS ?= 2
TEST_MARKS := not bench and not own_services and not registry and not image and not cluster
.PHONY: test
test: services browser kcat kustomize ## all set-up, then the unit, integration, e2e and deploy suites against the real services
	KUSTOMIZE="$(KUSTOMIZE)" $(BIN)/pytest tests -m "$(TEST_MARKS) and not serial" -n $(TEST_WORKERS) --dist loadfile --durations=15

.PHONY: test-lifecycle
test-lifecycle: services ## alone on the machine: a model's whole life (drift, retraining, evaluation, promotion without a restart) inside 65 s of traffic
	$(BIN)/pytest tests -m "$(TEST_MARKS) and serial" --durations=5

.PHONY: test-services
test-services: services registry ## the suites that start a Kafka and Cassandra (or a schema registry) of their own (services life cycle, TLS and passwords), and those that write through the local schema registry
	$(BIN)/pytest tests -m "own_services or registry" --durations=5

.PHONY: test-cluster
test-cluster: venv ## a cluster of the test's own (3 brokers, 3 Cassandra nodes): RF 3, min ISR 2, LOCAL_QUORUM, a node and a broker killed
	$(BIN)/pytest tests -m cluster -s --durations=10

.PHONY: test-bench
test-bench: services ## every benchmark at a tiny size: runs, prints its JSON, loses nothing
	$(BIN)/pytest tests -m bench --durations=10

.PHONY: image
image: venv ## the container image (deploy/Dockerfile) with podman or docker; BASE=debian:bookworm-slim where a registry is reachable, else a local base made with debootstrap
	PYTHON=$(BIN)/python bash scripts/image.sh

.PHONY: image-test
image-test: image services kcat ## the image against the local services: init, bootstrap, worker, an event in and its prediction out, /ready, HEALTHCHECK, SIGTERM
	$(BIN)/pytest tests -m image --durations=5

.PHONY: deploy-check
deploy-check: venv kustomize ## only the deploy/k8s checks of make test: render with kustomize (installed with Go when missing), check every object offline
	KUSTOMIZE="$(KUSTOMIZE)" $(BIN)/pytest tests -m deploy --durations=5

.PHONY: test-unit
test-unit: venv ## the unit tests only (no services needed)
	$(BIN)/pytest tests/unit

.PHONY: lint
lint: venv ## ruff (lint and format check), mypy (strict on stream_app/), the import layers
	$(BIN)/ruff check stream_app tests examples
	$(BIN)/ruff format --check stream_app tests examples
	$(BIN)/mypy
	$(BIN)/lint-imports

.PHONY: format
format: venv ## format the code with ruff
	$(BIN)/ruff check --fix stream_app tests examples
	$(BIN)/ruff format stream_app tests examples

.PHONY: clean
clean: services-down ## stop the services and delete .stream-app (jars, data, logs) and .venv
	rm -rf .stream-app $(VENV)
