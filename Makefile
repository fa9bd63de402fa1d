# mlkube: `make demo` runs the main job on the embedded local cluster, `make test` runs the tests.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all venv system-deps control-plane node-tools image crds lint typecheck imports unit test demo dev-up dev-down clean

all: test

$(STAMP): pyproject.toml devcluster/pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' -e ./devcluster
	@touch $(STAMP)

venv: $(STAMP)

# Builds (or finds cached / $KUBEBUILDER_ASSETS) etcd, kube-apiserver, controller-manager,
# scheduler, kubelet, kube-proxy and kubectl.
control-plane:
	bash scripts/build-control-plane.sh

# crictl, the pod sandbox, CoreDNS and kube-router (the NetworkPolicy enforcer) for the
# dev cluster's node.
node-tools:
	bash scripts/build-node-tools.sh
	bash scripts/build-kube-router.sh

# The operator, trainer and server images, with podman or buildah (no Docker, no registry
# needed: BASE_IMAGE=... to choose the base; see the Dockerfile). Prints each image's size.
image:
	bash scripts/build-images.sh

crds: $(STAMP)
	$(BIN)/python -m mlkube_operator.crdgen

lint: $(STAMP)
	$(BIN)/ruff check operator serving sdk devcluster tests benchmarks
	$(BIN)/ruff format --check operator serving sdk devcluster tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy operator/mlkube_operator serving/mlkube_serving sdk/mlkube devcluster/mlkube_devcluster

imports: $(STAMP)
	$(BIN)/lint-imports

# The control-plane directory (which also holds a kubectl of the same release) goes
# first on PATH, so tests never depend on whatever kubectl the machine has.
CP_PATH = PATH="$$(bash scripts/build-control-plane.sh | tail -n 1):$$PATH"

# Debian packages: the dev cluster's node (containerd, runc, CNI plugins, iptables, ipset), the image
# build (podman, buildah, mmdebstrap, skopeo), Prometheus + promtool for the monitoring tests,
# lua5.4 for the Argo CD health scripts and PostgreSQL for the sql Dataset sources.
SYSTEM_PACKAGES = containerd runc containernetworking-plugins iptables ipset conntrack podman buildah \
  mmdebstrap skopeo uidmap fuse-overlayfs prometheus lua5.4 postgresql
system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	  else echo "install these Debian packages first: $$missing" >&2; exit 1; fi; \
	fi

test: $(STAMP) system-deps
	$(BIN)/python -m mlkube_operator.crdgen --check
	$(MAKE) --no-print-directory lint typecheck imports
	@# Three passes on one cluster (scripts/test.sh says which tests run where and why).
	$(CP_PATH) bash scripts/test.sh

unit: $(STAMP)
	$(CP_PATH) $(BIN)/python -m pytest -p no:cacheprovider tests/unit tests/serving tests/gitops tests/sources

demo: $(STAMP) system-deps
	$(CP_PATH) bash scripts/demo.sh

dev-up: $(STAMP) system-deps
	$(CP_PATH) $(BIN)/mlkube dev up

dev-down: $(STAMP)
	$(BIN)/mlkube dev down

clean:
	rm -rf $(VENV) build *.egg-info
