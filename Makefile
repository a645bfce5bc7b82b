# Everything a fresh Debian machine needs, set up by the target that needs it (run as root).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp
APT     := DEBIAN_FRONTEND=noninteractive apt-get
PYTEST_ARGS ?=
SOAK_ARGS ?=

CONTAINER_HOST := scripts/container-host.sh
ENGINE_ENV = eval "$$($(CONTAINER_HOST))"

.PHONY: soak contract test test-fast lint servers browser venv clean engine engine-stop soak-containers \
	compose-nightly compose-clusters library-findings

## The main job: the whole scenario catalogue against fake, Redis and etcd, servers launched locally,
## and against the Python lock libraries teams use (lockchaos[libs]), all backends in parallel.
## A --backend in SOAK_ARGS wins over this one (argparse takes the last).
soak: venv servers
	$(BIN)/lockchaos soak --backend all,libs $(SOAK_ARGS)

## Contract suite against every backend we ship.
contract: venv servers
	$(BIN)/lockchaos contract --backend all

## What lockchaos finds in popular Python locks: contract + catalogue per library, a markdown table with
## verdicts (README, "What lockchaos finds in popular Python locks"). FINDINGS_ARGS=--no-soak: contract only.
FINDINGS_ARGS ?=
library-findings: venv servers
	nice -n 5 $(BIN)/python bench/library_findings.py $(FINDINGS_ARGS)

## Lint, type-check and run the tests: real redis-server and etcd, real containers on a private
## Docker engine (started for the tests and stopped after them, however they end), headless Chromium.
test: venv servers browser lint
	@rc=0; $(ENGINE_ENV) && $(BIN)/python -m pytest -q -n 3 $(PYTEST_ARGS) || rc=$$?; \
		$(CONTAINER_HOST) stop; exit $$rc

## For contributors: no root, no servers, no Docker, no browser (the fake, virtual time, checkers,
## report), under a minute. Tests needing one of those carry a marker and are deselected here only.
test-fast: venv
	LOCKCHAOS_TEST_FAST=1 $(BIN)/python -m pytest -q -n 4 $(PYTEST_ARGS)

## Container mode's private engine (Debian's docker.io on its own socket) and local images; idempotent.
engine: servers
	@$(CONTAINER_HOST) >/dev/null
engine-stop:
	@$(CONTAINER_HOST) stop

## Container mode end to end: the contract, then a short soak of the whole catalogue, on Redis and
## etcd containers (and the fake beside them), and one cluster scenario with every member a container
## (~25 s; the other cluster backends' container mode is in tests/test_containers.py); the engine is
## stopped afterwards.
soak-containers: venv servers
	@rc=0; $(ENGINE_ENV) && \
	$(BIN)/lockchaos contract --provision container --backend redis && \
	$(BIN)/lockchaos contract --provision container --backend etcd && \
	$(BIN)/lockchaos soak --provision container --backend all --ttl-ms 1000 --quiet \
		--out runs/containers-$$(date +%Y%m%d-%H%M%S) && \
	$(BIN)/lockchaos soak --provision container --backend etcd-cluster --scenario leader-crash --ttl-ms 1000 \
		--quiet --out runs/containers-cluster-$$(date +%Y%m%d-%H%M%S) || rc=$$?; \
	$(CONTAINER_HOST) stop; exit $$rc

## docker-compose.clusters.yml on the local images: a three-member etcd, a Sentinel group and five
## Redlock masters on free ports, one short scenario against the etcd cluster, then everything removed.
compose-clusters: venv servers
	@command -v docker-compose >/dev/null || { $(APT) update -qq && $(APT) install -y -qq --no-install-recommends docker-compose; }
	@rc=0; eval "$$($(CONTAINER_HOST) --harness-image)" && \
	set -- $$($(BIN)/python -c 'import socket; s=[socket.socket() for _ in range(17)]; [x.bind(("127.0.0.1", 0)) for x in s]; print(*[x.getsockname()[1] for x in s])') && \
	export LOCKCHAOS_ETCD0_PORT=$$1 LOCKCHAOS_ETCD0_PEER_PORT=$$2 LOCKCHAOS_ETCD1_PORT=$$3 LOCKCHAOS_ETCD1_PEER_PORT=$$4 \
	       LOCKCHAOS_ETCD2_PORT=$$5 LOCKCHAOS_ETCD2_PEER_PORT=$$6 LOCKCHAOS_SENTINEL_REDIS0_PORT=$$7 \
	       LOCKCHAOS_SENTINEL_REDIS1_PORT=$$8 LOCKCHAOS_SENTINEL_REDIS2_PORT=$$9 && shift 9 && \
	export LOCKCHAOS_SENTINEL0_PORT=$$1 LOCKCHAOS_SENTINEL1_PORT=$$2 LOCKCHAOS_SENTINEL2_PORT=$$3 \
	       LOCKCHAOS_REDLOCK0_PORT=$$4 LOCKCHAOS_REDLOCK1_PORT=$$5 LOCKCHAOS_REDLOCK2_PORT=$$6 \
	       LOCKCHAOS_REDLOCK3_PORT=$$7 LOCKCHAOS_REDLOCK4_PORT=$$8 \
	       LOCKCHAOS_RUNS_DIR=$(CURDIR)/runs/compose-clusters LOCKCHAOS_SOAK_ARGS="--scenario holder-crash" && \
	{ docker-compose -f docker-compose.clusters.yml -p lockchaos-ci-clusters run --rm harness || rc=$$?; \
	  docker-compose -f docker-compose.clusters.yml -p lockchaos-ci-clusters down -v; }; \
	$(CONTAINER_HOST) stop; exit $$rc

## docker-compose.yml's nightly on the local images (one short scenario, free ports).
compose-nightly: venv servers
	@command -v docker-compose >/dev/null || { $(APT) update -qq && $(APT) install -y -qq --no-install-recommends docker-compose; }
	@rc=0; eval "$$($(CONTAINER_HOST) --harness-image)" && \
	set -- $$($(BIN)/python -c 'import socket; s=[socket.socket() for _ in range(4)]; [x.bind(("127.0.0.1", 0)) for x in s]; print(*[x.getsockname()[1] for x in s])') && \
	export LOCKCHAOS_REDIS_PORT=$$1 LOCKCHAOS_REDIS_AOF_PORT=$$2 LOCKCHAOS_ETCD_PORT=$$3 LOCKCHAOS_ETCD_PEER_PORT=$$4 \
	       LOCKCHAOS_RUNS_DIR=$(CURDIR)/runs/compose LOCKCHAOS_SOAK_ARGS="--scenario holder-crash" && \
	{ docker-compose -p lockchaos-ci up --no-build --abort-on-container-exit --exit-code-from harness || rc=$$?; \
	  docker-compose -p lockchaos-ci down -v; }; \
	$(CONTAINER_HOST) stop; exit $$rc

lint: venv
	$(BIN)/ruff check lockchaos backends harness tests bench
	$(BIN)/mypy --strict -p lockchaos.backends -p lockchaos.harness

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PY) -m venv --help >/dev/null 2>&1 && $(PY) -c 'import ensurepip' 2>/dev/null \
		|| { $(APT) update -qq && $(APT) install -y -qq python3-venv python3-pip; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,container,libs]'
	touch $@

## redis-server and etcd from Debian's packages, when missing (installing starts no service here).
servers:
	@command -v redis-server >/dev/null && command -v etcd >/dev/null \
		|| { $(APT) update -qq && $(APT) install -y -qq redis-server etcd-server; }
	@redis-server --version && etcd --version | head -1

## Debian's Chromium for the report's browser test (driven by Playwright; no browser download).
browser:
	@command -v chromium >/dev/null || { $(APT) update -qq && $(APT) install -y -qq chromium; }

clean:
	rm -rf $(VENV) build *.egg-info
