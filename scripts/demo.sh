#!/usr/bin/env bash
# The main job on the embedded local default: a real control plane on this machine,
# the operator, and the iris example from Dataset to a served, queried model.
set -euo pipefail
cd "$(dirname "$0")/.."
ns="${MLKUBE_DEMO_NAMESPACE:-mlkube-demo}"

.venv/bin/mlkube dev up
kubeconfig="$(.venv/bin/mlkube dev kubeconfig)"
k() { kubectl --kubeconfig "$kubeconfig" -n "$ns" "$@"; }

kubectl --kubeconfig "$kubeconfig" create namespace "$ns" --dry-run=client -o yaml | kubectl --kubeconfig "$kubeconfig" apply -f -
k apply -f examples/iris/
echo "== waiting for the Dataset to be profiled"
k wait --for=condition=Ready dataset/iris --timeout=300s
echo "== waiting for the TrainingRun to succeed"
k wait --for=condition=Succeeded trainingrun/iris-rf --timeout=600s
echo "== waiting for the ModelDeployment to serve"
k wait --for=condition=Ready modeldeployment/iris --timeout=300s
k get mlkube -o wide

pod_ip="$(k get pods -l app.kubernetes.io/instance=iris,app.kubernetes.io/component=predictor \
  -o jsonpath='{.items[0].status.podIP}')"
echo "== KServe V1 predict on the predictor pod ${pod_ip}:8080"
curl -sS -X POST "http://${pod_ip}:8080/v1/models/iris:predict" -H 'Content-Type: application/json' \
  -d '{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}'
echo
echo "== Open Inference Protocol V2 model metadata"
curl -sS "http://${pod_ip}:8080/v2/models/iris"
echo
echo
echo "The cluster keeps running. Try:"
echo "  export KUBECONFIG=${kubeconfig}"
echo "  kubectl -n ${ns} get mlkube"
echo "  kubectl -n ${ns} describe trainingrun iris-rf"
echo "Stop everything with: .venv/bin/mlkube dev down"
