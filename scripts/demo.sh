#!/usr/bin/env bash
# The main job on the embedded local default. Until the operator's reconcilers land,
# it brings the dev control plane up with the CRDs and validates the examples.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/mlkube dev up
kubeconfig="$(.venv/bin/mlkube dev kubeconfig)"
kubectl --kubeconfig "$kubeconfig" get nodes,crd
kubectl --kubeconfig "$kubeconfig" apply --dry-run=server -f examples/iris/
