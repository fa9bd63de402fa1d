# mlkube: `make demo` runs the main job on the embedded local cluster, `make test` runs the tests.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all venv system-deps control-plane crds lint typecheck imports unit test demo dev-up dev-down clean

all: test

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# Builds (or finds cached / $KUBEBUILDER_ASSETS) etcd + kube-apiserver + controller-manager + scheduler.
control-plane:
	bash scripts/build-control-plane.sh

crds: $(STAMP)
	$(BIN)/python -m mlkube_operator.crdgen

lint: $(STAMP)
	$(BIN)/ruff check operator serving tests benchmarks
	$(BIN)/ruff format --check operator serving tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy operator/mlkube_operator serving/mlkube_serving

imports: $(STAMP)
	$(BIN)/lint-imports

# The control-plane directory (which also holds a kubectl of the same release) goes
# first on PATH, so tests never depend on whatever kubectl the machine has.
CP_PATH = PATH="$$(bash scripts/build-control-plane.sh | tail -n 1):$$PATH"

# Debian's prometheus package (prometheus + promtool) for the monitoring tests,
# lua5.4 for the Argo CD health scripts, and postgresql for the sql Dataset sources.
system-deps:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || \
	  { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus; } || \
	  { echo "install Prometheus (Debian package 'prometheus': prometheus + promtool) to run the tests" >&2; exit 1; }
	@command -v lua5.4 >/dev/null || \
	  { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends lua5.4; } || \
	  { echo "install Lua 5.4 (Debian package 'lua5.4') to run the tests" >&2; exit 1; }
	@compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null || \
	  { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql; } || \
	  { echo "install PostgreSQL (Debian package 'postgresql') to run the tests" >&2; exit 1; }

test: $(STAMP) system-deps
	$(BIN)/python -m mlkube_operator.crdgen --check
	$(MAKE) --no-print-directory lint typecheck imports
	$(CP_PATH) $(BIN)/python -m pytest -p no:cacheprovider

unit: $(STAMP)
	$(CP_PATH) $(BIN)/python -m pytest -p no:cacheprovider tests/unit tests/serving tests/gitops tests/sources

demo: $(STAMP)
	$(CP_PATH) bash scripts/demo.sh

dev-up: $(STAMP)
	$(CP_PATH) $(BIN)/mlkube dev up

dev-down: $(STAMP)
	$(BIN)/mlkube dev down

clean:
	rm -rf $(VENV) build *.egg-info
