# Everything a fresh Debian machine needs, set up by the target that needs it (run as root).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp
APT     := DEBIAN_FRONTEND=noninteractive apt-get
PYTEST_ARGS ?=
SOAK_ARGS ?=

.PHONY: soak contract test lint servers browser venv clean

## The main job: the whole scenario catalogue against fake, Redis and etcd, servers launched locally.
soak: venv servers
	$(BIN)/lockchaos soak $(SOAK_ARGS)

## Contract suite against every backend we ship.
contract: venv servers
	$(BIN)/lockchaos contract --backend all

## Lint, type-check and run the tests (real redis-server and etcd included).
test: venv servers browser lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check backends harness tests bench
	$(BIN)/mypy --strict backends harness

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PY) -m venv --help >/dev/null 2>&1 && $(PY) -c 'import ensurepip' 2>/dev/null \
		|| { $(APT) update -qq && $(APT) install -y -qq python3-venv python3-pip; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
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
